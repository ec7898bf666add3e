"""seqfuse.native.onnx: run an ONNX file's RNN/GRU/LSTM graph on the native engine.

``from_onnx(path_or_ModelProto, threads=1)`` loads and checks a model (``onnx.checker``,
external data), refuses at load every op it does not run (one error naming the op and the
node: nothing is half-run), and returns an :class:`OnnxModel` with ``run(output_names,
feeds)`` like ``onnxruntime.InferenceSession.run``, ``get_inputs()`` / ``get_outputs()`` and
a plain call.

Each RNN/GRU/LSTM node becomes one native model (seqfuse._C.Model) with the node's full
ONNX semantics (csrc/core/cell.hpp: directions, layout 0 and 1, GRU linear_before_reset,
LSTM peepholes and input_forget, clip, activations with alpha/beta, sequence_lens, initial
states, Y / Y_h / Y_c): the gate rows are reordered to the engine's PyTorch order here (LSTM
ONNX i,o,f,c -> i,f,g,o; GRU z,r,h -> r,z,n; peepholes i,o,f -> i,f,o). The glue torch.onnx
and tf2onnx put around those nodes (layout ops, shape arithmetic, Gather as an Embedding,
MatMul/Gemm/Add heads with their activations, ...) runs in NumPy; nodes whose inputs are all
constant are folded once, at load. ``engine_of`` turns a graph whose recurrent nodes form one
stack, with at most an Embedding before it and a Linear head after it, into a single engine
model, and ``fit_engine`` verifies it against the graph on a probe batch (``seqfuse convert``
writes it as a native weight file; ``from_onnx`` runs such a graph as that one model, the
glue after it (layout ops, the head's activations) in NumPy on its values, and node by node
otherwise or when a call feeds more). An empty
sequence or batch is refused, naming the node: ONNX leaves it undefined.

Where ONNX leaves a choice, this module follows ONNX Runtime: ``activation_alpha`` and
``activation_beta`` are consumed in order by the activations that take them (checked against
ONNX Runtime for RNN, GRU and LSTM), except that a value left out takes the ONNX operator's
default (LeakyRelu 0.01, ThresholdedRelu 1, ScaledTanh 1/1, HardSigmoid 0.2/0.5, Elu 1,
Affine 1/0) where ONNX Runtime takes 0 for some.

Imports only onnx, NumPy and the native core (no torch). Checked by tests/test_onnx_import.py:
the onnx package's conformance cases, a randomized grid against ONNX Runtime, a hand-built
Keras-style GRU, seqfuse's own exports and torch.onnx exports against from_module, and bad
files.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from seqfuse import _C
from seqfuse.errors import SeqfuseError
from seqfuse.native.contract import (
    MAX_THREADS,
    ONNX_KEYS,
    InvalidArgumentError,
    NativeTypeError,
    WeightFileError,
    int_in,
)

RECURRENT = {"RNN": "rnn", "GRU": "gru", "LSTM": "lstm"}
_GATES = {"rnn": 1, "gru": 3, "lstm": 4}
_SLOTS = {"rnn": 1, "gru": 2, "lstm": 3}
# ONNX gate blocks in the engine's (PyTorch's) order.
_ORDER = {"rnn": [0], "gru": [1, 0, 2], "lstm": [0, 2, 3, 1]}
_PEEP_ORDER = [0, 2, 1]  # ONNX P is i, o, f; the engine's is i, f, o
_DEFAULT_ACTS = {"rnn": ["Tanh"], "gru": ["Sigmoid", "Tanh"], "lstm": ["Sigmoid", "Tanh", "Tanh"]}
# name (lower case) -> (ONNX's spelling, takes alpha, takes beta, default alpha, default beta)
_ACTS = {
    "sigmoid": ("Sigmoid", False, False, 0.0, 0.0),
    "tanh": ("Tanh", False, False, 0.0, 0.0),
    "relu": ("Relu", False, False, 0.0, 0.0),
    "affine": ("Affine", True, True, 1.0, 0.0),
    "leakyrelu": ("LeakyRelu", True, False, 0.01, 0.0),
    "thresholdedrelu": ("ThresholdedRelu", True, False, 1.0, 0.0),
    "scaledtanh": ("ScaledTanh", True, True, 1.0, 1.0),
    "hardsigmoid": ("HardSigmoid", True, True, 0.2, 0.5),
    "elu": ("Elu", True, False, 1.0, 0.0),
    "softsign": ("Softsign", False, False, 0.0, 0.0),
    "softplus": ("Softplus", False, False, 0.0, 0.0),
}
_RNN_ATTRS = {
    "activation_alpha", "activation_beta", "activations", "clip", "direction", "hidden_size",
    "layout", "linear_before_reset", "input_forget",
}  # fmt: skip


@dataclass(frozen=True)
class NodeArg:
    """A graph input or output, as onnxruntime's NodeArg: name, shape (ints, or the names of
    symbolic dimensions, or None), type ("tensor(float)")."""

    name: str
    shape: list[Any]
    type: str


def _node_name(node: onnx.NodeProto) -> str:
    return node.name or next((o for o in node.output if o), node.op_type)


def _where(node: onnx.NodeProto) -> str:
    return f"node '{_node_name(node)}' ({node.op_type})"


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


# ---- loading --------------------------------------------------------------------------------
def _load_proto(src: Any) -> tuple[onnx.ModelProto, str]:
    """(the model with its external data, a name for messages)."""
    if isinstance(src, onnx.ModelProto):
        return src, "the ONNX model"
    if not isinstance(src, (str, os.PathLike)):
        raise NativeTypeError(
            f"from_onnx expects a path or an onnx.ModelProto, got {type(src).__name__}"
        )
    path = Path(src)
    if path.is_dir():
        raise WeightFileError(f"{path} is a directory, not an ONNX file")
    if not path.is_file():
        raise WeightFileError(f"ONNX file not found: {path}")
    try:
        m = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and friends
        raise WeightFileError(
            f"{path}: not a readable ONNX file (truncated or not ONNX): {_one_line(e)}"
        ) from None
    for t in onnx.external_data_helper._get_all_tensors(m):
        if not onnx.external_data_helper.uses_external_data(t):
            continue
        info = {e.key: e.value for e in t.external_data}
        where = path.parent / info.get("location", "")
        if not where.is_file():
            raise WeightFileError(
                f"{path}: tensor '{t.name}' keeps its data in '{info.get('location')}', "
                f"which is missing (looked in {path.parent})"
            )
    try:
        onnx.external_data_helper.load_external_data_for_model(m, str(path.parent))
    except Exception as e:
        raise WeightFileError(f"{path}: cannot read its external data: {_one_line(e)}") from None
    return m, str(path)


def _check(m: onnx.ModelProto, name: str) -> None:
    try:
        onnx.checker.check_model(m)
    except (onnx.checker.ValidationError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InvalidArgumentError(f"{name}: not a valid ONNX model: {first}") from None


def _np_type(elem: int) -> Any:
    return helper.tensor_dtype_to_np_dtype(elem)


def _arg(v: onnx.ValueInfoProto) -> NodeArg:
    t = v.type.tensor_type
    shape: list[Any] = []
    if t.HasField("shape"):
        for d in t.shape.dim:
            shape.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or None))
    ty = helper.tensor_dtype_to_string(t.elem_type).replace("TensorProto.", "").lower()
    ty = {"float": "float", "int64": "int64", "int32": "int32"}.get(ty, ty)
    return NodeArg(v.name, shape, f"tensor({ty})")


# ---- activations ------------------------------------------------------------------------------
def _activations(node: onnx.NodeProto, cell: str, dirs: int, attrs: dict[str, Any]) -> list:
    """The node's activations, each (ONNX name, alpha, beta), dirs * slots entries."""
    slots = _SLOTS[cell]
    names = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
    if not names:
        names = _DEFAULT_ACTS[cell] * dirs
    if cell == "rnn" and dirs == 1 and len(names) == 2:
        names = names[:1]  # ONNX's RNN default is listed as ["Tanh", "Tanh"]; ORT takes one
    if len(names) != slots * dirs:
        raise InvalidArgumentError(
            f"{_where(node)}: activations needs {slots * dirs} entries "
            f"({dirs} direction(s) x {slots}), got {len(names)}"
        )
    alphas = list(attrs.get("activation_alpha", []))
    betas = list(attrs.get("activation_beta", []))
    out = []
    for name in names:
        spec = _ACTS.get(str(name).lower())
        if spec is None:
            raise InvalidArgumentError(
                f"{_where(node)}: unknown activation {name!r} (expected one of "
                f"{', '.join(s[0] for s in _ACTS.values())})"
            )
        onnx_name, takes_a, takes_b, da, db = spec
        # Consumed in order by the activations that take them (as ONNX Runtime reads them).
        a = alphas.pop(0) if takes_a and alphas else da
        b = betas.pop(0) if takes_b and betas else db
        out.append((onnx_name, float(np.float32(a)), float(np.float32(b))))
    return out


