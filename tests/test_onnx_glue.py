"""ONNX in, the glue around the recurrent nodes: seqfuse.native.from_onnx against ONNX Runtime
(and eager PyTorch where a torch module is the source), max error <= 1e-5.

- torch.onnx exports of whole models, not bare nn.LSTM/GRU: an Embedding + 2-layer GRU +
  Linear + LogSoftmax name classifier and a 2-layer bidirectional LSTM with a per-step Linear
  head, at opset 14 and 20 (TorchScript exporter, dynamic batch and length) and opset 20
  (dynamo exporter, its fixed shapes);
- hand-built graphs in the forms tf2onnx and torch.onnx write, one op family each time:
  Transpose, Squeeze/Unsqueeze (attribute and input forms), Reshape, Concat, Slice, Gather as
  an Embedding, Constant nodes and initializers, initial states built from shape arithmetic
  (Shape/Gather/Unsqueeze/Concat/ConstantOfShape/Expand), MatMul/Gemm/Add heads under
  Relu/Sigmoid/Tanh/Softmax/LogSoftmax (opset 11's 2-D Softmax and opset 13's), stacked and
  unidirectional nodes concatenated by hand;
- an empty sequence (T = 0) and an empty batch get one clear error naming the node: ONNX
  leaves them undefined (ONNX Runtime aborts the process on a GRU with T = 0 and returns zero
  states for LSTM and RNN even when initial_h is given; the onnx reference implementation
  raises), so there is no oracle to follow;
- an op outside the list is refused at load, naming the op and the node;
- from_onnx's whole-graph path (one native model when the graph is [Embedding ->] stack ->
  Linear head [-> activations]) against ONNX Runtime, eager PyTorch and its own node path;
- `seqfuse convert` keeps the Embedding and the head (step, last_step, last_hidden) in the
  native file, which seqfuse.native.load and the C++ app seqfuse-run run as ONNX Runtime does;
  glue the file cannot hold (an activation after the head, two heads, a head on a lower
  layer) is one line naming the node, and from_onnx still runs that graph.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
import seqfuse.native as sn  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from seqfuse.native.contract import InvalidArgumentError  # noqa: E402
from test_onnx_import import err, ort_session  # noqa: E402

TOL = 1e-5
F32 = TensorProto.FLOAT
I64 = TensorProto.INT64
SIZES = [(3, 6), (1, 1), (5, 11)]  # (B, T), unlike the export's


def _init(rng, name: str, shape, scale: float = 0.4, dtype=np.float32):
    return numpy_helper.from_array(rng.uniform(-scale, scale, shape).astype(dtype), name)


def _const_i64(name: str, values) -> onnx.NodeProto:
    return helper.make_node(
        "Constant", [], [name], value=numpy_helper.from_array(np.array(values, np.int64), name)
    )


def _model(nodes, inputs, outputs, inits, opset: int) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "glue", inputs, outputs, initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _compare(m: onnx.ModelProto, feeds_for, sizes=SIZES) -> None:
    """from_onnx's outputs equal ONNX Runtime's on feeds of each (B, T)."""
    native, ref = sn.from_onnx(m), ort_session(m)
    for B, T in sizes:
        feeds = feeds_for(B, T)
        want = ref.run(None, feeds)
        got = native.run(None, feeds)
        assert len(got) == len(want)
        for o, g, w in zip(m.graph.output, got, want):
            assert g.shape == w.shape, (o.name, B, T)
            assert err(g, w) <= TOL, (o.name, B, T)


# ---- hand-built glue -------------------------------------------------------------------------------
def _tf2onnx_lstm(opset: int) -> onnx.ModelProto:
    """x [B, T, D] -> Transpose -> LSTM (initial_h and initial_c from Shape/Gather/Unsqueeze/
    Concat/ConstantOfShape) -> Squeeze -> Transpose -> Slice (last step) -> Squeeze -> MatMul +
    Add -> Softmax; and Y_h -> Squeeze -> Relu; Y_c -> Tanh."""
    rng = np.random.default_rng(3)
    D, H, K = 4, 5, 3
    new = opset >= 13  # Squeeze/Unsqueeze take axes as an input from opset 13

    def squeeze(x, out, axes, op="Squeeze"):
        if new:
            return [
                _const_i64(out + "_axes", axes),
                helper.make_node(op, [x, out + "_axes"], [out]),
            ]
        return [helper.make_node(op, [x], [out], axes=axes)]

    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
        helper.make_node("Shape", ["x"], ["shape"]),
        _const_i64("zero", 0),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
        *squeeze("batch", "batch1", [0], "Unsqueeze"),
        _const_i64("one", [1]),
        _const_i64("hid", [H]),
        helper.make_node("Concat", ["one", "batch1", "hid"], ["state_shape"], axis=0),
        helper.make_node(
            "ConstantOfShape", ["state_shape"], ["h0"],
            value=numpy_helper.from_array(np.array([0.25], np.float32)),
        ),
        helper.make_node("ConstantOfShape", ["state_shape"], ["c0"]),
        helper.make_node("LSTM", ["xt", "W", "R", "B", "", "h0", "c0"], ["Y", "Y_h", "Y_c"],
                         hidden_size=H, name="lstm"),
        *squeeze("Y", "Y3", [1]),
        helper.make_node("Transpose", ["Y3"], ["Yb"], perm=[1, 0, 2]),
        _const_i64("starts", [-1]),
        _const_i64("ends", [np.iinfo(np.int64).max]),
        _const_i64("axes", [1]),
        helper.make_node("Slice", ["Yb", "starts", "ends", "axes"], ["last3"]),
        *squeeze("last3", "last", [1]),
        helper.make_node("MatMul", ["last", "Wo"], ["mm"]),
        helper.make_node("Add", ["mm", "bo"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1 if opset < 13 else -1),
        *squeeze("Y_h", "h2", [0]),
        helper.make_node("Relu", ["h2"], ["h_relu"]),
        helper.make_node("Tanh", ["Y_c"], ["c_tanh"]),
    ]  # fmt: skip
    inits = [
        _init(rng, "W", (1, 4 * H, D)), _init(rng, "R", (1, 4 * H, H)),
        _init(rng, "B", (1, 8 * H)), _init(rng, "Wo", (H, K), 1.0), _init(rng, "bo", (K,)),
    ]  # fmt: skip
    inputs = [helper.make_tensor_value_info("x", F32, ["B", "T", D])]
    outputs = [
        helper.make_tensor_value_info("probs", F32, ["B", K]),
        helper.make_tensor_value_info("h_relu", F32, ["B", H]),
        helper.make_tensor_value_info("c_tanh", F32, [1, "B", H]),
    ]
    return _model(nodes, inputs, outputs, inits, opset)


@pytest.mark.parametrize("opset", [11, 13, 17])
def test_tf2onnx_style_lstm_with_softmax_head(opset):
    m = _tf2onnx_lstm(opset)
    rng = np.random.default_rng(opset)
    _compare(m, lambda B, T: {"x": rng.standard_normal((B, T, 4)).astype(np.float32)})


def _embedding_gru_stack(opset: int) -> onnx.ModelProto:
    """tokens [B, T] -> Gather (an Embedding) -> Transpose -> bidirectional GRU (initial_h
    from Expand of a constant to [2, B, H]) -> Transpose + Reshape [0, 0, -1] -> GRU with
    linear_before_reset=1 -> Y_h -> Reshape [-1, H] -> Gemm (transB, alpha, beta) under
    Sigmoid and LogSoftmax; the per-step top Y -> Squeeze -> Tanh."""
    rng = np.random.default_rng(5)
    V, E, H, K = 11, 6, 7, 4
    nodes = [
        helper.make_node("Gather", ["table", "tokens"], ["emb"], axis=0, name="embedding"),
        helper.make_node("Transpose", ["emb"], ["xt"], perm=[1, 0, 2]),
        helper.make_node("Shape", ["tokens"], ["tshape"]),
        _const_i64("s0", [0]),
        _const_i64("s1", [1]),
        helper.make_node("Slice", ["tshape", "s0", "s1"], ["b1"]),
        _const_i64("two", [2]),
        _const_i64("hid", [H]),
        helper.make_node("Concat", ["two", "b1", "hid"], ["h0_shape"], axis=0),
        helper.make_node("Expand", ["h0_base", "h0_shape"], ["h0"]),
        helper.make_node("GRU", ["xt", "W1", "R1", "B1", "", "h0"], ["Y1"], hidden_size=H,
                         direction="bidirectional", name="gru1"),
        helper.make_node("Transpose", ["Y1"], ["Y1t"], perm=[0, 2, 1, 3]),
        _const_i64("shape3", [0, 0, -1]),
        helper.make_node("Reshape", ["Y1t", "shape3"], ["x2"]),
        helper.make_node("GRU", ["x2", "W2", "R2", "B2"], ["Y2", "Y2_h"], hidden_size=H,
                         linear_before_reset=1, name="gru2"),
        _const_i64("shape2", [-1, H]),
        helper.make_node("Reshape", ["Y2_h", "shape2"], ["top"]),
        helper.make_node("Gemm", ["top", "Wo", "bo"], ["logits"], transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Sigmoid", ["logits"], ["sig"]),
        helper.make_node("LogSoftmax", ["logits"], ["logp"], axis=1 if opset < 13 else -1),
        _const_i64("ax1", [1]),
        helper.make_node("Squeeze", ["Y2", "ax1"] if opset >= 13 else ["Y2"], ["Y2s"],
                         **({} if opset >= 13 else {"axes": [1]})),
        helper.make_node("Tanh", ["Y2s"], ["steps"]),
    ]  # fmt: skip
    inits = [
        _init(rng, "table", (V, E), 1.0),
        numpy_helper.from_array(rng.uniform(-1, 1, (2, 1, H)).astype(np.float32), "h0_base"),
        _init(rng, "W1", (2, 3 * H, E)), _init(rng, "R1", (2, 3 * H, H)),
        _init(rng, "B1", (2, 6 * H)),
        _init(rng, "W2", (1, 3 * H, 2 * H)), _init(rng, "R2", (1, 3 * H, H)),
        _init(rng, "B2", (1, 6 * H)),
        _init(rng, "Wo", (K, H), 1.0), _init(rng, "bo", (K,)),
    ]  # fmt: skip
    inputs = [helper.make_tensor_value_info("tokens", I64, ["B", "T"])]
    outputs = [
        helper.make_tensor_value_info("sig", F32, ["B", K]),
        helper.make_tensor_value_info("logp", F32, ["B", K]),
        helper.make_tensor_value_info("steps", F32, ["T", "B", H]),
    ]
    return _model(nodes, inputs, outputs, inits, opset)


@pytest.mark.parametrize("opset", [11, 14])
def test_embedding_and_stacked_gru_with_gemm_head(opset):
    m = _embedding_gru_stack(opset)
    rng = np.random.default_rng(opset)
    _compare(m, lambda B, T: {"tokens": rng.integers(0, 11, (B, T)).astype(np.int64)})
    nm = sn.from_onnx(m)
    with pytest.raises(InvalidArgumentError, match=r"node 'embedding' \(Gather\) failed"):
        nm.run(None, {"tokens": np.full((2, 3), 11, np.int64)})


def _two_directions_by_hand(opset: int) -> onnx.ModelProto:
    """Two unidirectional RNN nodes (forward, reverse) over the same input, their Y
    concatenated on the feature axis, and a per-step MatMul + Add head under Sigmoid; the
    forward node's initial_h a nonzero initializer, the reverse node's a Constant node."""
    rng = np.random.default_rng(8)
    D, H, K = 3, 5, 2
    nodes = [
        helper.make_node("RNN", ["x", "Wf", "Rf", "", "", "h0f"], ["Yf"], hidden_size=H,
                         name="fwd"),
        helper.make_node("Constant", [], ["h0r"],
                         value=numpy_helper.from_array(np.full((1, 1, H), -0.5, np.float32))),
        helper.make_node("RNN", ["x", "Wr", "Rr", "Br", "", "h0r"], ["Yr"], hidden_size=H,
                         direction="reverse", activations=["Relu"], name="rev"),
        helper.make_node("Concat", ["Yf", "Yr"], ["Y"], axis=3),
        helper.make_node("Squeeze", ["Y"], ["Ys"], axes=[1]),
        helper.make_node("MatMul", ["Ys", "Wo"], ["mm"]),
        helper.make_node("Add", ["mm", "bo"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["out"]),
    ]  # fmt: skip
    inits = [
        _init(rng, "Wf", (1, H, D)), _init(rng, "Rf", (1, H, H)),
        _init(rng, "Wr", (1, H, D)), _init(rng, "Rr", (1, H, H)), _init(rng, "Br", (1, 2 * H)),
        _init(rng, "h0f", (1, 1, H), 1.0), _init(rng, "Wo", (2 * H, K), 1.0),
        _init(rng, "bo", (K,)),
    ]  # fmt: skip
    inputs = [helper.make_tensor_value_info("x", F32, ["T", 1, D])]
    outputs = [helper.make_tensor_value_info("out", F32, ["T", 1, K])]
    return _model(nodes, inputs, outputs, inits, opset)


def test_unidirectional_nodes_concatenated_by_hand():
    m = _two_directions_by_hand(12)
    rng = np.random.default_rng(1)
    _compare(
        m,
        lambda B, T: {"x": rng.standard_normal((T, 1, 3)).astype(np.float32)},
        sizes=[(1, 1), (1, 9)],
    )


# ---- torch.onnx exports of whole models ------------------------------------------------------------
def _torch_models():
    torch = pytest.importorskip("torch")

    class NameGRU(torch.nn.Module):
        """Embedding -> 2-layer GRU -> Linear on the last step -> LogSoftmax."""

        def __init__(self, vocab=20, embed=8, hidden=7, classes=5):
            super().__init__()
            self.emb = torch.nn.Embedding(vocab, embed)
            self.rnn = torch.nn.GRU(embed, hidden, num_layers=2, batch_first=True)
            self.fc = torch.nn.Linear(hidden, classes)

        def forward(self, x):
            out, _ = self.rnn(self.emb(x))
            return torch.log_softmax(self.fc(out[:, -1]), dim=-1)

    class BiLSTM(torch.nn.Module):
        """2-layer bidirectional LSTM -> Linear on every step."""

        def __init__(self, inp=6, hidden=5, out=4):
            super().__init__()
            self.rnn = torch.nn.LSTM(inp, hidden, num_layers=2, bidirectional=True,
                                     batch_first=True)  # fmt: skip
            self.fc = torch.nn.Linear(2 * hidden, out)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.fc(out)

    return torch, NameGRU, BiLSTM


def export_torch(m, x, path, opset: int, dynamo: bool) -> None:
    torch = pytest.importorskip("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = (
            {"dynamo": True}
            if dynamo
            else {"dynamo": False, "dynamic_axes": {"x": {0: "b", 1: "t"}}}
        )
        torch.onnx.export(m, (x,), str(path), input_names=["x"], opset_version=opset, **kw)


EXPORTS = [(14, False), (20, False), (20, True)]


@pytest.mark.parametrize("opset,dynamo", EXPORTS, ids=["opset14", "opset20", "opset20-dynamo"])
@pytest.mark.parametrize("which", ["name_gru", "bilstm_head"])
def test_torch_exported_models(which, opset, dynamo, tmp_path):
    torch, NameGRU, BiLSTM = _torch_models()
    torch.manual_seed(opset)
    m = (NameGRU() if which == "name_gru" else BiLSTM()).eval()

    def make(B, T, seed):
        g = torch.Generator().manual_seed(seed)
        if which == "name_gru":
            return torch.randint(0, 20, (B, T), generator=g)
        return torch.randn(B, T, 6, generator=g)

    path = tmp_path / "m.onnx"
    export_torch(m, make(3, 6, 0), path, opset, dynamo)
    native, ref = sn.from_onnx(path), ort.InferenceSession(str(path))
    # Both map onto one native model (the LogSoftmax runs after it, in NumPy); the node-by-node
    # path (run_all) is checked too.
    assert native.whole_graph is not None, native
    out = native.get_outputs()[0].name
    # The dynamo exporter fixes the shapes it saw; the TorchScript one keeps them dynamic.
    for k, (B, T) in enumerate([(3, 6)] if dynamo else SIZES):
        x = make(B, T, k + 1)
        got = native(x.numpy())
        want = ref.run(None, {"x": x.numpy()})[0]
        assert err(got, want) <= TOL
        assert err(native.run_all({"x": x.numpy()})[out], want) <= TOL
        with torch.no_grad():
            assert err(got, m(x).numpy()) <= TOL
    if not dynamo:  # what the native model refuses goes the node path, which names the node
        bad = make(2, 0, 0).numpy()
        with pytest.raises(InvalidArgumentError, match=r"\((GRU|LSTM)\): X has T = 0"):
            native(bad)


# ---- empty sequences and batches -------------------------------------------------------------------
@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_an_empty_sequence_is_one_clear_error(op):
    H, D = 3, 2
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    rng = np.random.default_rng(0)
    node = helper.make_node(op, ["X", "W", "R"], ["Y", "Y_h"], hidden_size=H, name="rec")
    m = _model(
        [node],
        [helper.make_tensor_value_info("X", F32, ["T", "B", D])],
        [
            helper.make_tensor_value_info("Y", F32, ["T", 1, "B", H]),
            helper.make_tensor_value_info("Y_h", F32, [1, "B", H]),
        ],
        [_init(rng, "W", (1, G * H, D)), _init(rng, "R", (1, G * H, H))],
        14,
    )
    nm = sn.from_onnx(m)
    with pytest.raises(InvalidArgumentError, match=rf"node 'rec' \({op}\): X has T = 0") as e:
        nm.run(None, {"X": np.zeros((0, 2, D), np.float32)})
    assert "\n" not in str(e.value)
    with pytest.raises(InvalidArgumentError, match=rf"node 'rec' \({op}\): X has B = 0"):
        nm.run(None, {"X": np.zeros((4, 0, D), np.float32)})
    x = rng.standard_normal((4, 2, D)).astype(np.float32)  # the model still runs
    for g, w in zip(nm.run(None, {"X": x}), ort_session(m).run(None, {"X": x})):
        assert err(g, w) <= TOL


def test_an_unsupported_op_in_the_glue_names_op_and_node():
    m = _tf2onnx_lstm(13)
    m.graph.node.insert(len(m.graph.node) - 1, helper.make_node("Erf", ["h_relu"], ["e"],
                                                              name="erf_head"))  # fmt: skip
    with pytest.raises(InvalidArgumentError, match=r"unsupported op Erf in node 'erf_head'"):
        sn.from_onnx(m)


# ---- seqfuse convert: an Embedding and a head in the native file ------------------------------------
def _convert(src, dst):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "seqfuse", "convert", str(src), "-o", str(dst)],
        capture_output=True, text=True,
    )  # fmt: skip


def _convertible(kind: str):
    """(module, example input maker, vocab or None): torch models whose glue maps onto a native
    file: Embedding -> GRU x2 -> Linear on the last step; BiLSTM x2 -> Linear on every step;
    bidirectional GRU -> Linear on the final hidden states."""
    torch, NameGRU, BiLSTM = _torch_models()

    class LastHidden(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.GRU(3, 6, bidirectional=True, batch_first=True)
            self.fc = torch.nn.Linear(12, 2)

        def forward(self, x):
            _, h = self.rnn(x)
            return self.fc(torch.cat([h[-2], h[-1]], dim=1))

    class NameLogits(NameGRU):
        def forward(self, x):
            out, _ = self.rnn(self.emb(x))
            return self.fc(out[:, -1])

    torch.manual_seed(4)
    if kind == "embedding_gru_last_step":
        return NameLogits().eval(), lambda B, T, g: torch.randint(0, 20, (B, T), generator=g)
    if kind == "bilstm_step":
        return BiLSTM().eval(), lambda B, T, g: torch.randn(B, T, 6, generator=g)
    return LastHidden().eval(), lambda B, T, g: torch.randn(B, T, 3, generator=g)


CONVERTIBLE = ["embedding_gru_last_step", "bilstm_step", "bigru_last_hidden"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Each convertible model exported at opset 14 and 20 (dynamo), and converted."""
    torch = pytest.importorskip("torch")
    d = tmp_path_factory.mktemp("convert_heads")
    out = {}
    for kind in CONVERTIBLE:
        m, make = _convertible(kind)
        for opset, dynamo in [(14, False), (20, True)]:
            src = d / f"{kind}_{opset}.onnx"
            export_torch(m, make(3, 6, torch.Generator().manual_seed(0)), src, opset, dynamo)
            r = _convert(src, d / f"{kind}_{opset}.safetensors")
            out[kind, opset] = (m, make, src, d / f"{kind}_{opset}.safetensors", r)
    return out


