"""`seqfuse convert MODEL.onnx -o MODEL.seqfuse.safetensors`: an ONNX file's recurrent stack
as a native weight file, so that a C++ app runs it through libseqfuse with no protobuf and no
ONNX Runtime (export/native/seqfuse_run.cpp runs it).

The stack is the graph's RNN/GRU/LSTM nodes when they form one (seqfuse.native.onnx.engine_of
says what qualifies). The file is verified before it is written: the engine model runs a
random batch (3 sequences of 7 steps, unless the graph fixes those sizes) and must match the graph's own values of the top node's Y and every node's Y_h / Y_c, as
seqfuse.native.from_onnx computes them, within 1e-5. Checked by tests/test_onnx_import.py
(the file, seqfuse-run on it against ONNX Runtime, and refusals).
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


def _verify(model, core, about: dict, cfg: dict) -> float:
    """Max abs error (relative above 1) of the engine model against the graph's values."""
    rng = np.random.default_rng(0)
    B, T, D = 3, 7, cfg["input_size"]
    # A size the graph fixes is taken as fixed (the input's declared shape, node layout).
    declared = next(a.shape for a in model.get_inputs() if a.name == about["input"])
    if len(declared) == 3:
        dims = [declared[1], declared[0], declared[2]] if about["transposed_input"] else declared
        b_at, t_at = (0, 1) if about["layout"] == 1 else (1, 0)
        B = dims[b_at] if isinstance(dims[b_at], int) and dims[b_at] > 0 else B
        T = dims[t_at] if isinstance(dims[t_at], int) and dims[t_at] > 0 else T
    node_x = (B, T, D) if about["layout"] == 1 else (T, B, D)
    x = rng.standard_normal(node_x).astype(np.float32)
    feed_x = np.ascontiguousarray(x.transpose(1, 0, 2)) if about["transposed_input"] else x
    feeds = {about["input"]: feed_x}
    for arg in model.get_inputs():
        if arg.name != about["input"]:
            raise SeqfuseError(
                f"the graph takes input '{arg.name}' besides '{about['input']}': a native file "
                "takes only the sequence (states and lengths per call)"
            )
    env = model.run_all(feeds)
    xb = np.ascontiguousarray(x if about["layout"] == 1 else x.transpose(1, 0, 2))  # [B, T, D]
    dirs = 2 if cfg["bidirectional"] else 1
    L, H = cfg["num_layers"], cfg["hidden_size"]
    y = np.empty((B, T, dirs * H), np.float32)
    hn = np.empty((L * dirs, B, H), np.float32)
    cn = np.empty_like(hn) if cfg["cell"] == "lstm" else None
    _C.run(core.address, B, T, 1, xb, None, None, None, None, y, hn, cn, 1, 0)
    worst = 0.0

    def err(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b)), initial=0.0))

    if about["y"]:
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


def run(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.is_dir():
        raise SeqfuseError(f"{out} is a directory; -o names the weight file to write")
    model = from_onnx(args.model)
    cfg, weights, module, about = engine_of(model)
    core = _C.Model(json.dumps(cfg), weights, "auto")
    worst = _verify(model, core, about, cfg)
    if not worst <= TOL:
        raise SeqfuseError(
            f"the native model differs from the ONNX graph by {worst:.3g} (> {TOL}): the graph "
            "does more around its recurrent nodes than a native file holds"
        )
    write(out, core.config_json, core.weights(), module)
    why = core.kernel_set_reason
    print(f"wrote {out}")
    print(
        f"  nodes: {', '.join(about['nodes'])} ({module['module']}, {cfg['num_layers']} layer(s))"
    )
    print(f"  config: {core.config_json}")
    print(f"  input: x [B, T, {cfg['input_size']}] batch-first (seqfuse-run's x)")
    print(f"  kernel set: {core.isa}" + (f" ({why})" if why else ""))
    print(f"  verified against the graph: max error {worst:.3g}")
    return 0
