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
import json
from pathlib import Path

import numpy as np

from seqfuse import _C
from seqfuse.errors import SeqfuseError
from seqfuse.native.files import write
from seqfuse.native.onnx import engine_of, from_onnx

TOL = 1e-5


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="the ONNX file (its external data beside it)")
    p.add_argument(
        "-o", "--output", required=True, help="the native weight file to write (.safetensors)"
    )


def _probe(model, about: dict, cfg: dict) -> tuple[dict, np.ndarray, int, int]:
    """(the graph's feeds, the engine's batch-first x, B, T) for a random batch: 3 sequences of
    7 steps, unless the graph fixes those sizes (the input's declared shape, node layout)."""
    rng = np.random.default_rng(0)
    B, T = 3, 7
    for arg in model.get_inputs():
        if arg.name != about["input"]:
            raise SeqfuseError(
                f"the graph takes input '{arg.name}' besides '{about['input']}': a native file "
                "takes only the sequence (states and lengths per call)"
            )
    declared = next(a.shape for a in model.get_inputs() if a.name == about["input"])
    if len(declared) in (2, 3):
        dims = list(declared)
        if about["transposed_input"]:
            dims[0], dims[1] = dims[1], dims[0]
        b_at, t_at = (0, 1) if about["layout"] == 1 else (1, 0)
        B = dims[b_at] if isinstance(dims[b_at], int) and dims[b_at] > 0 else B
        T = dims[t_at] if isinstance(dims[t_at], int) and dims[t_at] > 0 else T
    node_bt = (B, T) if about["layout"] == 1 else (T, B)
    if about["tokens"]:
        x = rng.integers(0, cfg["vocab_size"], node_bt)
        dtype = next(np.dtype(a.type[7:-1]) for a in model.get_inputs() if a.name == about["input"])
        x = x.astype(dtype)
    else:
        x = rng.standard_normal((*node_bt, cfg["input_size"])).astype(np.float32)
    swap = (1, 0) + tuple(range(2, x.ndim))
    feed_x = np.ascontiguousarray(x.transpose(swap)) if about["transposed_input"] else x
    xb = np.ascontiguousarray(x if about["layout"] == 1 else x.transpose(swap))  # [B, T, ...]
    return {about["input"]: feed_x}, xb, B, T


def _head_kind(env: dict, about: dict, cfg: dict, B: int, T: int) -> str:
    """A head on Y reads every step (its value has T) or each sequence's last step."""
    if about["head"] is None or about["head"]["reads"] != "Y":
        return cfg["head"]
    return "step" if env[about["head"]["value"]].size == B * T * cfg["output_size"] else "last_step"


def _verify(env: dict, core, xb: np.ndarray, about: dict, cfg: dict, B: int, T: int) -> float:
    """Max abs error (relative above 1) of the engine model against the graph's values."""
    dirs = 2 if cfg["bidirectional"] else 1
    L, H, K = cfg["num_layers"], cfg["hidden_size"], cfg["output_size"]
    y_shape = {"none": (B, T, dirs * H), "step": (B, T, K)}.get(cfg["head"], (B, K))
    y = np.empty(y_shape, np.float32)
    hn = np.empty((L * dirs, B, H), np.float32)
    cn = np.empty_like(hn) if cfg["cell"] == "lstm" else None
    x, ids = (None, np.ascontiguousarray(xb, np.int64)) if about["tokens"] else (xb, None)
    _C.run(core.address, B, T, 1, x, ids, None, None, None, y, hn, cn, 1, 0)
    worst = 0.0

    def err(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b)), initial=0.0))

    if about["head"] is not None:
        ref = env[about["head"]["value"]]
        if cfg["head"] == "step":  # [B, T, K] or, time-major, [T, B, K]
            cands = [ref.reshape(B, T, K)] if ref.shape[:2] == (B, T) else []
            if ref.shape[:2] == (T, B):
                cands.append(ref.reshape(T, B, K).transpose(1, 0, 2))
            if not cands:
                return float("inf")
            worst = max(worst, min(err(y, c) for c in cands))
        else:
            worst = max(worst, err(y, ref.reshape(B, K)))
    elif about["y"]:
        ref = env[about["y"]]  # [T, dirs, B, H] or, layout 1, [B, T, dirs, H]
        ref = ref.reshape(B, T, dirs * H) if about["layout"] == 1 else ref.transpose(2, 0, 1, 3)
        worst = max(worst, err(y, ref.reshape(B, T, dirs * H)))
    for k, (h, c) in enumerate(zip(about["h_n"], about["c_n"])):
        for name, got in ((h, hn), (c, cn)):
            if name and got is not None:
                ref = env[name]
                ref = ref.transpose(1, 0, 2) if about["layout"] == 1 else ref
                worst = max(worst, err(got[k * dirs : (k + 1) * dirs], ref))
    return worst


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
    cfg, weights, module, about = engine_of(model)
    feeds, xb, B, T = _probe(model, about, cfg)
    env = model.run_all(feeds)
    cfg["head"] = _head_kind(env, about, cfg, B, T)
    if module["kind"] == "seq":
        module = _seq_module(cfg)
    core = _C.Model(json.dumps(cfg), weights, "auto")
    worst = _verify(env, core, xb, about, cfg, B, T)
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
