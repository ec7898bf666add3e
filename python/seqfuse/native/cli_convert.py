"""`seqfuse convert MODEL.onnx -o MODEL.seqfuse.safetensors`: an ONNX file's recurrent model
as a native weight file, so that a C++ app runs it through libseqfuse with no protobuf and no
ONNX Runtime (export/native/seqfuse_run.cpp runs it).

What a file holds is fixed: [an Embedding ->] one RNN/GRU/LSTM stack [-> one Linear head]
(seqfuse.native.onnx.engine_of maps a graph onto it: the Gather of a constant table as the
Embedding, a MatMul(+Add) or Gemm with constant weights as the head; its kind, step,
last_step or last_hidden, from what it reads). Anything else around the stack (an activation
after the head, a second head, ...) is refused with one line naming the node;
seqfuse.native.from_onnx still runs such a graph. The file is verified before it is written:
the engine model runs a random batch (3 sequences of 7 steps, unless the graph fixes those
sizes) and must match the graph's own values of the head (or the top node's Y) and every
node's Y_h / Y_c, as from_onnx computes them, within 1e-5. Checked by
tests/test_onnx_import.py and tests/test_onnx_glue.py (the file, seqfuse-run on it against
ONNX Runtime, and refusals).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from seqfuse.errors import SeqfuseError
from seqfuse.native.onnx import from_onnx


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="the ONNX file (its external data beside it)")
    p.add_argument(
        "-o", "--output", required=True, help="the native weight file to write (.safetensors)"
    )


def run(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.is_dir():
        raise SeqfuseError(f"{out} is a directory; -o names the weight file to write")
    model = from_onnx(args.model)
    cfg, about, core, worst = model.save(out)
    why = core.kernel_set_reason
    print(f"wrote {out}")
    print(
        f"  nodes: {', '.join(about['nodes'])} ({model.recurrent[0].node.op_type}, {cfg['num_layers']} layer(s))"
    )
    print(f"  config: {core.config_json}")
    if about["tokens"]:
        print(f"  input: x [B, T] int64 token ids < {cfg['vocab_size']} (seqfuse-run's x)")
    else:
        print(f"  input: x [B, T, {cfg['input_size']}] batch-first (seqfuse-run's x)")
    if about["head"] is not None:
        print(f"  head: {cfg['head']} ({about['head']['node']}), {cfg['output_size']} outputs")
    print(f"  kernel set: {core.isa}" + (f" ({why})" if why else ""))
    print(f"  verified against the graph: max error {worst:.3g}")
    return 0