# ---- one recurrent node -------------------------------------------------------------------------
class Recurrent:
    """One ONNX RNN/GRU/LSTM node and its native model (built at load when W, R, B and P are
    constant, else per call from the fed values, cached by their bytes)."""

    def __init__(self, node: onnx.NodeProto, consts: dict[str, np.ndarray], isa: str) -> None:
        self.node = node
        self.where = _where(node)
        self.cell = RECURRENT[node.op_type]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        for k in attrs:
            if (
                k not in _RNN_ATTRS
                or (k == "linear_before_reset" and self.cell != "gru")
                or (k == "input_forget" and self.cell != "lstm")
            ):
                raise InvalidArgumentError(f"{self.where}: unsupported attribute '{k}'")
        direction = attrs.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else str(direction)
        if direction not in ("forward", "reverse", "bidirectional"):
            raise InvalidArgumentError(f"{self.where}: unknown direction {direction!r}")
        self.direction = direction
        self.dirs = 2 if direction == "bidirectional" else 1
        self.layout = int(attrs.get("layout", 0))
        if self.layout not in (0, 1):
            raise InvalidArgumentError(f"{self.where}: layout must be 0 or 1, got {self.layout}")
        self.clip = float(attrs["clip"]) if "clip" in attrs else 0.0
        if "clip" in attrs and not (np.isfinite(self.clip) and self.clip > 0):
            raise InvalidArgumentError(f"{self.where}: clip must be > 0, got {self.clip}")
        self.lbr = int(attrs.get("linear_before_reset", 0 if self.cell == "gru" else 1))
        self.input_forget = int(attrs.get("input_forget", 0))
        self.acts = _activations(node, self.cell, self.dirs, attrs)
        self.H = int(attrs["hidden_size"]) if "hidden_size" in attrs else None
        self.isa = isa
        ins = list(node.input) + [""] * 8
        self.X, self.W, self.R, self.B, self.lens, self.h0 = ins[:6]
        self.c0, self.P = (ins[6], ins[7]) if self.cell == "lstm" else ("", "")
        if len(node.input) > (8 if self.cell == "lstm" else 6):
            raise InvalidArgumentError(f"{self.where}: too many inputs ({len(node.input)})")
        outs = list(node.output) + ["", "", ""]
        self.Y, self.Y_h = outs[0], outs[1]
        self.Y_c = outs[2] if self.cell == "lstm" else ""
        self.weight_names = [n for n in (self.W, self.R, self.B, self.P) if n]
        self._cache: dict[bytes, Any] = {}
        self._dims: dict[int, tuple[int, int]] = {}  # native model address -> (H, D)
        self.core: Any = None
        if all(n in consts for n in self.weight_names):
            self.core = self._build({n: consts[n] for n in self.weight_names})

    # -- the engine model
    def engine(self, w: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(engine config, weights by file name) of this node, one layer."""
        W = self._f32(w[self.W], "W")
        R = self._f32(w[self.R], "R")
        if W.ndim != 3 or R.ndim != 3:
            raise InvalidArgumentError(
                f"{self.where}: W and R must be 3-D, got {list(W.shape)} and {list(R.shape)}"
            )
        G, dirs = _GATES[self.cell], self.dirs
        H = self.H if self.H is not None else R.shape[-1]
        D = W.shape[2]
        need = {"W": (dirs, G * H, D), "R": (dirs, G * H, H)}
        got = {"W": W, "R": R}
        if self.B:
            got["B"] = self._f32(w[self.B], "B")
            need["B"] = (dirs, 2 * G * H)
        if self.P:
            got["P"] = self._f32(w[self.P], "P")
            need["P"] = (dirs, 3 * H)
        for k, shape in need.items():
            if tuple(got[k].shape) != shape:
                raise InvalidArgumentError(
                    f"{self.where}: {k} has shape {list(got[k].shape)}, expected {list(shape)} "
                    f"(directions={dirs}, hidden_size={H}, input size={D})"
                )
        order = _ORDER[self.cell]

        def rows(a: np.ndarray) -> np.ndarray:  # ONNX gate blocks -> the engine's order
            return np.ascontiguousarray(
                np.concatenate([a[g * H : (g + 1) * H] for g in order], axis=0), np.float32
            )

        weights: dict[str, np.ndarray] = {}
        for d in range(dirs):
            sfx = "_l0" + ("_reverse" if d else "")
            weights["rnn.weight_ih" + sfx] = rows(W[d])
            weights["rnn.weight_hh" + sfx] = rows(R[d])
            b = got.get("B")
            bb = b[d] if b is not None else np.zeros(2 * G * H, np.float32)
            weights["rnn.bias_ih" + sfx] = rows(bb[: G * H])
            weights["rnn.bias_hh" + sfx] = rows(bb[G * H :])
            if self.P:
                p = got["P"][d]
                weights["rnn.weight_p" + sfx] = np.ascontiguousarray(
                    np.concatenate([p[k * H : (k + 1) * H] for k in _PEEP_ORDER]), np.float32
                )
        cfg = self.semantics()
        cfg.update(input_size=int(D), hidden_size=int(H))
        return cfg, weights

    def semantics(self) -> dict[str, Any]:
        """The engine config of this node, without the sizes (equal for stackable nodes)."""
        cell = self.cell
        acts = self.acts
        own = all(
            a[0] == _DEFAULT_ACTS[cell][k % _SLOTS[cell]] for k, a in enumerate(acts)
        )  # alpha and beta mean nothing to Sigmoid and Tanh
        engine_cell = {"rnn": "rnn_tanh", "gru": "gru", "lstm": "lstm"}[cell]
        if cell == "rnn" and all(a[0] == "Relu" for a in acts):
            engine_cell, own = "rnn_relu", True
        cfg: dict[str, Any] = {
            "cell": engine_cell,
            "vocab_size": 0,
            "embed_dim": 0,
            "num_layers": 1,
            "bidirectional": self.dirs == 2,
            "bias": True,
            "head": "none",
            "output_size": 0,
        }
        if self.direction == "reverse":
            cfg["reverse"] = True
        if cell == "gru" and not self.lbr:
            cfg["linear_before_reset"] = False
        if self.P:
            cfg["peepholes"] = True
        if self.input_forget:
            cfg["input_forget"] = True
        if self.clip > 0:
            cfg["clip"] = self.clip
        if not own:
            cfg["activations"] = [{"fn": n, "alpha": a, "beta": b} for n, a, b in acts]
        return cfg

    def _f32(self, a: np.ndarray, what: str) -> np.ndarray:
        if a.dtype != np.float32:
            raise NativeTypeError(
                f"{self.where}: {what} is {a.dtype}; the native engine runs float32"
            )
        return a

    def _build(self, w: dict[str, np.ndarray]) -> Any:
        cfg, weights = self.engine(w)
        try:
            return _C.Model(json.dumps(cfg), weights, self.isa)
        except InvalidArgumentError as e:
            raise InvalidArgumentError(f"{self.where}: {e}") from None

    def core_for(self, env: dict[str, np.ndarray]) -> Any:
        if self.core is not None:
            return self.core
        w = {n: env[n] for n in self.weight_names}
        key = hashlib.sha1(
            b"".join(np.ascontiguousarray(w[n]).tobytes() + str(w[n].shape).encode() for n in w)
        ).digest()
        if key not in self._cache:
            if len(self._cache) > 8:
                self._cache.clear()
                self._dims.clear()
            self._cache[key] = self._build(w)
        return self._cache[key]

    # -- a call
    def run(self, env: dict[str, np.ndarray], threads: int) -> None:
        core = self.core_for(env)
        dims = self._dims.get(core.address)
        if dims is None:  # read once per native model, not per call
            cfg = json.loads(core.config_json)
            dims = self._dims[core.address] = (cfg["hidden_size"], cfg["input_size"])
        H, D, dirs = dims[0], dims[1], self.dirs
        x = self._f32(env[self.X], "X")
        if x.ndim != 3 or x.shape[2] != D:
            want = "[T, B, D]" if self.layout == 0 else "[B, T, D]"
            raise InvalidArgumentError(
                f"{self.where}: X must have shape {want} with D={D}, got {list(x.shape)}"
            )
        bf = self.layout == 1
        B, T = (x.shape[0], x.shape[1]) if bf else (x.shape[1], x.shape[0])
        if B == 0 or T == 0:
            # ONNX leaves an empty sequence undefined: ONNX Runtime aborts on a GRU and returns
            # zero states for LSTM and RNN even with initial_h; the onnx reference raises.
            raise InvalidArgumentError(
                f"{self.where}: X has {'T' if T == 0 else 'B'} = 0 (shape {list(x.shape)}); "
                "seqfuse runs sequences of 1 or more steps and batches of 1 or more"
            )
        x = np.ascontiguousarray(x)
        lengths = None
        if self.lens:
            sl = env[self.lens]
            if sl.shape != (B,) or not np.issubdtype(sl.dtype, np.integer):
                raise InvalidArgumentError(
                    f"{self.where}: sequence_lens must be int32 of shape [{B}], got "
                    f"{sl.dtype} {list(sl.shape)}"
                )
            lengths = np.ascontiguousarray(sl, np.int64)

        def state(name: str, what: str) -> np.ndarray | None:
            if not name:
                return None
            s = self._f32(env[name], what)
            want = (B, dirs, H) if bf else (dirs, B, H)
            if tuple(s.shape) != want:
                raise InvalidArgumentError(
                    f"{self.where}: {what} must have shape {list(want)}, got {list(s.shape)}"
                )
            return np.ascontiguousarray(s.transpose(1, 0, 2) if bf else s)

        h0 = state(self.h0, "initial_h")
        c0 = state(self.c0, "initial_c")
        y = np.empty((B, T, dirs * H) if bf else (T, B, dirs * H), np.float32)
        want_state = bool(self.Y_h or self.Y_c)
        hn = np.empty((dirs, B, H), np.float32) if want_state else None
        cn = np.empty((dirs, B, H), np.float32) if want_state and self.cell == "lstm" else None
        try:
            _C.run(core.address, B, T, bf, x, None, lengths, h0, c0, y, hn, cn, threads, 0)
        except InvalidArgumentError as e:
            msg = str(e).replace("lengths", "sequence_lens")
            raise InvalidArgumentError(f"{self.where}: {msg}") from None
        if self.Y:
            env[self.Y] = (
                y.reshape(B, T, dirs, H)
                if bf
                else np.ascontiguousarray(y.reshape(T, B, dirs, H).transpose(0, 2, 1, 3))
            )
        for name, s in ((self.Y_h, hn), (self.Y_c, cn)):
            if name:
                env[name] = np.ascontiguousarray(s.transpose(1, 0, 2)) if bf else s


# ---- the glue ops (NumPy) -------------------------------------------------------------------------
def _ints(a: Any) -> list[int]:
    return [int(v) for v in np.asarray(a).reshape(-1)]


def _axes_of(args: list[Any], attrs: dict[str, Any], pos: int) -> list[int] | None:
    """Axes from an input (newer opsets) or the attribute (older)."""
    if len(args) > pos and args[pos] is not None:
        return _ints(args[pos])
    return list(attrs["axes"]) if "axes" in attrs else None


def _softmax(x: np.ndarray, axis: int, opset: int, log: bool) -> np.ndarray:
    if opset < 13:  # coerced to 2-D at axis
        shp = x.shape
        x2 = x.reshape(int(np.prod(shp[:axis], dtype=np.int64)), -1)
        return _softmax(x2, 1, 13, log).reshape(shp)
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    s = np.sum(e, axis=axis, keepdims=True)
    return (x - m - np.log(s)) if log else e / s


def _slice(x: np.ndarray, starts: list, ends: list, axes: list | None, steps: list | None):
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps if steps is not None else [1] * len(starts)
    idx = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        n = x.shape[a]
        # ONNX clamps huge values (INT64_MAX/MIN) into range; Python slices do the same
        idx[a] = slice(max(min(s, n), -n - 1), max(min(e, n), -n - 1), st)
    return x[tuple(idx)]


def _topk(x: np.ndarray, k: int, axis: int, largest: int) -> tuple[np.ndarray, np.ndarray]:
    key = -x if largest else x
    idx = np.argsort(key, axis=axis, kind="stable")
    idx = np.take(idx, np.arange(k), axis=axis)
    return np.take_along_axis(x, idx, axis=axis), idx.astype(np.int64)


def _scatter(data: np.ndarray, idx: np.ndarray, upd: np.ndarray, axis: int) -> np.ndarray:
    out = data.copy()
    idx = np.where(idx < 0, idx + data.shape[axis], idx)
    np.put_along_axis(out, idx, upd, axis=axis)
    return out


def _gemm(a, b, c, attrs):
    a = a.T if attrs.get("transA", 0) else a
    b = b.T if attrs.get("transB", 0) else b
    y = attrs.get("alpha", 1.0) * (a @ b)
    if c is not None:
        y = y + attrs.get("beta", 1.0) * c
    return y.astype(a.dtype, copy=False)


def _reshape(x: np.ndarray, shape: list[int], allowzero: int) -> np.ndarray:
    if not allowzero:
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return x.reshape(shape)


def _split(x, attrs, args, opset, nout):
    axis = attrs.get("axis", 0)
    sizes = _ints(args[1]) if len(args) > 1 and args[1] is not None else attrs.get("split")
    if sizes is None:
        n = x.shape[axis]
        k = -(-n // nout)
        sizes = [min(k, n - i * k) for i in range(nout)]
    cuts = np.cumsum(sizes)[:-1]
    return tuple(np.split(x, cuts, axis=axis))


def _const(attrs: dict[str, Any]) -> np.ndarray:
    if "value" in attrs:
        return numpy_helper.to_array(attrs["value"])
    for k, dt in (("value_float", np.float32), ("value_int", np.int64)):
        if k in attrs:
            return np.array(attrs[k], dt)
    for k, dt in (("value_floats", np.float32), ("value_ints", np.int64)):
        if k in attrs:
            return np.array(list(attrs[k]), dt)
    raise InvalidArgumentError(
        "Constant: only value, value_float(s) and value_int(s) are supported"
    )


def _reduce_prod(x, attrs, args):
    axes = _axes_of(args, attrs, 1)
    keep = bool(attrs.get("keepdims", 1))
    if not axes:
        if attrs.get("noop_with_empty_axes", 0):
            return x
        return np.prod(x, keepdims=keep).astype(x.dtype)
    return np.prod(x, axis=tuple(axes), keepdims=keep).astype(x.dtype)


def _clip(x, attrs, args, opset):
    lo = args[1] if len(args) > 1 and args[1] is not None else attrs.get("min")
    hi = args[2] if len(args) > 2 and args[2] is not None else attrs.get("max")
    if lo is not None:
        x = np.maximum(x, np.asarray(lo, x.dtype))
    if hi is not None:
        x = np.minimum(x, np.asarray(hi, x.dtype))
    return x


def _same(x: np.ndarray, like: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=like.dtype)


# op -> f(args, attrs, opset, n_outputs) -> output or tuple of outputs
_OPS: dict[str, Any] = {
    "Identity": lambda a, t, o, n: a[0],
    "Dropout": lambda a, t, o, n: (a[0], np.ones(a[0].shape, bool))[:n] if n > 1 else a[0],
    "Constant": lambda a, t, o, n: _const(t),
    "Shape": lambda a, t, o, n: np.array(a[0].shape, np.int64)[t.get("start", 0) : t.get("end")],
    "Size": lambda a, t, o, n: np.array(a[0].size, np.int64),
    "Cast": lambda a, t, o, n: a[0].astype(_np_type(t["to"])),
    "Transpose": lambda a, t, o, n: np.transpose(a[0], t.get("perm")),
    "Squeeze": lambda a, t, o, n: np.squeeze(
        a[0], axis=tuple(ax) if (ax := _axes_of(a, t, 1)) else None
    ),
    "Unsqueeze": lambda a, t, o, n: np.expand_dims(a[0], tuple(_axes_of(a, t, 1) or [])),
    "Reshape": lambda a, t, o, n: _reshape(a[0], _ints(a[1]), t.get("allowzero", 0)),
    "Flatten": lambda a, t, o, n: a[0].reshape(
        int(np.prod(a[0].shape[: t.get("axis", 1)], dtype=np.int64)), -1
    ),
    "Concat": lambda a, t, o, n: np.concatenate(a, axis=t["axis"]),
    "Split": lambda a, t, o, n: _split(a[0], t, a, o, n),
    "Slice": lambda a, t, o, n: (
        _slice(a[0], _ints(a[1]), _ints(a[2]),
               _ints(a[3]) if len(a) > 3 and a[3] is not None else None,
               _ints(a[4]) if len(a) > 4 and a[4] is not None else None)
        if o >= 10 else _slice(a[0], list(t["starts"]), list(t["ends"]), t.get("axes"), None)
    ),  # fmt: skip
    "Gather": lambda a, t, o, n: np.take(a[0], a[1], axis=t.get("axis", 0)),
    "Expand": lambda a, t, o, n: np.broadcast_to(
        a[0], np.broadcast_shapes(a[0].shape, tuple(_ints(a[1])))
    ).copy(),
    "ConstantOfShape": lambda a, t, o, n: np.full(
        _ints(a[0]),
        numpy_helper.to_array(t["value"]).reshape(-1)[0] if "value" in t else np.float32(0),
    ),
    "Range": lambda a, t, o, n: np.arange(a[0], a[1], a[2]).astype(a[0].dtype),
    "Add": lambda a, t, o, n: _same(a[0] + a[1], a[0]),
    "Sub": lambda a, t, o, n: _same(a[0] - a[1], a[0]),
    "Mul": lambda a, t, o, n: _same(a[0] * a[1], a[0]),
    "Div": lambda a, t, o, n: _same(
        a[0] // a[1] if np.issubdtype(a[0].dtype, np.integer) else a[0] / a[1], a[0]
    ),
    "Neg": lambda a, t, o, n: -a[0],
    "MatMul": lambda a, t, o, n: np.matmul(a[0], a[1]),
    "Gemm": lambda a, t, o, n: _gemm(a[0], a[1], a[2] if len(a) > 2 else None, t),
    "Relu": lambda a, t, o, n: np.where(a[0] < 0, np.zeros_like(a[0]), a[0]),
    "Sigmoid": lambda a, t, o, n: (1 / (1 + np.exp(-a[0].astype(np.float64)))).astype(a[0].dtype),
    "Tanh": lambda a, t, o, n: np.tanh(a[0]),
    "Softmax": lambda a, t, o, n: _softmax(a[0], t.get("axis", -1 if o >= 13 else 1), o, False),
    "LogSoftmax": lambda a, t, o, n: _softmax(a[0], t.get("axis", -1 if o >= 13 else 1), o, True),
    "Clip": lambda a, t, o, n: _clip(a[0], t, a, o),
    "Less": lambda a, t, o, n: a[0] < a[1],
    "Greater": lambda a, t, o, n: a[0] > a[1],
    "Equal": lambda a, t, o, n: a[0] == a[1],
    "Not": lambda a, t, o, n: ~a[0],
    "Where": lambda a, t, o, n: np.where(a[0], a[1], a[2]),
    "TopK": lambda a, t, o, n: _topk(a[0], int(_ints(a[1])[0]), t.get("axis", -1), t.get("largest", 1)),
    "ReduceProd": lambda a, t, o, n: _reduce_prod(a[0], t, a),
    "ScatterElements": lambda a, t, o, n: _scatter(a[0], a[1], a[2], t.get("axis", 0)),
}  # fmt: skip
GLUE_OPS = sorted(_OPS)


class _Glue:
    def __init__(self, node: onnx.NodeProto, opset: int) -> None:
        self.node = node
        self.where = _where(node)
        self.fn = _OPS[node.op_type]
        self.attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "ScatterElements" and self.attrs.get("reduction", b"none") not in (
            b"none",
            "none",
        ):
            raise InvalidArgumentError(f"{self.where}: only reduction='none' is supported")
        self.opset = opset
        self.inputs = list(node.input)
        self.n_out = len(node.output)

    def run(self, env: dict[str, np.ndarray]) -> None:
        # (the caller ignores NumPy's floating-point errors: NaN and Inf propagate, as in
        # ONNX Runtime)
        args = [env[i] if i else None for i in self.inputs]
        try:
            out = self.fn(args, self.attrs, self.opset, self.n_out)
        except (ValueError, IndexError, TypeError, KeyError) as e:
            raise InvalidArgumentError(f"{self.where} failed: {_one_line(e)}") from None
        outs = out if isinstance(out, tuple) else (out,)
        for name, v in zip(self.node.output, outs):
            if name:
                env[name] = np.asarray(v)


# ---- the model ----------------------------------------------------------------------------------
class OnnxModel:
    """An ONNX graph of RNN/GRU/LSTM nodes and their glue, run natively. ``run`` mirrors
    ``onnxruntime.InferenceSession.run``; calling the model with the inputs (positionally in
    ``get_inputs()`` order, or by name) returns the outputs (one array when there is one)."""

    def __init__(self, m: onnx.ModelProto, name: str, threads: int = 1, isa: str = "auto") -> None:
        self.name = name
        self.threads = int_in(threads, "threads", 1, MAX_THREADS)
        g = m.graph
        opset = max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=0)
        self.opset = opset
        if g.sparse_initializer:
            raise InvalidArgumentError(f"{name}: sparse initializers are not supported")
        inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        listed = {v.name for v in g.input}
        # An initializer that is also a graph input is that input's default (a caller may feed
        # it: optional states and lengths); the others are constants, folded at load.
        self.consts: dict[str, np.ndarray] = {k: v for k, v in inits.items() if k not in listed}
        self.defaults = {k: v for k, v in inits.items() if k in listed}
        self._inputs = [_arg(v) for v in g.input if v.name not in inits]
        self._optional = [_arg(v) for v in g.input if v.name in inits]
        self._input_types = {v.name: v.type.tensor_type.elem_type for v in g.input}
        self._outputs = [_arg(v) for v in g.output]
        # Refuse, before anything runs, every op this module does not run.
        for node in g.node:
            if node.domain not in ("", "ai.onnx") or (
                node.op_type not in _OPS and node.op_type not in RECURRENT
            ):
                dom = f" (domain {node.domain})" if node.domain not in ("", "ai.onnx") else ""
                raise InvalidArgumentError(
                    f"{name}: unsupported op {node.op_type}{dom} in {_where(node)}; seqfuse "
                    "runs RNN, GRU and LSTM nodes and the glue around them: " + ", ".join(GLUE_OPS)
                )
            if node.op_type in RECURRENT and opset < 7:
                raise InvalidArgumentError(
                    f"{name}: {_where(node)} is from opset {opset}; seqfuse reads opset 7 and later"
                )
        # Fold what is constant once; the rest runs per call.
        self.steps: list[Any] = []
        self.recurrent: list[Recurrent] = []
        for node in g.node:
            if node.op_type in RECURRENT:
                r = Recurrent(node, self.consts, isa)
                self.steps.append(r)
                self.recurrent.append(r)
                continue
            step = _Glue(node, opset)
            if all((not i) or i in self.consts for i in node.input) and node.op_type != "Dropout":
                with np.errstate(all="ignore"):
                    step.run(self.consts)
            else:
                self.steps.append(step)
        for o in self._outputs:
            produced = any(o.name in s.node.output for s in self.steps)
            if not produced and o.name not in inits and o.name not in self._input_types:
                raise InvalidArgumentError(f"{name}: graph output '{o.name}' is never computed")
        self._whole: Any = None
        self._fit_whole(isa)

    def _fit_whole(self, isa: str) -> None:
        """Run the graph as one native model when it is what a native file holds ([an
        Embedding ->] one stack [-> one Linear head]: fit_engine), fed by its only input,
        verified on a probe batch at load. The graph's outputs are then computed from that
        model's values (the head's, or the top node's Y, and every node's Y_h / Y_c) by the
        glue after them (activations after the head, layout ops), in NumPy. Else, and for calls
        that feed more (an overridable initializer) or that the native model refuses, the graph
        runs node by node."""
        if not self.recurrent or len(self._inputs) != 1:
            return
        try:
            cfg, _, _, about, core, worst = fit_engine(self, isa, tail=True)
        except (SeqfuseError, ValueError, KeyError, IndexError):  # the node path still runs it
            return
        head = about["head"]
        if (head is not None and not about.get("value_is_y")) or not worst <= 1e-5:
            return
        rs = self.recurrent
        seeds = {head["value"]: ("head",)} if head is not None else {}
        if head is None and rs[-1].Y:
            seeds[rs[-1].Y] = ("Y",)
        for k, r in enumerate(rs):
            for name, what in ((r.Y_h, "h"), (r.Y_c, "c")):
                if name:
                    seeds[name] = (what, k)
        # The glue the outputs need beyond those values: no recurrent node, and in graph order.
        producers = {o: st for st in self.steps for o in st.node.output}
        needed: set[int] = set()
        used: set[str] = set()
        todo = [o.name for o in self._outputs]
        while todo:
            v = todo.pop()
            if v in seeds:
                used.add(v)
                continue
            st = producers.get(v)
            if st is None or id(st) in needed:
                continue
            if isinstance(st, Recurrent):
                return  # an output needs a lower layer's Y: the node path
            needed.add(id(st))
            todo.extend(i for i in st.node.input if i)
        after = [st for st in self.steps if id(st) in needed]
        self._whole = {
            "core": core, "input": about["input"], "tokens": about["tokens"], "cfg": cfg,
            "bf": (about["layout"] == 1) != about["transposed_input"],  # the input is [B, T, ...]
            "layout": about["layout"], "time_major": about.get("y_time_major", False),
            "seeds": {k: v for k, v in seeds.items() if k in used}, "after": after,
            "dirs": rs[0].dirs,
        }  # fmt: skip

    @property
    def whole_graph(self) -> str | None:
        """The kernel set of the one native model that runs the whole graph (see _fit_whole),
        or None when the graph runs node by node."""
        if self._whole is None:
            return None
        core = self._whole["core"]
        why = core.kernel_set_reason
        return f"{core.isa} ({why})" if why else core.isa

    def _run_whole(self, feeds: dict[str, Any], threads: int | None) -> dict | None:
        """The graph's values from the one native model and the glue after it, or None to
        take the node path."""
        w = self._whole
        cfg, name, bf, tokens = w["cfg"], w["input"], w["bf"], w["tokens"]
        if len(feeds) != 1 or name not in feeds:
            return None
        env = self._feeds(feeds)
        x = env[name]
        if x.ndim != (2 if tokens else 3) or (not tokens and x.shape[2] != cfg["input_size"]):
            return None
        B, T = (x.shape[0], x.shape[1]) if bf else (x.shape[1], x.shape[0])
        if B == 0 or T == 0:
            return None  # the node path says which node refuses it
        threads = self.threads if threads is None else int_in(threads, "threads", 1, MAX_THREADS)
        H, K, dirs = cfg["hidden_size"], cfg["output_size"], w["dirs"]
        head = cfg["head"]
        F = K if head != "none" else dirs * H
        per_step = head in ("none", "step")
        y = np.empty(((B, T, F) if bf else (T, B, F)) if per_step else (B, K), np.float32)
        states = {v[0] for v in w["seeds"].values()} & {"h", "c"}
        S = cfg["num_layers"] * dirs
        hn = np.empty((S, B, H), np.float32) if states else None
        cn = np.empty((S, B, H), np.float32) if states and cfg["cell"] == "lstm" else None
        if tokens:
            xf, ids = None, np.ascontiguousarray(x, np.int64)
        else:
            xf, ids = np.ascontiguousarray(x), None
        only_head = head != "none" and not states
        try:
            _C.run(w["core"].address, B, T, bf, xf, ids, None, None, None, y, hn, cn, threads,
                   only_head)  # fmt: skip
        except InvalidArgumentError:
            return None  # e.g. a token id out of range: the node path names the node
        node_bf = w["layout"] == 1  # the recurrent nodes' own layout
        for v, (what, *k) in w["seeds"].items():
            if what == "head":
                flip = head == "step" and w["time_major"] == bf
                env[v] = np.ascontiguousarray(y.transpose(1, 0, 2)) if flip else y
            elif what == "Y":  # ONNX's Y: [T, dirs, B, H] (layout 0) or [B, T, dirs, H]
                y3 = y if bf == node_bf else y.transpose(1, 0, 2)
                y4 = y3.reshape(y3.shape[0], y3.shape[1], dirs, H)
                env[v] = y4 if node_bf else np.ascontiguousarray(y4.transpose(0, 2, 1, 3))
            else:  # Y_h / Y_c of node k: [dirs, B, H] (layout 0) or [B, dirs, H]
                st = (hn if what == "h" else cn)[k[0] * dirs : (k[0] + 1) * dirs]
                env[v] = np.ascontiguousarray(st.transpose(1, 0, 2)) if node_bf else st
        with np.errstate(all="ignore"):
            for st in w["after"]:
                st.run(env)
        return env

    # -- info, as onnxruntime
    def get_inputs(self) -> list[NodeArg]:
        """The inputs a call must feed (as ONNX Runtime: not those with a default)."""
        return list(self._inputs)

    def get_overridable_initializers(self) -> list[NodeArg]:
        """The inputs with a default value (an initializer) that a call may feed."""
        return list(self._optional)

    def get_outputs(self) -> list[NodeArg]:
        return list(self._outputs)

    @property
    def kernel_sets(self) -> dict[str, str]:
        """Each recurrent node's kernel set, with the reason when "auto" took the reference
        (e.g. ``"reference (fused kernels lack: activations)"``); ``"per call"`` for a node whose
        weights are fed."""
        out = {}
        for r in self.recurrent:
            key = _node_name(r.node)
            if r.core is None:
                out[key] = "per call (weights are inputs)"
            else:
                why = r.core.kernel_set_reason
                out[key] = f"{r.core.isa} ({why})" if why else r.core.isa
        return out

    def __repr__(self) -> str:
        nodes = ", ".join(f"{k}: {v}" for k, v in self.kernel_sets.items())
        whole = f"the whole graph as one native model: {self.whole_graph}; " if self._whole else ""
        return f"OnnxModel({self.name}, {whole}recurrent nodes: {nodes})"

    # -- calls
    def _feeds(self, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        if not isinstance(feeds, dict):
            raise NativeTypeError(
                f"feeds must be a dict of name -> array, got {type(feeds).__name__}"
            )
        env = {**self.consts, **self.defaults}
        known = {i.name: i for i in self._inputs + self._optional}
        for k, v in feeds.items():
            if k not in known:
                raise InvalidArgumentError(
                    f"unknown input '{k}' (the model takes {', '.join(known) or 'no inputs'})"
                )
            a = np.asarray(v)
            want = _np_type(self._input_types[k]) if self._input_types[k] else a.dtype
            if a.dtype != want:
                raise NativeTypeError(f"input '{k}' must be {np.dtype(want)}, got {a.dtype}")
            shape = known[k].shape
            if known[k].shape and (
                len(shape) != a.ndim
                or any(isinstance(d, int) and d > 0 and d != s for d, s in zip(shape, a.shape))
            ):
                raise InvalidArgumentError(
                    f"input '{k}' must have shape {shape}, got {list(a.shape)}"
                )
            env[k] = a
        for i in self._inputs:
            if i.name not in env:
                raise InvalidArgumentError(f"input '{i.name}' is required")
        return env

    def run_all(self, feeds: dict[str, Any], threads: int | None = None) -> dict[str, np.ndarray]:
        """Every value the graph computes, by name (inputs, constants, intermediates)."""
        env = self._feeds(feeds)
        threads = self.threads if threads is None else int_in(threads, "threads", 1, MAX_THREADS)
        with np.errstate(all="ignore"):  # NaN and Inf propagate, as in ONNX Runtime
            for step in self.steps:
                if isinstance(step, Recurrent):
                    step.run(env, threads)
                else:
                    step.run(env)
        return env

    def run(
        self, output_names: list[str] | None, feeds: dict[str, Any], threads: int | None = None
    ) -> list[np.ndarray]:
        """As onnxruntime: the named outputs (all when None), in that order."""
        names = [o.name for o in self._outputs] if not output_names else list(output_names)
        valid = {o.name for o in self._outputs}
        for n in names:
            if n not in valid:
                raise InvalidArgumentError(
                    f"unknown output '{n}' (the model's outputs: {', '.join(sorted(valid))})"
                )
        if self._whole is not None and isinstance(feeds, dict):
            env = self._run_whole(feeds, threads)
            if env is not None:
                return [env[n] for n in names]
        env = self.run_all(feeds, threads)
        return [env[n] for n in names]

    def save(self, path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any], Any, float]:
        """Write the graph as a native weight file (what `seqfuse convert` writes; what
        seqfuse serve ships): the graph must be what one file holds (engine_of) and the file's
        model must match the graph within 1e-5 on a probe batch (fit_engine), else
        InvalidArgumentError says why. Returns (engine config, what the file computes, the
        native model, its max error against the graph)."""
        from seqfuse.native.files import write

        cfg, weights, module, about, core, worst = fit_engine(self)
        if not worst <= 1e-5:
            raise InvalidArgumentError(
                f"{self.name}: the native model differs from the ONNX graph by {worst:.3g} "
                "(> 1e-05): the graph does more around its recurrent nodes than a native file "
                "holds"
            )
        if module["kind"] == "seq":
            module = _seq_module(cfg)
        write(path, core.config_json, core.weights(), module)
        return cfg, about, core, worst

    def __call__(self, *args: Any, **feeds: Any) -> Any:
        if len(args) > len(self._inputs):
            raise InvalidArgumentError(
                f"the model takes {len(self._inputs)} inputs, got {len(args)} positionally"
            )
        feeds = {**{i.name: a for i, a in zip(self._inputs, args)}, **feeds}
        out = self.run(None, feeds)
        return out[0] if len(out) == 1 else out


def from_onnx(src: Any, threads: int = 1, isa: str = "auto") -> OnnxModel:
    """Load an ONNX model (a path or an onnx.ModelProto) to run on the native engine."""
    m, name = _load_proto(src)
    _check(m, name)
    return OnnxModel(m, name, threads=threads, isa=isa)


# ---- one engine model for a whole stack (seqfuse convert) -------------------------------------------
def engine_of(
    model: OnnxModel, tail: bool = False
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any], dict[str, Any]]:
    """(engine config, weights, module description, what the file computes) for a graph
    whose recurrent nodes form one stack: the same op and semantics in every node, constant
    weights, layer k+1 reading only layer k's Y, the first layer reading a graph input (at
    most transposed). The engine's outputs (y, h_n, c_n) are that stack's top Y and every
    node's Y_h / Y_c; the caller verifies them against the graph (see cli_convert)."""
    rs = model.recurrent
    if not rs:
        raise InvalidArgumentError(f"{model.name}: no RNN, GRU or LSTM node to convert")
    first = rs[0]
    for r in rs:
        if r.core is None:
            raise InvalidArgumentError(
                f"{model.name}: {r.where} takes its weights as graph inputs; a native file "
                "needs them constant (initializers)"
            )
        if r.node.op_type != first.node.op_type or r.semantics() != first.semantics():
            raise InvalidArgumentError(
                f"{model.name}: {r.where} differs from {first.where} (op, direction or "
                "attributes); one native file holds one uniform stack"
            )
        # Constant zero states are no states (torch's dynamo exporter writes them); other
        # constants would be part of the model, which a native file takes per call.
        fixed = [n for n in (r.lens, r.h0, r.c0) if n and n in model.consts]
        if any(n == r.lens or np.any(model.consts[n] != 0) for n in fixed):
            raise InvalidArgumentError(
                f"{model.name}: {r.where} has constant sequence_lens or nonzero initial "
                "states; a native file takes them per call"
            )
    producers: dict[str, Any] = {o: s for s in model.steps for o in s.node.output}
    # States and lengths built per call may depend on the input's shape (torch.onnx's zero
    # states from ConstantOfShape), never on its values: the probe in fit_engine then checks
    # the values they take.
    memo: dict[str, bool] = {}
    for r in rs:
        for n, what in ((r.lens, "sequence_lens"), (r.h0, "initial_h"), (r.c0, "initial_c")):
            if n and not _shape_only(model, producers, n, memo):
                raise InvalidArgumentError(
                    f"{model.name}: {r.where} computes its {what} from the graph's input "
                    "values; a native file takes states and lengths per call"
                )
    # The first layer's X: a graph input, at most transposed (batch-first models), or the
    # rows of a constant table it selects (Gather: an Embedding of token ids).
    x, transposes, table = first.X, 0, None
    while x in producers:
        s = producers[x]
        op = s.node.op_type
        if op == "Transpose" and list(s.attrs.get("perm", [])) in ([1, 0, 2], [1, 0]):
            transposes += 1
        elif op == "Gather" and table is None and _embedding_table(model, s) is not None:
            table = _embedding_table(model, s)
            x = s.node.input[1]
            continue
        elif op != "Identity":
            raise InvalidArgumentError(
                f"{model.name}: the first recurrent node reads {_where(s.node)}; a native file "
                "holds [an Embedding ->] the recurrent stack [-> a Linear head], fed the graph's "
                "input directly"
            )
        x = s.node.input[0]
    if x not in model._input_types:
        raise InvalidArgumentError(f"{model.name}: the first recurrent node does not read an input")
    head = _head_of(model, producers, rs[-1], tail)
    cfg: dict[str, Any] = {}
    weights: dict[str, np.ndarray] = {}
    for k, r in enumerate(rs):
        w = json.loads(r.core.config_json)
        if k and w["input_size"] != first.dirs * w["hidden_size"]:
            raise InvalidArgumentError(
                f"{model.name}: {r.where} reads {w['input_size']} features, not the "
                f"{first.dirs * w['hidden_size']} of the layer below"
            )
        if k == 0:
            cfg = {**r.semantics(), "input_size": w["input_size"], "hidden_size": w["hidden_size"]}
        elif w["hidden_size"] != cfg["hidden_size"]:
            raise InvalidArgumentError(f"{model.name}: {r.where} has another hidden_size")
        for name, a in r.core.weights().items():
            weights[name.replace("_l0", f"_l{k}")] = a
    cfg["num_layers"] = len(rs)
    if table is not None:
        if table.shape[1] != cfg["input_size"]:
            raise InvalidArgumentError(
                f"{model.name}: the Embedding's rows have {table.shape[1]} features, the first "
                f"recurrent node reads {cfg['input_size']}"
            )
        cfg["vocab_size"], cfg["embed_dim"] = int(table.shape[0]), int(table.shape[1])
        weights["embedding.weight"] = table
    if head is not None:
        feat = first.dirs * cfg["hidden_size"]
        if head["weight"].shape[1] != feat:
            raise InvalidArgumentError(
                f"{model.name}: the head {_where(head['node'])} reads "
                f"{head['weight'].shape[1]} features, not the stack's {feat}"
            )
        # "step" until convert sees the head's value: per step (step) or per sequence
        # (last_step); a head on Y_h reads the final hidden states (last_hidden).
        cfg["head"] = "last_hidden" if head["reads"] == "Y_h" else "step"
        cfg["output_size"] = int(head["weight"].shape[0])
        weights["head.weight"], weights["head.bias"] = head["weight"], head["bias"]
    plain = table is None and head is None
    module = (
        {"kind": "rnn", "module": first.node.op_type, "batch_first": True}
        if plain
        else {"kind": "seq", "batch_first": True}
    )
    about = {
        "input": x,
        "tokens": table is not None,
        "nodes": [_node_name(r.node) for r in rs],
        "y": rs[-1].Y,
        "h_n": [r.Y_h for r in rs],
        "c_n": [r.Y_c for r in rs],
        "layout": first.layout,
        "transposed_input": transposes % 2 == 1,
        "head": None if head is None else {"value": head["value"], "reads": head["reads"],
                                           "node": _node_name(head["node"])},
    }  # fmt: skip
    return cfg, weights, module, about


