"""Writes the fuzzing seed corpus: small, real seqfuse weight files of every cell, head and
input kind (float features, an Embedding, no recurrent layer), uni- and bidirectional, with
and without bias. Used by .ci/fuzz for the libFuzzer harness (tests/fuzz/fuzz_weight_file.cpp)
and the atheris harness (tests/fuzz/fuzz_native_load.py). Usage: make_seeds.py OUT_DIR
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import torch
from seqfuse import native
from seqfuse.models import CELLS, HEADS, build_model, preset


def main(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    n = 0
    for cell, head, tokens, bidir in itertools.product(CELLS, HEADS, (False, True), (False, True)):
        cfg = dict(kind="seq", cell=cell, hidden_size=3, num_layers=1 + int(bidir), bias=bidir,
                   bidirectional=bidir, head=head, output_size=0 if head == "none" else 2,
                   input_size=0 if tokens else 2, vocab_size=4 if tokens else 0,
                   embed_dim=2 if tokens else 0)  # fmt: skip
        model = build_model(cfg).eval()
        name = f"{cell}-{head}-{'tok' if tokens else 'x'}-{'bi' if bidir else 'uni'}"
        native.from_module(model).save(out / f"{name}.safetensors")
        n += 1
    native.from_module(build_model(preset("linear")).eval()).save(out / "linear.safetensors")
    for raw in (torch.nn.LSTM(2, 3), torch.nn.GRU(2, 3, bidirectional=True)):
        native.from_module(raw.eval()).save(out / f"raw-{type(raw).__name__.lower()}.safetensors")
    print(f"{n + 3} seed files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "fuzz-seeds")))