@pytest.mark.parametrize("opset", [14, 20])
@pytest.mark.parametrize("kind", CONVERTIBLE)
def test_convert_keeps_the_embedding_and_the_head(kind, opset, converted):
    torch = pytest.importorskip("torch")
    m, make, src, dst, r = converted[kind, opset]
    assert r.returncode == 0, r.stderr
    head = {"embedding_gru_last_step": "last_step", "bilstm_step": "step"}.get(kind, "last_hidden")
    assert f"head: {head}" in r.stdout
    nm = sn.load(dst)
    assert nm.config["head"] == head
    assert (nm.config["vocab_size"] > 0) == (kind == "embedding_gru_last_step")
    x = make(3, 6, torch.Generator().manual_seed(9))  # the dynamo export's fixed shape
    want = ort.InferenceSession(str(src)).run(None, {"x": x.numpy()})[0]
    y = nm(x)[0]
    assert err(y.numpy(), want) <= TOL
    rebuilt = sn.to_module(nm)  # PyTorch's semantics: the SeqModel with the same call
    with torch.no_grad():
        assert err(rebuilt(x)[0].numpy(), m(x).numpy()) <= TOL


@pytest.mark.cxx
def test_seqfuse_run_on_converted_heads_matches_onnxruntime(converted, tmp_path_factory, tmp_path):
    import subprocess

    torch = pytest.importorskip("torch")
    from seqfuse.export.textio import parse_tensors, write_tensors
    from test_cxx_apps import _build

    apps = _build(tmp_path_factory, "apps_native_onnx_heads", "-DSEQFUSE_APPS_LIBTORCH=OFF")
    exe = next(p for p in apps.rglob("seqfuse-run") if p.is_file())
    for (kind, opset), (_, make, src, dst, r) in converted.items():
        assert r.returncode == 0, r.stderr
        x = make(3, 6, torch.Generator().manual_seed(11))
        write_tensors(tmp_path / "in.txt", {"x": x})
        run = subprocess.run([str(exe), str(dst), str(tmp_path / "in.txt")],
                             capture_output=True, text=True)  # fmt: skip
        assert run.returncode == 0, (kind, opset, run.stderr)
        got = parse_tensors(run.stdout)["y"].numpy()
        want = ort.InferenceSession(str(src)).run(None, {"x": x.numpy()})[0]
        assert err(got, want) <= TOL, (kind, opset)