# The ops that only move values (what a native file's fixed layout absorbs).
_LAYOUT_OPS = {
    "Identity", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Transpose", "Slice", "Gather",
    "Concat",
}  # fmt: skip


def _shape_only(model: OnnxModel, producers: dict[str, Any], name: str, memo: dict) -> bool:
    """Whether a value depends on the graph's inputs through their shapes at most: a constant
    (or an input's default), a Shape or ConstantOfShape, or glue over such values."""
    if name in memo:
        return memo[name]
    memo[name] = False  # a cycle is not shape-only
    s = producers.get(name)
    if s is None:
        ok = name in model.consts or name in model.defaults
    elif isinstance(s, Recurrent):
        ok = False
    elif s.node.op_type in ("Shape", "Size", "ConstantOfShape"):
        ok = True  # (ConstantOfShape's values are its constant, whatever the shape)
    else:
        ok = all((not i) or _shape_only(model, producers, i, memo) for i in s.node.input)
    memo[name] = ok
    return ok


def _embedding_table(model: OnnxModel, s: Any) -> np.ndarray | None:
    """The constant [vocab, E] float32 table a Gather selects rows of, if it is an Embedding."""
    if s.attrs.get("axis", 0) != 0 or len(s.node.input) != 2:
        return None
    t = model.consts.get(s.node.input[0])
    if t is None or t.ndim != 2 or t.dtype != np.float32 or s.node.input[1] in model.consts:
        return None
    return np.ascontiguousarray(t)


