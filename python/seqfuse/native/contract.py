"""The call contract of every native backend, written once: argument parsing, shape checks,
their messages, and the shapes of the outputs.

A backend supplies an *adapter* (how its device takes an array: dtype and device checks, a
contiguous copy where needed, a new output, the handle its C++ entry takes). Everything else
a call does (which shapes are valid, what the outputs are, what an error says) lives here, so
the CPU (seqfuse.native.cpu) and CUDA (seqfuse.native.cuda) backends agree by construction.
The C++ core checks the same facts again (check_call in csrc/core/model.cpp): this layer's
job is to allocate the right outputs and to word errors in the caller's terms.

Checked by tests/test_native_api.py (every message, CPU) and tests/test_native_cuda.py (the
same calls on a GPU).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from seqfuse import _C
from seqfuse.errors import SeqfuseError

#: Bad values and shapes (also a ValueError).
InvalidArgumentError = _C.InvalidArgumentError
#: A missing, truncated, tampered or foreign weight file.
WeightFileError = _C.WeightFileError
#: The most threads one call may use (the C++ core's seqfuse::kMaxThreads).
MAX_THREADS: int = _C.MAX_THREADS
#: The engine config keys of ONNX's semantics (docs/FORMAT.md, version 2): no nn.Module has
#: them (convert.py refuses to rebuild one; onnx.py checks what a graph uses).
ONNX_KEYS = frozenset(
    {"reverse", "linear_before_reset", "peepholes", "input_forget", "clip", "activations"}
)


class NativeTypeError(SeqfuseError, TypeError):
    """A wrong dtype, device or argument type."""


class Adapter(Protocol):
    """How one device takes arrays. Each method returns (the array to keep alive during the
    call, the handle the backend's C++ entry takes); ``null`` is the handle for "absent"."""

    null: Any

    def floats(self, a: Any, what: str) -> tuple[Any, Any]: ...
    def ids(self, a: Any, what: str) -> tuple[Any, Any]: ...
    def lengths(self, a: Any, batch: int, steps: int) -> tuple[Any, Any]: ...
    def empty(self, shape: tuple[int, ...], like: Any) -> tuple[Any, Any]: ...


def int_in(value: Any, name: str, lo: int, hi: int) -> int:
    """An integer argument checked against [lo, hi], reported as given (one line)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise NativeTypeError(f"{name} must be an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise InvalidArgumentError(f"{name} must be in [{lo}, {hi}], got {value}")
    return int(value)


def shape_str(s: Any) -> str:
    return "[" + ", ".join(str(int(d)) for d in s) + "]"


def split_hx(hx: Any, cell: str) -> tuple[Any, Any]:
    """(h0, c0) from torch's hx convention: (h0, c0) for an LSTM, h0 alone otherwise."""
    if cell == "lstm":
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise InvalidArgumentError("an LSTM takes hx=(h0, c0)")
        return hx[0], hx[1]
    if isinstance(hx, (tuple, list)):
        raise InvalidArgumentError(f"a {cell} model takes hx=h0, not a tuple")
    return hx, None


def bind_shape_facts(obj: Any, c: dict[str, Any], module: dict[str, Any]) -> None:
    """Bind the config facts a call reads as attributes, once (attribute reads are cheaper
    than dict lookups at batch 1). Every backend's model carries these."""
    obj._kind = module["kind"]
    obj._cell = c["cell"]
    obj._lstm = c["cell"] == "lstm"
    obj._tokens = c["vocab_size"] > 0
    obj._V = c["vocab_size"]
    obj._D = c["input_size"]
    obj._H = c["hidden_size"]
    obj._Hs = c.get("proj_size", 0) or obj._H  # h's width (LSTM proj_size), c stays H wide
    obj._L = c["num_layers"]
    obj._dirs = 2 if c["bidirectional"] else 1
    obj._S = obj._L * obj._dirs
    obj._head = c["head"]
    obj._O = c["output_size"]
    obj._F = obj._dirs * obj._Hs if obj._L > 0 else obj._D
    obj._batch_first = module.get("batch_first", True)


# ---- one call over a whole sequence ------------------------------------------------------
def linear_call(m: Any, ad: Adapter, x: Any, hx: Any, lengths: Any) -> tuple[int, Any, Any, Any]:
    """LinearRegression's call: (rows, x handle, y, y handle); x is ``[..., D]``."""
    if hx is not None or lengths is not None:
        raise InvalidArgumentError("LinearRegression takes only x")
    xa, xp = ad.floats(x, "x")
    shp = xa.shape
    if len(shp) < 1 or shp[-1] != m._D:
        raise InvalidArgumentError(f"x must have shape [..., {m._D}], got {shape_str(shp)}")
    n = 1
    for d in shp[:-1]:
        n *= int(d)
    y, yp = ad.empty((*shp[:-1], m._O), xa)
    return n, xp, y, yp


def seq_call(
    m: Any, ad: Adapter, x: Any, hx: Any, lengths: Any, need_state: bool
) -> tuple[tuple[Any, ...], Any, Any]:
    """A sequence call, checked: (the C++ entry's leading arguments ``(B, T, batch_first, x,
    ids, lengths, h0, c0, y, h_n, c_n)`` as handles, the result as the source module returns
    it, the inputs to keep alive until the call returns)."""
    bf = m._batch_first
    unbatched = False
    null = ad.null
    if m._tokens:
        xa, tp = ad.ids(x, "x (token ids)")
        xp = null
        shp = xa.shape
        if len(shp) != 2:
            raise InvalidArgumentError(f"x must be token ids of shape [B, T], got {shape_str(shp)}")
        B, T = shp if bf else (shp[1], shp[0])
    else:
        xa, xp = ad.floats(x, "x")
        tp = null
        shp = xa.shape
        nd = len(shp)
        if nd == 2 and m._kind == "rnn":  # unbatched input [T, D], as torch allows
            unbatched = True
            T, D = shp
            B = 1
        elif nd == 3:
            B, T, D = shp if bf else (shp[1], shp[0], shp[2])
        else:
            want = "[B, T, D]" if bf else "[T, B, D]"
            raise InvalidArgumentError(
                f"x must have shape {want} with D={m._D}, got {shape_str(shp)}"
            )
        if D != m._D:
            raise InvalidArgumentError(f"x has {D} features, the model takes input_size={m._D}")
    if B == 0 or T == 0:
        raise InvalidArgumentError(f"x has an empty dimension: {shape_str(shp)}")
    S, H, Hs = m._S, m._H, m._Hs
    h0p = c0p = null
    keep: Any = xa
    hshape = (S, Hs) if unbatched else (S, B, Hs)
    cshape = (S, H) if unbatched else (S, B, H)
    if hx is not None:
        h0, c0 = split_hx(hx, m._cell)
        h0a, h0p = ad.floats(h0, "h0")
        if tuple(h0a.shape) != hshape:
            raise InvalidArgumentError(
                f"h0 must have shape {shape_str(hshape)}, got {shape_str(h0a.shape)}"
            )
        keep = (keep, h0a)
        if c0 is not None:
            c0a, c0p = ad.floats(c0, "c0")
            if tuple(c0a.shape) != cshape:
                raise InvalidArgumentError(
                    f"c0 must have shape {shape_str(cshape)}, got {shape_str(c0a.shape)}"
                )
            keep = (keep, c0a)
    lp = null
    if lengths is not None:
        la, lp = ad.lengths(lengths, B, T)
        keep = (keep, la)
    head = m._head
    if head == "none":
        yshape = (T, m._F) if unbatched else ((B, T, m._F) if bf else (T, B, m._F))
    elif head == "step":
        yshape = (B, T, m._O)
    else:
        yshape = (B, m._O)
    y, yp = ad.empty(yshape, xa)
    if not need_state:
        return (B, T, bf, xp, tp, lp, h0p, c0p, yp, null, null), (y, None), keep
    hn, hnp = ad.empty(hshape, xa)
    if m._lstm:
        cn, cnp = ad.empty(cshape, xa)
        return (B, T, bf, xp, tp, lp, h0p, c0p, yp, hnp, cnp), (y, (hn, cn)), keep
    return (B, T, bf, xp, tp, lp, h0p, c0p, yp, hnp, null), (y, hn), keep


def lengths_shape(la: Any, batch: int) -> None:
    """lengths holds one entry per sequence (its values are the backend's to check)."""
    if tuple(la.shape) != (batch,):
        raise InvalidArgumentError(
            f"lengths must have shape [{batch}] (one per sequence), got {shape_str(la.shape)}"
        )


# ---- streaming -----------------------------------------------------------------------------
def streamable(m: Any) -> None:
    """A model that has a state to carry."""
    if m._kind == "linear":
        raise InvalidArgumentError("a LinearRegression model has no state to stream")


def stream_output_shape(m: Any, batch: int, k: int) -> tuple[int, ...]:
    """A k-step chunk's output: per step ``[B, k, F or O]``, else ``[B, O]``."""
    if m._head == "none":
        return (batch, k, m._F)
    if m._head == "step":
        return (batch, k, m._O)
    return (batch, m._O)


def stream_chunk(m: Any, ad: Adapter, batch: int, x: Any) -> tuple[Any, Any, Any, int]:
    """A chunk of k >= 1 steps, batch-first: (the input, x handle, ids handle, k)."""
    if m._tokens:
        xa, tp = ad.ids(x, "x (token ids)")
        xp = ad.null
        if xa.ndim != 2 or xa.shape[0] != batch:
            raise InvalidArgumentError(
                f"x must be token ids of shape [{batch}, k], got {shape_str(xa.shape)}"
            )
    else:
        xa, xp = ad.floats(x, "x")
        tp = ad.null
        if xa.ndim != 3 or xa.shape[0] != batch or xa.shape[2] != m._D:
            raise InvalidArgumentError(
                f"x must have shape [{batch}, k, {m._D}], got {shape_str(xa.shape)}"
            )
    k = int(xa.shape[1])
    if k == 0:
        raise InvalidArgumentError("x has no time steps")
    return xa, xp, tp, k


def state_parts(m: Any, value: Any) -> list[tuple[str, Any]]:
    """An assigned stream state by part: ``[("h", h)]``, or ``[("h", h), ("c", c)]`` for an
    LSTM. The backend makes each part an array and checks it with :func:`state_shape`."""
    if m._lstm:
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise InvalidArgumentError("an LSTM state is a pair (h, c)")
        return [("h", value[0]), ("c", value[1])]
    return [("h", value)]


def state_shape(name: str, got: Any, shape: tuple[int, ...]) -> None:
    """A stream state part has the session's shape: h [num_layers, B, Hs], c [num_layers, B, H]."""
    if tuple(got) != tuple(shape):
        raise InvalidArgumentError(
            f"state {name} must have shape {shape_str(shape)}, got {shape_str(got)}"
        )