def _one_line_error(r, *words: str) -> None:
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith("seqfuse convert: error:") and r.stderr.count("\n") == 1
    for w in words:
        assert w in r.stderr, r.stderr


@pytest.mark.parametrize("opset,dynamo", [(14, False), (20, True)], ids=["opset14", "dynamo"])
def test_convert_refuses_an_activation_after_the_head(opset, dynamo, tmp_path):
    # The file's head is a Linear; the LogSoftmax after it has no place there. from_onnx runs
    # the same graph (test_torch_exported_models compares it with ONNX Runtime).
    torch, NameGRU, _ = _torch_models()
    m = NameGRU().eval()
    export_torch(m, torch.randint(0, 20, (3, 6)), tmp_path / "m.onnx", opset, dynamo)
    r = _convert(tmp_path / "m.onnx", tmp_path / "m.safetensors")
    _one_line_error(r, "(LogSoftmax)", "one Linear head", "from_onnx runs the whole graph")
    assert not (tmp_path / "m.safetensors").exists()
    x = torch.randint(0, 20, (3, 6))
    got = sn.from_onnx(tmp_path / "m.onnx")(x.numpy())
    assert (
        err(got, ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"x": x.numpy()})[0])
        <= TOL
    )


def _gru_stack(heads: list[tuple[str, str]]) -> onnx.ModelProto:
    """tokens [B, T] -> Gather (an Embedding) -> Transpose -> GRU -> Squeeze -> GRU (both
    forward, linear_before_reset=1); each head (name, the value it reads: "Y1_h" or "Y2_h")
    is Reshape [-1, H] -> Gemm (transB, alpha, beta), a graph output."""
    rng = np.random.default_rng(6)
    V, E, H, K = 9, 5, 4, 3
    nodes = [
        helper.make_node("Gather", ["table", "tokens"], ["emb"], axis=0),
        helper.make_node("Transpose", ["emb"], ["xt"], perm=[1, 0, 2]),
        helper.make_node("GRU", ["xt", "W1", "R1", "B1"], ["Y1", "Y1_h"], hidden_size=H,
                         linear_before_reset=1, name="gru1"),
        _const_i64("ax1", [1]),
        helper.make_node("Squeeze", ["Y1", "ax1"], ["x2"]),
        helper.make_node("GRU", ["x2", "W2", "R2", "B2"], ["Y2", "Y2_h"], hidden_size=H,
                         linear_before_reset=1, name="gru2"),
        _const_i64("shape2", [-1, H]),
    ]  # fmt: skip
    outputs = []
    for name, reads in heads:
        nodes.append(helper.make_node("Reshape", [reads, "shape2"], [name + "_in"]))
        nodes.append(
            helper.make_node("Gemm", [name + "_in", "Wo", "bo"], [name], transB=1, alpha=0.5,
                             beta=2.0, name=name)
        )  # fmt: skip
        outputs.append(helper.make_tensor_value_info(name, F32, ["N", K]))
    inits = [
        _init(rng, "table", (V, E), 1.0),
        _init(rng, "W1", (1, 3 * H, E)), _init(rng, "R1", (1, 3 * H, H)), _init(rng, "B1", (1, 6 * H)),
        _init(rng, "W2", (1, 3 * H, H)), _init(rng, "R2", (1, 3 * H, H)), _init(rng, "B2", (1, 6 * H)),
        _init(rng, "Wo", (K, H), 1.0), _init(rng, "bo", (K,)),
    ]  # fmt: skip
    inputs = [helper.make_tensor_value_info("tokens", I64, ["B", "T"])]
    return _model(nodes, inputs, outputs, inits, 14)