def _back(producers: dict[str, Any], name: str) -> tuple[Any, str]:
    """(the first step behind ``name`` that is not a layout op, or None for an input or a
    constant; the value it produces on that path). Layout ops are followed by their data."""
    while name in producers:
        s = producers[name]
        if isinstance(s, Recurrent) or s.node.op_type not in _LAYOUT_OPS:
            return s, name
        name = s.node.input[0]
    return None, name


def _linear(model: OnnxModel, producers: dict[str, Any], s: Any) -> dict[str, Any] | None:
    """A Linear with constant weights at step ``s``: MatMul(x, W [F, n_out]) [+ b], or Gemm
    (transA 0, alpha and beta folded in). {"weight" [n_out, F], "bias" [n_out], "reads", "node"}."""
    c = model.consts
    op = s.node.op_type
    bias = None
    if op == "Add":
        a, b = s.node.input[:2]
        bias_name, mm_name = (b, a) if b in c else (a, b) if a in c else (None, None)
        mm = producers.get(mm_name) if mm_name else None
        if mm is None or isinstance(mm, Recurrent) or mm.node.op_type != "MatMul":
            return None
        bias, s, op = c[bias_name], mm, "MatMul"
    if op == "MatMul":
        x, w = s.node.input[:2]
        if w not in c or c[w].ndim != 2:
            return None
        weight = c[w].T
    elif op == "Gemm":
        x, w = s.node.input[:2]
        if w not in c or s.attrs.get("transA", 0) or c[w].ndim != 2:
            return None
        weight = c[w] if s.attrs.get("transB", 0) else c[w].T
        weight = weight * np.float32(s.attrs.get("alpha", 1.0))
        if len(s.node.input) > 2 and s.node.input[2]:
            if s.node.input[2] not in c:
                return None
            bias = c[s.node.input[2]] * np.float32(s.attrs.get("beta", 1.0))
    else:
        return None
    n_out = weight.shape[0]
    if weight.dtype != np.float32 or (
        bias is not None and (bias.dtype != np.float32 or bias.size not in (1, n_out))
    ):
        return None
    b = np.zeros(n_out, np.float32) if bias is None else np.broadcast_to(bias.reshape(-1), (n_out,))
    return {
        "weight": np.ascontiguousarray(weight, np.float32),
        "bias": np.ascontiguousarray(b, np.float32),
        "reads": x,
        "node": s.node,
    }


