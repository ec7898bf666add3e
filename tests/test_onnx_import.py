"""ONNX in: seqfuse.native.from_onnx and `seqfuse convert`, each against a real oracle.

- the onnx package's own conformance cases for LSTM, GRU and RNN (all 18);
- a randomized grid against ONNX Runtime over every attribute combination (direction,
  layout, GRU linear_before_reset, LSTM peepholes and input_forget, clip, every activation
  with alpha/beta, bias, sequence_lens, initial states, each output), T 1..50, batch 1..17,
  odd hidden sizes, sampled with a fixed seed. ONNX Runtime refuses layout=1, so for those it
  runs the same node with layout 0 on transposed inputs and outputs;
- NaN and Inf propagate as in the onnx package's reference implementation (ONNX Runtime's
  LSTM does not propagate a NaN: see the test);
- a Keras-style GRU (linear_before_reset=0 in tf2onnx's Transpose/Squeeze glue) built by hand;
- round trips: seqfuse's own ONNX exports and torch.onnx exports (legacy and dynamo) of
  nn.LSTM/GRU/RNN give what from_module (and eager PyTorch) gives;
- `seqfuse convert` writes a version-2 weight file that seqfuse.native.load and the C++ app
  seqfuse-run run as ONNX Runtime does; a version-1 file still loads; the CUDA backend
  refuses ONNX semantics with one error (on a GPU);
- bad ONNX (unsupported op, wrong shapes, truncated file, missing external data, bad feeds)
  gives one clear error.

Errors are max abs error up to 1 and relative above (as the export verifier's), <= 1e-5.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
import seqfuse.native as sn  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from seqfuse import _C  # noqa: E402
from seqfuse.errors import SeqfuseError  # noqa: E402
from seqfuse.native.contract import (  # noqa: E402
    InvalidArgumentError,
    NativeTypeError,
    WeightFileError,
)

TOL = 1e-5
REPO = Path(__file__).resolve().parents[1]


def err(got: np.ndarray, want: np.ndarray) -> float:
    """Max error, absolute up to 1 and relative above; NaN (and Inf) where the oracle has it."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    same = (np.isnan(got) == np.isnan(want)) & (np.isinf(got) == np.isinf(want))
    assert same.all(), "NaN/Inf positions differ"
    fin = np.isfinite(want)
    assert (got[~fin & ~np.isnan(want)] == want[~fin & ~np.isnan(want)]).all(), "Inf signs differ"
    if not fin.any():
        return 0.0
    return float(np.max(np.abs(got[fin] - want[fin]) / np.maximum(1.0, np.abs(want[fin]))))


def ort_session(m: onnx.ModelProto) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


# ---- the onnx package's conformance cases ----------------------------------------------------
CONFORMANCE = [
    "test_gru_defaults", "test_gru_with_initial_bias", "test_gru_seq_length",
    "test_gru_batchwise", "test_gru_reverse", "test_gru_bidirectional",
    "test_lstm_defaults", "test_lstm_with_initial_bias", "test_lstm_with_peepholes",
    "test_lstm_batchwise", "test_lstm_reverse", "test_lstm_bidirectional",
    "test_simple_rnn_defaults", "test_simple_rnn_with_initial_bias", "test_rnn_seq_length",
    "test_simple_rnn_batchwise", "test_simple_rnn_reverse", "test_simple_rnn_bidirectional",
]  # fmt: skip


def _conformance_cases() -> dict:
    if not hasattr(_conformance_cases, "cache"):
        from onnx.backend.test.case.node import collect_testcases

        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            cases = collect_testcases()
        _conformance_cases.cache = {
            c.name: c
            for c in cases
            if any(n.op_type in ("LSTM", "GRU", "RNN") for n in c.model.graph.node)
        }
    return _conformance_cases.cache


def test_conformance_cases_are_all_here():
    assert sorted(_conformance_cases()) == sorted(CONFORMANCE)


@pytest.mark.parametrize("name", CONFORMANCE)
def test_conformance_case(name):
    case = _conformance_cases()[name]
    m = sn.from_onnx(case.model)
    assert case.data_sets
    for inputs, outputs in case.data_sets:
        feeds = {i.name: v for i, v in zip(m.get_inputs(), inputs)}
        got = m.run(None, feeds)
        assert len(got) == len(outputs)
        for g, w in zip(got, outputs):
            assert err(g, w) <= TOL, name