def test_convert_a_hand_built_embedding_and_gemm_head(tmp_path):
    m = _gru_stack([("logits", "Y2_h")])
    onnx.save(m, tmp_path / "m.onnx")
    r = _convert(tmp_path / "m.onnx", tmp_path / "m.safetensors")
    assert r.returncode == 0, r.stderr
    assert "head: last_hidden (logits)" in r.stdout
    tokens = np.random.default_rng(2).integers(0, 9, (4, 5)).astype(np.int64)
    want = ort_session(m).run(None, {"tokens": tokens})[0]
    assert err(sn.load(tmp_path / "m.safetensors")(tokens)[0], want) <= TOL
    nm = sn.from_onnx(m)  # the same graph, whole, in from_onnx (Gemm's alpha and beta folded)
    assert nm.whole_graph is not None
    assert err(nm(tokens), want) <= TOL
    with pytest.raises(InvalidArgumentError, match=r"\(Gather\) failed"):
        nm(np.full((2, 3), 9, np.int64))  # out of the vocabulary: the node path names the node


def test_convert_refuses_glue_it_cannot_hold(tmp_path):
    # tf2onnx-style graph: Softmax after the head, Relu and Tanh on the states.
    onnx.save(_tf2onnx_lstm(13), tmp_path / "a.onnx")
    _one_line_error(_convert(tmp_path / "a.onnx", tmp_path / "a.safetensors"), "(Softmax)")
    # two heads on one stack
    onnx.save(_gru_stack([("one", "Y2_h"), ("two", "Y2_h")]), tmp_path / "b.onnx")
    _one_line_error(_convert(tmp_path / "b.onnx", tmp_path / "b.safetensors"), "two heads")
    # a head on the first layer, not the top one
    m = _gru_stack([("logits", "Y1_h")])
    onnx.save(m, tmp_path / "c.onnx")
    _one_line_error(_convert(tmp_path / "c.onnx", tmp_path / "c.safetensors"), "not the top")
    # from_onnx runs such a graph
    tokens = np.random.default_rng(3).integers(0, 9, (2, 5)).astype(np.int64)
    assert err(sn.from_onnx(m)(tokens), ort_session(m).run(None, {"tokens": tokens})[0]) <= TOL