# What from_onnx's whole-graph path lets follow the head (run in NumPy on its value).
_TAIL_OPS = _LAYOUT_OPS | {"Relu", "Sigmoid", "Tanh", "Softmax", "LogSoftmax"}


def _head_of(
    model: OnnxModel, producers: dict[str, Any], top: Recurrent, tail: bool = False
) -> dict[str, Any] | None:
    """The one Linear head between the top recurrent node and the graph's outputs, or None.
    Every graph output must be a stack value (Y, Y_h, Y_c, moved by layout ops) or that head's
    value (moved by layout ops; with ``tail``, also by the activations of _TAIL_OPS); anything
    else is refused, naming the node."""
    head = None
    holds = (
        "a native file holds [an Embedding ->] one RNN/GRU/LSTM stack [-> one Linear head] "
        "(no activation after the head); seqfuse.native.from_onnx runs the whole graph"
    )
    for o in model.get_outputs():
        s, value = _back(producers, o.name)
        if s is None or isinstance(s, Recurrent):
            continue
        lin = _linear(model, producers, s)
        while lin is None and tail and s.node.op_type in _TAIL_OPS:
            s, value = _back(producers, s.node.input[0])
            if s is None or isinstance(s, Recurrent):
                break
            lin = _linear(model, producers, s)
        if lin is None:
            raise InvalidArgumentError(
                f"{model.name}: graph output '{o.name}' comes from {_where(s.node)}: {holds}"
            )
        r, read = _back(producers, lin["reads"])
        if r is not top or read not in (top.Y, top.Y_h):
            what = "an input or a constant" if r is None else (
                r.where if isinstance(r, Recurrent) else _where(r.node)
            )  # fmt: skip
            raise InvalidArgumentError(
                f"{model.name}: the head {_where(lin['node'])} reads {what}, not the top "
                f"recurrent node's Y or Y_h: {holds}"
            )
        lin["reads"] = "Y" if read == top.Y else "Y_h"
        lin["value"] = value
        if head is not None and head["node"] is not lin["node"]:
            raise InvalidArgumentError(
                f"{model.name}: two heads ({_where(head['node'])} and {_where(lin['node'])}): "
                + holds
            )
        head = lin
    return head