# ---- single nodes, built by hand ------------------------------------------------------------
GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
SLOTS = {"RNN": 1, "GRU": 2, "LSTM": 3}
OWN_ACTS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}
TAKES = {  # activation -> (takes alpha, takes beta, (lo, hi) of alpha, (lo, hi) of beta)
    "Sigmoid": (False, False, None, None),
    "Tanh": (False, False, None, None),
    "Relu": (False, False, None, None),
    "Affine": (True, True, (0.3, 1.0), (-0.3, 0.3)),
    "LeakyRelu": (True, False, (0.01, 0.3), None),
    "ThresholdedRelu": (True, False, (-0.2, 0.3), None),
    "ScaledTanh": (True, True, (0.5, 1.5), (0.5, 1.5)),
    "HardSigmoid": (True, True, (0.1, 0.4), (0.3, 0.7)),
    "Elu": (True, False, (0.5, 1.5), None),
    "Softsign": (False, False, None, None),
    "Softplus": (False, False, None, None),
}
# Gate activations (LSTM/GRU f) stay in [0, 1], as gates do: a negative input gate with
# input_forget makes f > 1, and 50 steps of that grow c past where float32 and double agree.
GATE_ACTS = ["Sigmoid", "HardSigmoid"]


def node_case(rng: np.random.Generator, **kw) -> dict:
    """A random single-node case; keyword arguments fix any choice."""
    op = kw.get("op", rng.choice(["RNN", "GRU", "LSTM"]))
    direction = kw.get("direction", rng.choice(["forward", "reverse", "bidirectional"]))
    dirs = 2 if direction == "bidirectional" else 1
    c = {
        "op": op, "direction": direction, "dirs": dirs,
        "layout": int(kw.get("layout", rng.integers(0, 2))),
        "T": int(kw.get("T", rng.integers(1, 51))), "B": int(kw.get("B", rng.integers(1, 18))),
        "H": int(kw.get("H", 2 * rng.integers(0, 17) + 1)), "D": int(kw.get("D", rng.integers(1, 21))),
        "bias": bool(kw.get("bias", rng.random() < 0.8)),
        "lens": bool(kw.get("lens", rng.random() < 0.5)),
        "h0": bool(kw.get("h0", rng.random() < 0.5)),
        "c0": bool(kw.get("c0", op == "LSTM" and rng.random() < 0.5)),
        "peep": bool(kw.get("peep", op == "LSTM" and rng.random() < 0.5)),
        "input_forget": int(kw.get("input_forget", op == "LSTM" and rng.random() < 0.3)),
        "lbr": int(kw.get("lbr", rng.integers(0, 2))) if op == "GRU" else None,
        "clip": kw.get("clip", float(rng.uniform(0.5, 3.0)) if rng.random() < 0.3 else None),
        "outputs": kw.get("outputs", [rng.random() < 0.8, rng.random() < 0.7, rng.random() < 0.7]),
    }  # fmt: skip
    if not any(c["outputs"][:2] if op != "LSTM" else c["outputs"]):
        c["outputs"][0] = True
    acts = kw.get("acts")  # given: those (None: the defaults); else random 60% of the time
    if "acts" not in kw and rng.random() < 0.6:
        names = list(TAKES)
        acts = []
        for _ in range(dirs):
            for s in range(SLOTS[op]):
                gate = op != "RNN" and s == 0
                acts.append(str(rng.choice(GATE_ACTS if gate else names)))
    c["acts"] = acts
    alphas, betas = [], []
    for a in acts or []:  # consumed in order by the activations that take them
        ta, tb, ra, rb = TAKES[a]
        if ta:
            alphas.append(float(rng.uniform(*ra)))
        if tb:
            betas.append(float(rng.uniform(*rb)))
    c["alphas"], c["betas"] = alphas, betas
    c["seed"] = int(rng.integers(0, 2**31))
    return c