def test_a_state_computed_from_the_input_values_is_no_native_file(tmp_path):
    # initial_h = Tanh(the first step's embedding, 4 of its 5 features): from the input's
    # values, not its shape, so one native model (which takes states per call) cannot be it.
    m = _gru_stack([("logits", "Y2_h")])
    g = m.graph
    extra = [
        _const_i64("h_st", [0, 0]), _const_i64("h_en", [1, 4]), _const_i64("h_ax", [1, 2]),
        helper.make_node("Slice", ["emb", "h_st", "h_en", "h_ax"], ["h_sl"]),  # [B, 1, 4]
        helper.make_node("Transpose", ["h_sl"], ["h_t"], perm=[1, 0, 2]),  # [1, B, 4]
        helper.make_node("Tanh", ["h_t"], ["h0"]),
    ]  # fmt: skip
    for k, n in enumerate(extra):
        g.node.insert(2 + k, n)
    gru1 = next(n for n in g.node if n.name == "gru1")
    gru1.input.extend(["", "h0"])
    onnx.checker.check_model(m)
    onnx.save(m, tmp_path / "m.onnx")
    _one_line_error(
        _convert(tmp_path / "m.onnx", tmp_path / "m.safetensors"),
        "computes its initial_h from the graph's input values",
    )
    nm = sn.from_onnx(m)
    assert nm.whole_graph is None  # node by node
    tokens = np.random.default_rng(4).integers(0, 9, (3, 6)).astype(np.int64)
    assert err(nm(tokens), ort_session(m).run(None, {"tokens": tokens})[0]) <= TOL