# ---- one engine model for the whole graph, verified (seqfuse convert; from_onnx's fast path) ----
def _probe(model, about: dict, cfg: dict) -> tuple[dict, np.ndarray, int, int]:
    """(the graph's feeds, the engine's batch-first x, B, T) for a random batch: 3 sequences of
    7 steps, unless the graph fixes those sizes (the input's declared shape, node layout)."""
    rng = np.random.default_rng(0)
    B, T = 3, 7
    for arg in model.get_inputs():
        if arg.name != about["input"]:
            raise InvalidArgumentError(
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
        dtype = _np_type(model._input_types[about["input"]])
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
            about["value_is_y"] = ref.shape in ((B, T, K), (T, B, K))
            errs = [err(y, c) for c in cands]
            about["y_time_major"] = ref.shape[:2] == (T, B) and (
                len(errs) == 1 or errs[1] < errs[0]
            )
            worst = max(worst, min(errs))
        else:
            about["value_is_y"] = ref.shape == (B, K)
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


def fit_engine(model: OnnxModel, isa: str = "auto", tail: bool = False) -> tuple[Any, ...]:
    """(engine config, weights, module description, about, the native model, its max error
    against the graph) for a graph engine_of maps onto one native model: the head's kind is
    read from its value on a probe batch, and the native model is run on that batch and
    compared with the graph's own values (the head's or the top Y, every node's Y_h / Y_c)."""
    cfg, weights, module, about = engine_of(model, tail)
    feeds, xb, B, T = _probe(model, about, cfg)
    env = model.run_all(feeds)
    cfg["head"] = _head_kind(env, about, cfg, B, T)
    try:
        core = _C.Model(json.dumps(cfg), weights, isa)
    except InvalidArgumentError as e:
        raise InvalidArgumentError(f"{model.name}: {e}") from None
    worst = _verify(env, core, xb, about, cfg, B, T)
    return cfg, weights, module, about, core, worst


def _seq_module(cfg: dict) -> dict:
    """The module description of a file with an Embedding or a head: a SeqModel's call (y and
    the state). With PyTorch's semantics it carries the SeqConfig, so that to_module rebuilds
    the nn.Module; with ONNX's there is none to rebuild."""
    info: dict = {"kind": "seq", "batch_first": True}
    if not set(cfg) & ONNX_KEYS:
        tokens = cfg["vocab_size"] > 0
        info["config"] = {
            "cell": cfg["cell"], "hidden_size": cfg["hidden_size"],
            "input_size": 1 if tokens else cfg["input_size"], "vocab_size": cfg["vocab_size"],
            "embed_dim": cfg["embed_dim"], "num_layers": cfg["num_layers"],
            "bidirectional": cfg["bidirectional"], "bias": True, "dropout": 0.0,
            "head": cfg["head"], "output_size": max(1, cfg["output_size"]), "kind": "seq",
        }  # fmt: skip
    return info