def build(c: dict, layout: int | None = None) -> tuple[onnx.ModelProto, dict]:
    """(the model with this case's node, its feeds) in the given layout (default the case's)."""
    rng = np.random.default_rng(c["seed"])
    layout = c["layout"] if layout is None else layout
    op, dirs, T, B, H, D = c["op"], c["dirs"], c["T"], c["B"], c["H"], c["D"]
    G = GATES[op]
    s = 1.0 / np.sqrt(H)
    f32 = np.float32
    inits = [
        numpy_helper.from_array(rng.uniform(-s, s, (dirs, G * H, D)).astype(f32), "W"),
        numpy_helper.from_array(rng.uniform(-s, s, (dirs, G * H, H)).astype(f32), "R"),
    ]
    x = rng.standard_normal((T, B, D)).astype(f32)
    feeds = {"X": x}
    ins = ["X", "W", "R", "", "", ""]
    if c["bias"]:
        inits.append(
            numpy_helper.from_array(rng.uniform(-s, s, (dirs, 2 * G * H)).astype(f32), "B")
        )
        ins[3] = "B"
    if c["lens"]:
        feeds["sequence_lens"] = rng.integers(1, T + 1, B).astype(np.int32)
        ins[4] = "sequence_lens"
    h0 = rng.standard_normal((dirs, B, H)).astype(f32)
    c0 = rng.standard_normal((dirs, B, H)).astype(f32)
    if c["h0"]:
        feeds["initial_h"] = h0
        ins[5] = "initial_h"
    if op == "LSTM":
        ins += ["", ""]
        if c["c0"]:
            feeds["initial_c"] = c0
            ins[6] = "initial_c"
        if c["peep"]:
            inits.append(
                numpy_helper.from_array(rng.uniform(-s, s, (dirs, 3 * H)).astype(f32), "P")
            )
            ins[7] = "P"
    while ins and ins[-1] == "":
        ins.pop()
    names = ["Y", "Y_h", "Y_c"][: 3 if op == "LSTM" else 2]
    outs = [n if want else "" for n, want in zip(names, c["outputs"])]
    while outs and outs[-1] == "":
        outs.pop()
    attrs = {"hidden_size": H, "direction": c["direction"]}
    if layout:
        attrs["layout"] = 1
    if c["lbr"] is not None:
        attrs["linear_before_reset"] = c["lbr"]
    if c["input_forget"]:
        attrs["input_forget"] = 1
    if c["clip"] is not None:
        attrs["clip"] = c["clip"]
    if c["acts"]:
        attrs["activations"] = c["acts"]
        if c["alphas"]:
            attrs["activation_alpha"] = c["alphas"]
        if c["betas"]:
            attrs["activation_beta"] = c["betas"]
    node = helper.make_node(op, ins, outs, name="rec", **attrs)

    def vi(name: str, shape: list, elem=TensorProto.FLOAT):
        return helper.make_tensor_value_info(name, elem, shape)

    # Inputs and outputs in the requested layout: [T, B, ...] / [dirs, B, H] for 0,
    # [B, T, ...] / [B, dirs, H] for 1.
    if layout:
        feeds["X"] = np.ascontiguousarray(x.transpose(1, 0, 2))
        for k in ("initial_h", "initial_c"):
            if k in feeds:
                feeds[k] = np.ascontiguousarray(feeds[k].transpose(1, 0, 2))
    in_vi = [vi("X", list(feeds["X"].shape))]
    for k in ("sequence_lens", "initial_h", "initial_c"):
        if k in feeds:
            elem = TensorProto.INT32 if k == "sequence_lens" else TensorProto.FLOAT
            in_vi.append(vi(k, list(feeds[k].shape), elem))
    yshape = [B, T, dirs, H] if layout else [T, dirs, B, H]
    sshape = [B, dirs, H] if layout else [dirs, B, H]
    out_vi = [vi(n, yshape if n == "Y" else sshape) for n in outs if n]
    g = helper.make_graph([node], "g", in_vi, out_vi, initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 22)])
    m.ir_version = 10
    return m, feeds


def ort_outputs(c: dict) -> list[np.ndarray]:
    """ONNX Runtime's outputs for the case; layout 1 through the layout-0 node."""
    m, feeds = build(c, layout=0)
    outs = ort_session(m).run(None, feeds)
    if not c["layout"]:
        return outs
    names = [o.name for o in m.graph.output]
    return [
        np.ascontiguousarray(o.transpose(2, 0, 1, 3) if n == "Y" else o.transpose(1, 0, 2))
        for n, o in zip(names, outs)
    ]


GRID_SEED, GRID_CASES = 20261130, 1000


def _grid() -> list[dict]:
    rng = np.random.default_rng(GRID_SEED)
    cases = [node_case(rng) for _ in range(GRID_CASES)]
    # every combination of op x direction x layout at least once, with the largest sizes
    for op in ("RNN", "GRU", "LSTM"):
        for d in ("forward", "reverse", "bidirectional"):
            for lay in (0, 1):
                cases.append(node_case(rng, op=op, direction=d, layout=lay, T=50, B=17))
    return cases


GRID = _grid()


def _label(c: dict) -> str:
    extra = [k for k in ("peep", "input_forget", "lens", "h0") if c.get(k)]
    if c["lbr"] is not None:
        extra.append(f"lbr{c['lbr']}")
    if c["clip"] is not None:
        extra.append("clip")
    if c["acts"]:
        extra.append("+".join(c["acts"]))
    return (
        f"{c['op']}-{c['direction']}-L{c['layout']}-T{c['T']}B{c['B']}H{c['H']}-{'-'.join(extra)}"
    )