@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_the_whole_graph_path_equals_the_node_path(op, layout):
    # A bare node fed only X is one native model (Y, Y_h, Y_c rebuilt in the node's layout);
    # the node path (run_all) and, for layout 0, ONNX Runtime give the same values.
    from test_onnx_import import build, node_case

    c = node_case(np.random.default_rng(7), op=op, direction="bidirectional", layout=layout,
                  T=6, B=4, lens=False, h0=False, c0=False, outputs=[True, True, True])  # fmt: skip
    m, feeds = build(c)
    nm = sn.from_onnx(m)
    assert nm.whole_graph is not None
    names = [o.name for o in m.graph.output]
    got, env = nm.run(None, feeds), nm.run_all(feeds)
    for n, g in zip(names, got):
        assert g.shape == env[n].shape and err(g, env[n]) <= TOL, n
    if layout == 0:
        for g, w in zip(got, ort_session(m).run(None, feeds)):
            assert err(g, w) <= TOL


def test_save_writes_the_file_convert_writes_and_serve_ships(tmp_path):
    # OnnxModel.save is convert's writer; seqfuse serve's model_bytes ships an ONNX file by it.
    pytest.importorskip("torch")
    from seqfuse.serve.model import model_bytes

    m = _gru_stack([("logits", "Y2_h")])
    onnx.save(m, tmp_path / "m.onnx")
    cfg, about, core, worst = sn.from_onnx(m).save(tmp_path / "a.safetensors")
    assert cfg["head"] == "last_hidden" and about["tokens"] and worst <= TOL
    data, name = model_bytes(tmp_path / "m.onnx")
    assert name == "m" and data[:8] == (tmp_path / "a.safetensors").read_bytes()[:8]
    (tmp_path / "b.safetensors").write_bytes(data)
    tokens = np.random.default_rng(5).integers(0, 9, (2, 7)).astype(np.int64)
    want = ort_session(m).run(None, {"tokens": tokens})[0]
    for f in ("a", "b"):
        assert err(sn.load(tmp_path / f"{f}.safetensors")(tokens)[0], want) <= TOL
    with pytest.raises(InvalidArgumentError, match=r"\(Softmax\)"):
        sn.from_onnx(_tf2onnx_lstm(13)).save(tmp_path / "c.safetensors")
    assert not (tmp_path / "c.safetensors").exists()
