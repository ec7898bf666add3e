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
from seqfuse.native.files import write
from seqfuse.native.onnx import fit_engine, from_onnx

TOL = 1e-5


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="the ONNX file (its external data beside it)")
    p.add_argument(
        "-o", "--output", required=True, help="the native weight file to write (.safetensors)"
    )


# The engine config keys of ONNX semantics (seqfuse.native.convert.ONNX_KEYS, without torch).
_ONNX_KEYS = {"reverse", "linear_before_reset", "peepholes", "input_forget", "clip", "activations"}


def _seq_module(cfg: dict) -> dict:
    """The module description of a file with an Embedding or a head: a SeqModel's call (y and
    the state). With PyTorch's semantics it carries the SeqConfig, so that to_module rebuilds
    the nn.Module; with ONNX's there is none to rebuild."""
    info: dict = {"kind": "seq", "batch_first": True}
    if not set(cfg) & _ONNX_KEYS:
        tokens = cfg["vocab_size"] > 0
        info["config"] = {
            "cell": cfg["cell"], "hidden_size": cfg["hidden_size"],
            "input_size": 1 if tokens else cfg["input_size"], "vocab_size": cfg["vocab_size"],
            "embed_dim": cfg["embed_dim"], "num_layers": cfg["num_layers"],
            "bidirectional": cfg["bidirectional"], "bias": True, "dropout": 0.0,
            "head": cfg["head"], "output_size": max(1, cfg["output_size"]), "kind": "seq",
        }  # fmt: skip
    return info


def run(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.is_dir():
        raise SeqfuseError(f"{out} is a directory; -o names the weight file to write")
    model = from_onnx(args.model)
    cfg, weights, module, about, core, worst = fit_engine(model)
    if module["kind"] == "seq":
        module = _seq_module(cfg)
    if not worst <= TOL:
        raise SeqfuseError(
            f"the native model differs from the ONNX graph by {worst:.3g} (> {TOL}): the graph "
            "does more around its recurrent nodes than a native file holds"
        )
    write(out, core.config_json, core.weights(), module)
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