def test_grid_covers_every_attribute():
    seen = {(c["op"], c["direction"], c["layout"]) for c in GRID}
    assert len(seen) == 18
    assert {c["lbr"] for c in GRID if c["op"] == "GRU"} == {0, 1}
    for key in ("peep", "input_forget", "lens", "h0", "c0", "bias"):
        assert {bool(c[key]) for c in GRID if c["op"] == "LSTM"} == {False, True}, key
    assert any(c["clip"] for c in GRID) and any(c["clip"] is None for c in GRID)
    used = {a for c in GRID for a in (c["acts"] or [])}
    assert used == set(TAKES), set(TAKES) - used
    assert {c["T"] for c in GRID} >= {1, 50} and {c["B"] for c in GRID} >= {1, 17}


@pytest.mark.parametrize("c", GRID, ids=_label)
def test_grid_vs_onnxruntime(c):
    m, feeds = build(c)
    nm = sn.from_onnx(m)
    got = nm.run(None, feeds)
    want = ort_outputs(c)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert err(g, w) <= TOL, _label(c)
    # The fused kernels run every ONNX semantic but other activations (the reference runs
    # those, and says so).
    ks = nm.kernel_sets["rec"]
    own = [OWN_ACTS[c["op"]] * c["dirs"]] + ([["Relu"] * c["dirs"]] if c["op"] == "RNN" else [])
    if c["acts"] and c["acts"] not in own:  # an RNN's Relu is the rnn_relu cell
        assert ks == "reference (fused kernels lack: activations)", ks
    else:
        assert not ks.startswith("reference"), ks


@pytest.mark.parametrize("lbr,clip", [(0, None), (1, None), (1, 1.5)])
def test_gru_steps_compute_their_projection_unless_linear_before_reset_is_0(
    lbr, clip, fused_input_rows
):
    """A GRU with linear_before_reset=0 runs a second pass that reads x_n (r * (W_hn h) comes
    after the reset), so its steps keep the whole-sequence projection at any batch; one with 1
    (PyTorch's) computes it in its steps (gru_x) once the batch is large enough (forced to 1
    here), with ONNX's clip too. All against ONNX Runtime."""
    rng = np.random.default_rng(2026)
    c = node_case(rng, op="GRU", direction="bidirectional", layout=0, T=6, B=9, H=37, D=20,
                  lens=True, h0=True, lbr=lbr, clip=clip, acts=None, outputs=[True, True, False])  # fmt: skip
    m, feeds = build(c)
    nm = sn.from_onnx(m)
    fused_input_rows(1)
    runs = _C.fused_input_runs()
    got = nm.run(None, feeds)
    assert _C.fused_input_runs() - runs == (2 if lbr else 0)  # both directions, or none
    for g, w in zip(got, ort_outputs(c), strict=True):
        assert err(g, w) <= TOL


def test_layout_1_runs_where_onnxruntime_refuses():
    c = node_case(np.random.default_rng(3), op="LSTM", direction="bidirectional", layout=1)
    m, feeds = build(c)
    with pytest.raises(Exception, match="(?i)batchwise|layout"):
        ort_session(m).run(None, feeds)
    got = sn.from_onnx(m).run(None, feeds)
    for g, w in zip(got, ort_outputs(c)):
        assert err(g, w) <= TOL


@pytest.mark.parametrize("semantics", ["pytorch", "onnx"])
def test_nan_and_inf_propagate_as_in_the_onnx_reference(semantics):
    # The oracle is the onnx package's reference implementation of the operator (its
    # ReferenceEvaluator): ONNX Runtime's LSTM turns a NaN pre-activation into a number (its
    # vectorized sigmoid and tanh clamp their input), where ONNX's formulas, eager PyTorch and
    # seqfuse give NaN.
    from onnx.reference import ReferenceEvaluator

    kw = dict(op="LSTM", direction="bidirectional", layout=0, T=6, B=4, H=5, D=3, lens=False)
    if semantics == "pytorch":
        kw.update(peep=False, input_forget=0, clip=None, acts=None)
    else:
        kw.update(peep=True, input_forget=0, clip=None, acts=None)
    c = node_case(np.random.default_rng(5), **kw, outputs=[True, True, True])
    m, feeds = build(c)
    x = feeds["X"]
    x[2, 0, 1] = np.nan
    x[3, 2, :] = np.inf
    x[1, 3, 0] = -np.inf
    got = sn.from_onnx(m).run(None, feeds)
    with np.errstate(all="ignore"):
        want = ReferenceEvaluator(m).run(None, feeds)
    for g, w in zip(got, want):
        assert np.isnan(w).any()
        assert err(g, w) <= TOL


def test_keras_style_gru_graph():
    # tf2onnx's form of a Keras GRU(reset_after=False) over [B, T, D]: Transpose to [T, B, D],
    # the GRU node (linear_before_reset=0), Squeeze of the direction axis, Transpose back.
    rng = np.random.default_rng(9)
    B, T, D, H = 5, 11, 6, 7
    W = rng.uniform(-0.4, 0.4, (1, 3 * H, D)).astype(np.float32)
    R = rng.uniform(-0.4, 0.4, (1, 3 * H, H)).astype(np.float32)
    Bias = rng.uniform(-0.4, 0.4, (1, 6 * H)).astype(np.float32)
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes1")
    axes0 = numpy_helper.from_array(np.array([0], np.int64), "axes0")
    nodes = [
        helper.make_node("Transpose", ["inputs"], ["x_tbd"], name="gru/transpose", perm=[1, 0, 2]),
        helper.make_node("GRU", ["x_tbd", "W", "R", "B"], ["Y", "Y_h"], name="gru/GRU",
                         hidden_size=H, linear_before_reset=0),
        helper.make_node("Squeeze", ["Y", "axes1"], ["y_tbh"], name="gru/squeeze"),
        helper.make_node("Transpose", ["y_tbh"], ["sequences"], name="gru/t2", perm=[1, 0, 2]),
        helper.make_node("Squeeze", ["Y_h", "axes0"], ["state"], name="gru/squeeze_h"),
    ]  # fmt: skip
    g = helper.make_graph(
        nodes, "keras_gru",
        [helper.make_tensor_value_info("inputs", TensorProto.FLOAT, ["batch", T, D])],
        [helper.make_tensor_value_info("sequences", TensorProto.FLOAT, ["batch", T, H]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, ["batch", H])],
        initializer=[numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R"),
                     numpy_helper.from_array(Bias, "B"), axes, axes0],
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    nm = sn.from_onnx(m)
    assert list(nm.kernel_sets) == ["gru/GRU"]
    assert not nm.kernel_sets["gru/GRU"].startswith("reference")  # fused linear_before_reset=0
    assert [i.name for i in nm.get_inputs()] == ["inputs"]
    assert nm.get_inputs()[0].shape == ["batch", T, D]
    got = nm(x)
    want = ort_session(m).run(None, {"inputs": x})
    assert [a.shape for a in got] == [(B, T, H), (B, H)]
    for a, b in zip(got, want):
        assert err(a, b) <= TOL
    # and the same weights as linear_before_reset=1 are a different model
    m.graph.node[1].attribute[1].i = 1
    assert err(sn.from_onnx(m)(x)[0], want[0]) > 1e-3


# ---- round trips ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def seqfuse_exports(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from seqfuse.export.formats import to_onnx
    from seqfuse.models import build_model, preset
    from seqfuse.models.spec import ModelSpec

    out = {}
    d = tmp_path_factory.mktemp("onnx_exports")
    for task in ("sine", "names", "mnist"):
        torch.manual_seed(0)
        m = build_model(preset(task)).eval()
        spec = ModelSpec.of(m)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            to_onnx(m, d / f"{task}.onnx", (spec.example(2, 5, seed=0),))
        out[task] = (m, spec, d / f"{task}.onnx")
    return out


@pytest.mark.parametrize("task", ["sine", "names", "mnist"])
def test_seqfuse_exports_round_trip(task, seqfuse_exports):
    m, spec, path = seqfuse_exports[task]
    om, fm = sn.from_onnx(path), sn.from_module(m)
    assert {i.name for i in om.get_overridable_initializers()} >= {"h0", "lengths"}
    x = spec.example(3, 9, seed=1)
    lengths = np.array([9, 2, 6], np.int64)
    states = spec.random_states(3, seed=2)
    feeds = {"x": x.numpy(), "lengths": lengths}
    feeds.update({n: s.numpy() for n, s in zip(spec.state_names, states)})
    got = om.run(None, feeds)
    want_y, want_state = fm(x, spec.hx(states), lengths=lengths)
    want = [want_y.numpy()] + [s.numpy() for s in (want_state if spec.is_lstm else [want_state])]
    assert [o.name for o in om.get_outputs()] == spec.output_names
    for g, w in zip(got, want):
        assert err(g, w) <= TOL
    # zero states and full lengths by default
    got = om.run(["y"], {"x": x.numpy()})[0]
    assert err(got, fm(x)[0].numpy()) <= TOL


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
@pytest.mark.parametrize("module", ["LSTM", "GRU", "RNN"])
def test_torch_onnx_exports_round_trip(module, dynamo, tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    m = getattr(torch.nn, module)(4, 7, num_layers=2, bidirectional=True, batch_first=True).eval()
    x = torch.randn(3, 6, 4)
    path = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = (
            {"dynamo": True, "opset_version": 20}
            if dynamo
            else {"dynamo": False, "opset_version": 14, "dynamic_axes": {"x": {0: "b", 1: "t"}}}
        )
        torch.onnx.export(m, (x,), str(path), input_names=["x"], **kw)
    om = sn.from_onnx(path)
    x2 = torch.randn(3, 6, 4)
    got = om(x2.numpy())
    with torch.no_grad():
        y, state = m(x2)
    want = [y] + (list(state) if module == "LSTM" else [state])
    for g, w in zip(got, want):
        assert err(g, w.numpy()) <= TOL
    fy, _ = sn.from_module(m)(x2)
    assert err(got[0], fy.numpy()) <= TOL


# ---- seqfuse convert and weight files ---------------------------------------------------------------
def _convert(src: Path, dst: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "seqfuse", "convert", str(src), "-o", str(dst)],
        capture_output=True, text=True,
    )  # fmt: skip


def _stack_case() -> dict:
    rng = np.random.default_rng(21)
    return node_case(
        rng, op="LSTM", direction="bidirectional", layout=0, T=9, B=3, H=5, D=4, peep=True,
        input_forget=1, clip=2.5, lens=False, h0=False, c0=False, outputs=[True, True, True],
        acts=["HardSigmoid", "Tanh", "Softsign", "Sigmoid", "Elu", "Tanh"],
    )  # fmt: skip


def test_convert_writes_a_version_2_file(tmp_path):
    c = _stack_case()
    m, feeds = build(c)
    onnx.save(m, tmp_path / "lstm.onnx")
    r = _convert(tmp_path / "lstm.onnx", tmp_path / "lstm.seqfuse.safetensors")
    assert r.returncode == 0, r.stderr
    assert "fused kernels lack: activations" in r.stdout
    with open(tmp_path / "lstm.seqfuse.safetensors", "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        meta = json.loads(f.read(n))["__metadata__"]
    assert meta["version"] == "2"
    cfg = json.loads(meta["config"])
    assert cfg["peepholes"] and cfg["input_forget"] and cfg["clip"] == 2.5
    nm = sn.load(tmp_path / "lstm.seqfuse.safetensors")
    assert nm.isa == "reference (fused kernels lack: activations)"
    y, (hn, cn) = nm(np.ascontiguousarray(feeds["X"].transpose(1, 0, 2)))
    want = ort_session(m).run(None, feeds)
    T, B, H = c["T"], c["B"], c["H"]
    assert err(y, want[0].transpose(2, 0, 1, 3).reshape(B, T, 2 * H)) <= TOL
    assert err(hn, want[1]) <= TOL and err(cn, want[2]) <= TOL
    with pytest.raises(InvalidArgumentError, match="ONNX semantics"):
        sn.to_module(nm)


def test_a_reverse_model_does_not_stream(tmp_path):
    c = node_case(np.random.default_rng(4), op="GRU", direction="reverse", layout=0, lens=False,
                  h0=False, outputs=[True, True], acts=None)  # fmt: skip
    m, _ = build(c)
    onnx.save(m, tmp_path / "r.onnx")
    assert _convert(tmp_path / "r.onnx", tmp_path / "r.safetensors").returncode == 0
    nm = sn.load(tmp_path / "r.safetensors")
    assert not nm.isa.startswith("reference"), nm.isa  # the fused kernels run reverse
    with pytest.raises(InvalidArgumentError, match="streaming needs a unidirectional, forward"):
        nm.stream(1)
    x = np.random.default_rng(5).standard_normal((3, c["T"], c["D"])).astype(np.float32)
    want = sn.load(tmp_path / "r.safetensors", isa="reference")(x)
    got = sn.load(tmp_path / "r.safetensors", isa="portable")(x)
    assert err(got[0], want[0]) <= TOL and err(got[1], want[1]) <= TOL


def test_cuda_refuses_onnx_semantics_with_one_error(tmp_path):
    # The CUDA kernels implement PyTorch's semantics only: a model beyond them is refused when
    # it is built (csrc/cuda/model.cu's constructor check), not run wrong.
    from seqfuse import _C

    if not getattr(_C, "cuda_built", False) or _C.cuda_device_count() == 0:
        pytest.skip("needs a CUDA GPU and a CUDA build")
    c = node_case(np.random.default_rng(4), op="LSTM", direction="forward", layout=0, peep=True,
                  lens=False, h0=False, c0=False, outputs=[True, True, True])  # fmt: skip
    m, _ = build(c)
    onnx.save(m, tmp_path / "p.onnx")
    assert _convert(tmp_path / "p.onnx", tmp_path / "p.safetensors").returncode == 0
    with pytest.raises(InvalidArgumentError, match="the CUDA backend does not implement peepholes"):
        sn.load(tmp_path / "p.safetensors", device="cuda")


def test_version_1_files_still_load(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    m = torch.nn.GRU(3, 5, batch_first=True).eval()
    path = sn.from_module(m).save(tmp_path / "v.safetensors")
    data = bytearray(path.read_bytes())
    i = data.find(b'"version":"2"')
    i = i if i >= 0 else data.find(b'"version": "2"')
    assert i > 0
    j = data.index(b"2", i + len(b'"version":'))
    data[j : j + 1] = b"1"  # same length: the header size is unchanged
    path.write_bytes(bytes(data))
    x = torch.randn(2, 4, 3)
    with torch.no_grad():
        want = m(x)[0].numpy()
    assert err(sn.load(path)(x)[0].numpy(), want) <= TOL


@pytest.mark.parametrize("task", ["names", "mnist"])
def test_convert_refuses_what_a_file_cannot_hold(task, seqfuse_exports, tmp_path):
    # seqfuse's exports take states and lengths as inputs and put a head (and an Embedding)
    # around the stack: a native file from convert holds the stack only, so it says so.
    _, _, path = seqfuse_exports[task]
    r = _convert(path, tmp_path / "x.safetensors")
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1 and "error:" in r.stderr
    assert not (tmp_path / "x.safetensors").exists()


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
def test_convert_a_torch_export(dynamo, tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(2)
    m = torch.nn.LSTM(4, 6, num_layers=2, bidirectional=True).eval()
    x = torch.randn(5, 3, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = {"dynamo": True, "opset_version": 18} if dynamo else {"dynamo": False}
        torch.onnx.export(m, (x,), str(tmp_path / "m.onnx"), input_names=["x"], **kw)
    r = _convert(tmp_path / "m.onnx", tmp_path / "m.safetensors")
    assert r.returncode == 0, r.stderr
    nm = sn.load(tmp_path / "m.safetensors")
    assert nm.isa == sn.from_module(m).isa  # PyTorch's semantics: the fused kernels
    y, (hn, cn) = nm(x.transpose(0, 1).contiguous())
    with torch.no_grad():
        wy, (wh, wc) = m(x)
    assert err(y.numpy(), wy.transpose(0, 1).numpy()) <= TOL
    assert err(hn.numpy(), wh.numpy()) <= TOL and err(cn.numpy(), wc.numpy()) <= TOL
    assert sn.to_module(nm) is not None  # plain semantics still rebuild an nn.LSTM


@pytest.mark.cxx
def test_seqfuse_run_runs_a_converted_file_as_onnxruntime(tmp_path_factory, tmp_path):
    from seqfuse.export.textio import parse_tensors, write_tensors
    from test_cxx_apps import _build

    apps = _build(tmp_path_factory, "apps_native_onnx", "-DSEQFUSE_APPS_LIBTORCH=OFF")
    exe = next(p for p in apps.rglob("seqfuse-run") if p.is_file())
    c = _stack_case()
    m, feeds = build(c)
    onnx.save(m, tmp_path / "m.onnx")
    assert _convert(tmp_path / "m.onnx", tmp_path / "m.safetensors").returncode == 0
    x = np.ascontiguousarray(feeds["X"].transpose(1, 0, 2))  # seqfuse-run's x is [B, T, D]
    write_tensors(tmp_path / "in.txt", {"x": x})
    r = subprocess.run([str(exe), str(tmp_path / "m.safetensors"), str(tmp_path / "in.txt")],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = parse_tensors(r.stdout)
    want = ort_session(m).run(None, feeds)
    T, B, H = c["T"], c["B"], c["H"]
    assert err(out["y"].numpy(), want[0].transpose(2, 0, 1, 3).reshape(B, T, 2 * H)) <= TOL
    assert err(out["h_n"].numpy(), want[1]) <= TOL
    assert err(out["c_n"].numpy(), want[2]) <= TOL


# ---- bad ONNX ------------------------------------------------------------------------------------
def _simple(op="LSTM") -> tuple[onnx.ModelProto, dict]:
    return build(node_case(np.random.default_rng(1), op=op, direction="forward", layout=0,
                           T=4, B=2, H=3, D=2, acts=None))  # fmt: skip


def test_unsupported_op_names_op_and_node():
    m, _ = _simple()
    m.graph.node.append(helper.make_node("Erf", ["Y_h"], ["e"], name="my_erf"))
    with pytest.raises(InvalidArgumentError, match=r"unsupported op Erf in node 'my_erf'") as e:
        sn.from_onnx(m)
    assert "\n" not in str(e.value)


def test_wrong_weight_shape_is_named():
    m, _ = _simple()
    w = numpy_helper.to_array(m.graph.initializer[1])  # R
    m.graph.initializer[1].CopyFrom(numpy_helper.from_array(w[:, :, :2].copy(), "R"))
    with pytest.raises(InvalidArgumentError, match=r"node 'rec' \(LSTM\): .*R has shape"):
        sn.from_onnx(m)


def test_truncated_file(tmp_path):
    m, _ = _simple()
    data = m.SerializeToString()
    (tmp_path / "t.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightFileError, match="not a readable ONNX file|not a valid ONNX model"):
        sn.from_onnx(tmp_path / "t.onnx")
    with pytest.raises(WeightFileError, match="not found"):
        sn.from_onnx(tmp_path / "missing.onnx")


def test_missing_external_data(tmp_path):
    m, feeds = _simple()
    want = ort_session(m).run(None, feeds)
    onnx.save(m, tmp_path / "e.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="e.data", size_threshold=0)  # fmt: skip
    ok = sn.from_onnx(tmp_path / "e.onnx").run(None, feeds)
    for a, b in zip(ok, want):
        assert err(a, b) <= TOL
    (tmp_path / "e.data").unlink()
    with pytest.raises(WeightFileError, match=r"e\.data.*missing"):
        sn.from_onnx(tmp_path / "e.onnx")


def test_bad_feeds_are_clear_errors():
    m, feeds = _simple()
    nm = sn.from_onnx(m)
    with pytest.raises(InvalidArgumentError, match="input 'X' must have shape"):
        nm.run(None, {**feeds, "X": feeds["X"][:, :, :1]})
    with pytest.raises(NativeTypeError, match="input 'X' must be float32"):
        nm.run(None, {**feeds, "X": feeds["X"].astype(np.float64)})
    with pytest.raises(InvalidArgumentError, match="unknown input 'nope'"):
        nm.run(None, {**feeds, "nope": feeds["X"]})
    with pytest.raises(InvalidArgumentError, match="input 'X' is required"):
        nm.run(None, {})
    with pytest.raises(InvalidArgumentError, match="unknown output 'Z'"):
        nm.run(["Z"], feeds)
    c = node_case(np.random.default_rng(1), op="GRU", T=4, B=2, lens=True, layout=0)
    m, feeds = build(c)
    feeds["sequence_lens"][0] = 0
    with pytest.raises(InvalidArgumentError, match=r"node 'rec' \(GRU\): sequence_lens\[0\] = 0"):
        sn.from_onnx(m).run(None, feeds)
    with pytest.raises(NativeTypeError, match="path or an onnx.ModelProto"):
        sn.from_onnx(42)


def test_bad_attributes_are_refused():
    m, _ = _simple("GRU")
    m.graph.node[0].attribute.append(helper.make_attribute("activations", ["Sigmoid", "Swish"]))
    with pytest.raises(InvalidArgumentError, match="unknown activation 'Swish'"):
        sn.from_onnx(m)
    m, _ = _simple("GRU")
    m.graph.node[0].attribute.append(helper.make_attribute("activations", ["Sigmoid"]))
    with pytest.raises(InvalidArgumentError, match="activations needs 2 entries"):
        sn.from_onnx(m)


def test_cli_convert_errors_are_one_line(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07garbage")
    r = _convert(tmp_path / "bad.onnx", tmp_path / "o.safetensors")
    assert r.returncode == 2 and r.stderr.startswith("seqfuse convert: error:")
    assert r.stderr.count("\n") == 1
    r = _convert(tmp_path / "nope.onnx", tmp_path / "o.safetensors")
    assert r.returncode == 2 and "not found" in r.stderr


def test_errors_are_seqfuse_errors():
    assert issubclass(InvalidArgumentError, SeqfuseError)
    assert issubclass(WeightFileError, SeqfuseError)
