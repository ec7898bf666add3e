"""seqfuse.native: run recurrent models through seqfuse's fused C++ sequence loop.

``from_module(m)`` takes a raw ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` or any seqfuse model
(``SeqModel``, ``LinearRegression``) and returns a :class:`NativeModel`, a drop-in for
inference: the same positional arguments and the same return structure and shapes as
``m.forward``, plus ``lengths=`` (pack_padded_sequence semantics), ``threads=`` and
``need_state=False`` (compute only what the head reads; the state comes back as ``None``).

Inputs may be NumPy arrays or torch CPU tensors; outputs are of the same kind. Tensors and
arrays are passed to C++ by pointer after validation (zero copy); outputs are allocated here
and filled in place. A non-contiguous input is copied to a contiguous one first. Weights are
copied and packed once, at construction. The GIL is released during compute.

``save(path)`` / :func:`load` use a safetensors weight file with the config in its metadata
(docs/FORMAT.md). ``stream(batch)`` gives a :class:`StreamSession` that carries the state
between calls (real-time prediction, character-by-character generation).

Checked by tests/test_native.py (parity with eager PyTorch over a randomized grid, every
kernel set), tests/test_native_api.py (API, streaming, bad inputs) and
tests/test_native_format.py (weight files).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from seqfuse import _C, SeqfuseError

__all__ = [
    "FORMAT",
    "VERSION",
    "InvalidArgumentError",
    "NativeModel",
    "NativeTypeError",
    "StreamSession",
    "WeightFileError",
    "from_module",
    "load",
    "save",
]

FORMAT = "seqfuse-native"
VERSION = 1

#: Bad values and shapes (also a ValueError).
InvalidArgumentError = _C.InvalidArgumentError
#: A missing, truncated, tampered or foreign weight file.
WeightFileError = _C.WeightFileError


class NativeTypeError(SeqfuseError, TypeError):
    """A wrong dtype, device or argument type."""


_empty_torch = torch.empty
_f32 = torch.float32
_i64 = torch.int64
_Tensor = torch.Tensor
_ndarray = np.ndarray
_run = _C.run
_stream_step = _C.stream_step
#: The most threads one call may use (the C++ core's seqfuse::kMaxThreads).
MAX_THREADS: int = _C.MAX_THREADS


def _int_in(value: Any, name: str, lo: int, hi: int) -> int:
    """An integer argument checked against [lo, hi], reported as given (one line)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise NativeTypeError(f"{name} must be an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise InvalidArgumentError(f"{name} must be in [{lo}, {hi}], got {value}")
    return int(value)


# ---- conversion from modules -------------------------------------------------------------
def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())


def _rnn_config(rnn: nn.RNNBase) -> dict[str, Any]:
    from seqfuse.models.seq import cell_of

    if isinstance(rnn, nn.LSTM) and getattr(rnn, "proj_size", 0):
        raise InvalidArgumentError(
            f"nn.LSTM option proj_size={rnn.proj_size} is not supported by the native engine"
        )
    cell = cell_of(rnn)
    if cell is None and isinstance(rnn, nn.RNN):
        raise InvalidArgumentError(f"nn.RNN nonlinearity={rnn.nonlinearity!r} is not supported")
    if cell is None:
        raise InvalidArgumentError(f"unsupported recurrent module {type(rnn).__name__}")
    return {
        "cell": cell,
        "input_size": int(rnn.input_size),
        "hidden_size": int(rnn.hidden_size),
        "num_layers": int(rnn.num_layers),
        "bidirectional": bool(rnn.bidirectional),
        "bias": bool(rnn.bias),
    }


def _convert(m: nn.Module) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    """(engine config, weights by engine name, python-side module description)."""
    from seqfuse.models.seq import LinearRegression, SeqModel

    if isinstance(m, SeqModel):
        c = m.config
        cfg = {
            "cell": c.cell,
            "input_size": int(c.input_size) if c.vocab_size == 0 else 0,
            "vocab_size": int(c.vocab_size),
            "embed_dim": int(c.embed_dim),
            "hidden_size": int(c.hidden_size),
            "num_layers": int(c.num_layers),
            "bidirectional": bool(c.bidirectional),
            "bias": bool(c.bias),
            "head": c.head,
            "output_size": int(c.output_size) if c.head != "none" else 0,
        }
        weights = {k: _np(v) for k, v in m.state_dict().items()}
        return cfg, weights, {"kind": "seq", "config": c.to_dict()}
    if isinstance(m, LinearRegression):
        c = m.config
        cfg = {
            "cell": "rnn_tanh",
            "input_size": int(c.in_features),
            "vocab_size": 0,
            "embed_dim": 0,
            "hidden_size": 1,
            "num_layers": 0,
            "bidirectional": False,
            "bias": True,
            "head": "step",
            "output_size": int(c.out_features),
        }
        weights = {"head.weight": _np(m.linear.weight), "head.bias": _np(m.linear.bias)}
        return cfg, weights, {"kind": "linear", "config": c.to_dict()}
    if isinstance(m, (nn.RNN, nn.GRU, nn.LSTM)):
        cfg = {
            **_rnn_config(m),
            "vocab_size": 0,
            "embed_dim": 0,
            "head": "none",
            "output_size": 0,
        }
        weights = {"rnn." + k: _np(v) for k, v in m.state_dict().items()}
        info = {"kind": "rnn", "module": type(m).__name__, "batch_first": bool(m.batch_first)}
        return cfg, weights, info
    raise InvalidArgumentError(
        f"from_module: unsupported module {type(m).__name__}; expected nn.RNN, nn.GRU, nn.LSTM, "
        "SeqModel or LinearRegression"
    )


# ---- argument helpers -------------------------------------------------------------------
def _kind_of(a: Any, what: str) -> bool:
    """True for a torch tensor, False for a NumPy array; rejects anything else."""
    if isinstance(a, _Tensor):
        if a.device.type != "cpu":
            raise NativeTypeError(
                f"{what} is on {a.device}: the native engine of this build runs on CPU tensors "
                "only; move it with .cpu()"
            )
        return True
    if isinstance(a, _ndarray):
        return False
    raise NativeTypeError(f"{what} must be a torch tensor or a NumPy array, got {type(a).__name__}")


def _float_arg(a: Any, what: str) -> tuple[Any, Any]:
    """(contiguous float32 array/tensor, what the C++ entry takes: an address or the array)."""
    if isinstance(a, _Tensor):
        if a.dtype is not _f32:
            _kind_of(a, what)
            raise NativeTypeError(f"{what} must be float32, got {a.dtype}")
        if not a.is_cpu:
            _kind_of(a, what)
        if a.requires_grad:
            a = a.detach()
        if not a.is_contiguous():
            a = a.contiguous()
        return a, a.data_ptr()
    if isinstance(a, _ndarray):
        if a.dtype != np.float32:
            raise NativeTypeError(f"{what} must be float32, got {a.dtype}")
        if not a.flags.c_contiguous:
            a = np.ascontiguousarray(a)
        return a, a
    _kind_of(a, what)
    raise AssertionError  # unreachable


def _empty(shape: tuple[int, ...], like_torch: bool) -> tuple[Any, Any]:
    """A new float32 output and its C++ handle."""
    if like_torch:
        y = _empty_torch(*shape)  # positional sizes: the fastest torch.empty call
        if y.dtype is not _f32:  # a changed default dtype
            y = y.to(_f32)
        return y, y.data_ptr()
    y = np.empty(shape, np.float32)
    return y, y


def _int_arg(a: Any, what: str) -> tuple[Any, Any]:
    """Integer ids or lengths as contiguous int64 (other integer dtypes are converted)."""
    if isinstance(a, _Tensor):
        if a.dtype is not _i64:
            if a.dtype.is_floating_point or a.dtype.is_complex or a.dtype == torch.bool:
                raise NativeTypeError(f"{what} must be an integer tensor (int64), got {a.dtype}")
            a = a.to(_i64)
        if not a.is_cpu:
            a = a.cpu()  # lengths live on CPU in torch too (pack_padded_sequence)
        if not a.is_contiguous():
            a = a.contiguous()
        return a, a.data_ptr()
    if isinstance(a, _ndarray):
        if a.dtype != np.int64:
            if not np.issubdtype(a.dtype, np.integer):
                raise NativeTypeError(f"{what} must be integers (int64), got {a.dtype}")
            a = a.astype(np.int64)
        if not a.flags.c_contiguous:
            a = np.ascontiguousarray(a)
        return a, a
    if isinstance(a, (list, tuple)):
        a = np.asarray(a, dtype=np.int64)
        return a, a
    raise NativeTypeError(f"{what} must be a tensor or array of int64, got {type(a).__name__}")


def _shape_str(s: Any) -> str:
    return "[" + ", ".join(str(int(d)) for d in s) + "]"


# ---- the model --------------------------------------------------------------------------
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
    """Bind the config facts a wrapper reads on every call as attributes, once (attribute
    reads are cheaper than dict lookups at batch 1). Shared by NativeModel and
    seqfuse.native_cuda.CudaNativeModel."""
    obj._kind = module["kind"]
    obj._cell = c["cell"]
    obj._lstm = c["cell"] == "lstm"
    obj._tokens = c["vocab_size"] > 0
    obj._V = c["vocab_size"]
    obj._D = c["input_size"]
    obj._H = c["hidden_size"]
    obj._L = c["num_layers"]
    obj._dirs = 2 if c["bidirectional"] else 1
    obj._S = obj._L * obj._dirs
    obj._head = c["head"]
    obj._O = c["output_size"]
    obj._F = obj._dirs * obj._H if obj._L > 0 else obj._D
    obj._batch_first = module.get("batch_first", True)


class NativeModel:
    """A model running on the native engine; call it like the module it came from."""

    def __init__(
        self, core: Any, module: dict[str, Any], threads: int = 1, device: str = "cpu"
    ) -> None:
        if device != "cpu":
            # Backend seam: a CUDA backend plugs in here (same weights, same call contract).
            raise NativeTypeError(f"device {device!r} is not available in this build (cpu only)")
        self._core = core
        self.module_info = module
        self.config: dict[str, Any] = json.loads(core.config_json)
        c = self.config
        self.threads = _int_in(threads, "threads", 1, MAX_THREADS)
        self.device = device
        bind_shape_facts(self, c, module)
        self._addr = self._core.address
        # The fast path of forward(): batch-first float-feature sequence models.
        fast = self._kind in ("seq", "rnn") and self._batch_first and not self._tokens
        self._fast_fn = self._build_fast() if fast else None

    def _build_fast(self) -> Any:
        """forward() for a contiguous float32 CPU tensor, with the model's constants bound as
        locals (attribute lookups are a visible share of a 3 us call). None: not applicable."""
        addr, D, S, H, nout = self._addr, self._D, self._S, self._H, self._O
        lstm = self._lstm
        per_step = self._head in ("step", "none")
        ylast = nout if self._head == "step" else self._F
        run, empty, f32 = _run, _empty_torch, _f32

        def fast(x: torch.Tensor, threads: int, need_state: bool) -> Any:
            shp = x.shape
            if len(shp) != 3:
                return None
            B, T, Dx = shp
            if not B or not T or Dx != D:
                return None
            y = empty(B, T, ylast) if per_step else empty(B, nout)
            if y.dtype is not f32:  # a changed default dtype: take the general path
                return None
            xp = x.data_ptr()
            if not need_state:
                run(addr, B, T, 1, xp, None, None, None, None, y.data_ptr(), None, None, threads, 1)
                return y, None
            hn = empty(S, B, H)
            if lstm:
                cn = empty(S, B, H)
                run(addr, B, T, 1, xp, None, None, None, None, y.data_ptr(), hn.data_ptr(),
                    cn.data_ptr(), threads, 0)  # fmt: skip
                return y, (hn, cn)
            run(addr, B, T, 1, xp, None, None, None, None, y.data_ptr(), hn.data_ptr(), None,
                threads, 0)  # fmt: skip
            return y, hn

        return fast

    # -- info
    @property
    def isa(self) -> str:
        """The kernel set in use (a name from ``seqfuse._C.kernel_sets()``, e.g. ``"avx2"``)."""
        return self._core.isa

    def __repr__(self) -> str:
        return f"NativeModel({self.module_info.get('kind')}, {self.config}, isa={self.isa})"

    # -- calls
    def forward(
        self,
        x: Any,
        hx: Any = None,
        lengths: Any = None,
        *,
        threads: int | None = None,
        need_state: bool = True,
    ) -> Any:
        """Same arguments and results as the source module's forward (see module doc)."""
        # Fast path (batch-1 latency is mostly this function): a contiguous float32 CPU
        # tensor [B, T, D], batch-first, no state in, no lengths.
        if (
            hx is None
            and lengths is None
            and type(x) is _Tensor
            and self._fast_fn is not None
            and x.dtype is _f32
            and x.is_cpu
            and x.is_contiguous()
        ):
            r = self._fast_fn(x, self.threads if threads is None else threads, need_state)
            if r is not None:
                return r
        kind = self._kind
        if kind == "linear":
            if hx is not None or lengths is not None:
                raise InvalidArgumentError("LinearRegression takes only x")
            return self._linear(x, threads)
        return self._seq(x, hx, lengths, threads, need_state)

    def _linear(self, x: Any, threads: int | None) -> Any:
        xa, xp = _float_arg(x, "x")
        shp = xa.shape
        if len(shp) < 1 or shp[-1] != self._D:
            raise InvalidArgumentError(f"x must have shape [..., {self._D}], got {_shape_str(shp)}")
        n = 1
        for d in shp[:-1]:
            n *= int(d)
        oshape = (*shp[:-1], self._O)
        y, yp = _empty(oshape, isinstance(xa, _Tensor))
        if n == 0:
            return y
        _run(
            self._addr,
            n,
            1,
            1,
            xp,
            None,
            None,
            None,
            None,
            yp,
            None,
            None,
            self.threads if threads is None else threads,
            0,
        )
        return y

    def _seq(self, x: Any, hx: Any, lengths: Any, threads: int | None, need_state: bool) -> Any:
        bf = self._batch_first
        unbatched = False
        # input
        if self._tokens:
            xa, tp = _int_arg(x, "x (token ids)")
            xp = None
            torch_out = isinstance(xa, _Tensor)
            shp = xa.shape
            if len(shp) != 2:
                raise InvalidArgumentError(
                    f"x must be token ids of shape [B, T], got {_shape_str(shp)}"
                )
            if bf:
                B, T = shp
            else:
                T, B = shp
        else:
            xa, xp = _float_arg(x, "x")
            tp = None
            torch_out = isinstance(xa, _Tensor)
            shp = xa.shape
            nd = len(shp)
            if nd == 2 and self._kind == "rnn":  # unbatched input [T, D], as torch allows
                unbatched = True
                T, D = shp
                B = 1
            elif nd == 3:
                if bf:
                    B, T, D = shp
                else:
                    T, B, D = shp
            else:
                want = "[B, T, D]" if bf else "[T, B, D]"
                raise InvalidArgumentError(
                    f"x must have shape {want} with D={self._D}, got {_shape_str(shp)}"
                )
            if D != self._D:
                raise InvalidArgumentError(
                    f"x has {D} features, the model takes input_size={self._D}"
                )
        if B == 0 or T == 0:
            raise InvalidArgumentError(f"x has an empty dimension: {_shape_str(shp)}")
        S, H = self._S, self._H
        # state
        h0p = c0p = None
        keep = None
        if hx is not None:
            h0, c0 = split_hx(hx, self._cell)
            want = (S, H) if unbatched else (S, B, H)
            h0a, h0p = _float_arg(h0, "h0")
            if tuple(h0a.shape) != want:
                raise InvalidArgumentError(
                    f"h0 must have shape {_shape_str(want)}, got {_shape_str(h0a.shape)}"
                )
            keep = (h0a,)
            if c0 is not None:
                c0a, c0p = _float_arg(c0, "c0")
                if tuple(c0a.shape) != want:
                    raise InvalidArgumentError(
                        f"c0 must have shape {_shape_str(want)}, got {_shape_str(c0a.shape)}"
                    )
                keep = (h0a, c0a)
        lp = None
        if lengths is not None:
            la, lp = _int_arg(lengths, "lengths")
            if tuple(la.shape) != (B,):
                raise InvalidArgumentError(
                    f"lengths must have shape [{B}] (one per sequence), got {_shape_str(la.shape)}"
                )
            keep = (keep, la)
        # outputs
        head = self._head
        if head == "none":
            yshape = (T, self._F) if unbatched else ((B, T, self._F) if bf else (T, B, self._F))
        elif head == "step":
            yshape = (B, T, self._O)
        else:
            yshape = (B, self._O)
        y, yp = _empty(yshape, torch_out)
        hn = cn = hnp = cnp = None
        if need_state:
            sshape = (S, H) if unbatched else (S, B, H)
            hn, hnp = _empty(sshape, torch_out)
            if self._lstm:
                cn, cnp = _empty(sshape, torch_out)
        _run(
            self._addr,
            B,
            T,
            bf,
            xp,
            tp,
            lp,
            h0p,
            c0p,
            yp,
            hnp,
            cnp,
            self.threads if threads is None else threads,
            not need_state,
        )
        del keep
        if not need_state:
            return y, None
        return y, ((hn, cn) if self._lstm else hn)

    __call__ = forward

    # -- streaming
    def stream(self, batch: int = 1, threads: int | None = None) -> StreamSession:
        """A session that carries h (and c) between calls; inputs are batch-first."""
        if self._kind == "linear":
            raise InvalidArgumentError("a LinearRegression model has no state to stream")
        batch = _int_in(batch, "stream batch", 1, 2**31 - 1)
        threads = self.threads if threads is None else _int_in(threads, "threads", 1, MAX_THREADS)
        return StreamSession(self, batch, threads)

    # -- files
    def weights(self) -> dict[str, np.ndarray]:
        """The weights by their file names (PyTorch state_dict names; see docs/FORMAT.md)."""
        return dict(self._core.weights())

    def save(self, path: str | os.PathLike) -> Path:
        """Write the safetensors weight file (atomic: temp file, then rename)."""
        return save(self, path)


class StreamSession:
    """Streaming: each call takes ``x`` of k >= 1 steps (``[B, k, D]`` floats or ``[B, k]``
    token ids, batch-first) and returns the output for those steps, carrying the state.

    Outputs per head: none ``[B, k, dirs*H]``; step ``[B, k, O]``; last_step / last_hidden
    ``[B, O]`` (for the chunk's last step). ``state`` is ``h`` (or ``(h, c)`` for LSTM) of
    shape ``[num_layers, B, H]`` as NumPy arrays; assign to it to set the state.
    """

    def __init__(self, model: NativeModel, batch: int, threads: int) -> None:
        self._m = model
        self._s = model._core.stream(batch)
        self._addr = self._s.address
        self.batch = batch
        self.threads = threads
        # For the fast path: the dtype, rank and last dimension a well-formed input has, and
        # the output's trailing size (constants bound here: lookups are a visible share of a
        # ~20 us two-thread step).
        self._fast_dtype = _i64 if model._tokens else _f32
        self._fast_rank = 2 if model._tokens else 3
        self._fast_last = None if model._tokens else model._D
        self._per_step = model._head in ("step", "none")
        self._ylast = model._F if model._head == "none" else model._O

    def __call__(self, x: Any) -> Any:
        # Fast path: a contiguous CPU tensor of the right dtype and shape (a streaming loop's
        # usual input). Anything else takes the general checks below, with their errors.
        if type(x) is _Tensor and x.dtype is self._fast_dtype:
            shp = x.shape
            B = self.batch
            if (
                len(shp) == self._fast_rank
                and shp[0] == B
                and shp[1]
                and (self._fast_last is None or shp[2] == self._fast_last)
                and x.is_cpu
                and x.is_contiguous()
            ):
                k = shp[1]
                y = (
                    _empty_torch(B, k, self._ylast)
                    if self._per_step
                    else _empty_torch(B, self._ylast)
                )
                if y.dtype is _f32:  # else a changed default dtype: the general path
                    if self._fast_last is None:
                        _stream_step(self._addr, None, x.data_ptr(), k, y.data_ptr(), self.threads)
                    else:
                        _stream_step(self._addr, x.data_ptr(), None, k, y.data_ptr(), self.threads)
                    return y
        m = self._m
        B = self.batch
        if m._tokens:
            xa, tp = _int_arg(x, "x (token ids)")
            xp = None
            if xa.ndim != 2 or xa.shape[0] != B:
                raise InvalidArgumentError(
                    f"x must be token ids of shape [{B}, k], got {_shape_str(xa.shape)}"
                )
            k = xa.shape[1]
        else:
            xa, xp = _float_arg(x, "x")
            tp = None
            if xa.ndim != 3 or xa.shape[0] != B or xa.shape[2] != m._D:
                raise InvalidArgumentError(
                    f"x must have shape [{B}, k, {m._D}], got {_shape_str(xa.shape)}"
                )
            k = xa.shape[1]
        if k == 0:
            raise InvalidArgumentError("x has no time steps")
        head = m._head
        if head == "none":
            yshape = (B, k, m._F)
        elif head == "step":
            yshape = (B, k, m._O)
        else:
            yshape = (B, m._O)
        y, yp = _empty(yshape, isinstance(xa, _Tensor))
        _stream_step(self._addr, xp, tp, k, yp, self.threads)
        return y

    def reset(self) -> None:
        """Zero the state."""
        self._s.reset()

    @property
    def state(self) -> Any:
        m = self._m
        shape = (m._L, self.batch, m._H)
        h = np.empty(shape, np.float32)
        c = np.empty(shape, np.float32) if m._lstm else None
        self._s.get_state_ptr(h.ctypes.data, c.ctypes.data if c is not None else 0)
        return (h, c) if m._lstm else h

    @state.setter
    def state(self, value: Any) -> None:
        m = self._m
        shape = (m._L, self.batch, m._H)
        if m._lstm:
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise InvalidArgumentError("an LSTM state is a pair (h, c)")
            parts = value
        else:
            parts = (value,)
        arrs = []
        for name, v in zip(("h", "c"), parts):
            if isinstance(v, _Tensor):
                v = v.detach().cpu().numpy()
            a = np.ascontiguousarray(v, dtype=np.float32)
            if a.shape != shape:
                raise InvalidArgumentError(
                    f"state {name} must have shape {_shape_str(shape)}, got {_shape_str(a.shape)}"
                )
            arrs.append(a)
        self._s.set_state_ptr(arrs[0].ctypes.data, arrs[1].ctypes.data if m._lstm else 0)


# ---- public functions ---------------------------------------------------------------------
def from_module(m: nn.Module, threads: int = 1, isa: str = "auto", device: Any = "cpu") -> Any:
    """Convert a module (weights are copied and packed now). ``isa`` forces a kernel set
    ("auto" or a name from ``seqfuse._C.kernel_sets()``: avx512, avx2, portable, reference on
    x86); the env var SEQFUSE_ISA does the same for "auto".
    ``device="cuda"`` returns the CUDA backend's model (seqfuse.native_cuda) instead."""
    if not isinstance(m, nn.Module):
        raise NativeTypeError(f"from_module expects an nn.Module, got {type(m).__name__}")
    cfg, weights, info = _convert(m)
    core = _C.Model(json.dumps(cfg), weights, isa)
    return _on_device(NativeModel(core, info, threads=threads), device)


def _on_device(nm: NativeModel, device: Any) -> Any:
    """The backend seam: CPU models stay here; a CUDA device hands the same weights to the
    CUDA backend (seqfuse.native_cuda.CudaNativeModel, same call contract)."""
    dev = str(device)
    if dev == "cpu":
        return nm
    if dev.startswith("cuda"):
        try:
            from seqfuse.native_cuda import CudaNativeModel
        except ImportError as e:
            raise NativeTypeError(
                f"device {dev!r}: the CUDA backend is not available ({e})"
            ) from None
        return CudaNativeModel(nm, device=dev)
    raise NativeTypeError(f"device must be 'cpu' or 'cuda[:N]', got {dev!r}")


def save(model: NativeModel, path: str | os.PathLike) -> Path:
    """Write ``model`` as a seqfuse safetensors weight file (docs/FORMAT.md)."""
    from safetensors.numpy import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format": FORMAT,
        "version": str(VERSION),
        "config": model._core.config_json,
        "module": json.dumps(model.module_info),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_file(model.weights(), str(tmp), metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _read_module_info(path: Path) -> dict[str, Any]:
    # The C++ reader has validated the whole file already; only the metadata is read here.
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        text = header.get("__metadata__", {}).get("module")
        if text is None:  # written by another tool: a bare engine config
            return {"kind": "engine"}
        info = json.loads(text)
    except (ValueError, OSError, struct.error, RecursionError) as e:
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise WeightFileError(f"{path}: metadata 'module' is unreadable ({reason})") from None
    if not isinstance(info, dict) or info.get("kind") not in ("seq", "linear", "rnn", "engine"):
        raise WeightFileError(f"{path}: metadata 'module' has an unknown kind")
    return info


def load(path: str | os.PathLike, threads: int = 1, isa: str = "auto", device: Any = "cpu") -> Any:
    """Load a weight file written by :func:`save` (validated fully before use)."""
    path = Path(path)
    if path.is_dir():
        raise WeightFileError(f"{path} is a directory, not a weight file")
    if not path.is_file():
        raise WeightFileError(f"weight file not found: {path}")
    core = _C.Model.load(str(path), isa)
    info = _read_module_info(path)
    cfg = json.loads(core.config_json)
    if info["kind"] == "engine":
        info = {"kind": "rnn" if cfg["head"] == "none" else "seq"}
    # The module description decides the output shapes Python allocates, so it must agree
    # with the engine config the C++ reader validated (a tampered kind must not mis-size them).
    layers, head = cfg["num_layers"], cfg["head"]
    fits = {
        "linear": layers == 0 and head == "step",
        "rnn": layers >= 1 and head == "none",
        "seq": layers >= 1,
    }[info["kind"]]
    if not fits:
        raise WeightFileError(
            f"{path}: metadata 'module' kind {info['kind']!r} does not match the engine config "
            f"(num_layers={layers}, head={head})"
        )
    return _on_device(NativeModel(core, info, threads=threads), device)


def to_module(model: NativeModel) -> nn.Module:
    """Rebuild the PyTorch module a NativeModel came from (for checks and round trips)."""
    from seqfuse.models.seq import build_model

    info = model.module_info
    w = {k: torch.from_numpy(v) for k, v in model.weights().items()}
    if info["kind"] in ("seq", "linear") and "config" in info:
        m = build_model(info["config"])
        if info["kind"] == "linear":
            w = {"linear.weight": w["head.weight"], "linear.bias": w["head.bias"]}
        m.load_state_dict(w)
        return m.eval()
    from seqfuse.models.seq import make_rnn

    c = model.config
    m = make_rnn(
        c["cell"],
        input_size=c["input_size"],
        hidden_size=c["hidden_size"],
        num_layers=c["num_layers"],
        bias=c["bias"],
        batch_first=info.get("batch_first", True),
        bidirectional=c["bidirectional"],
    )
    m.load_state_dict({k[len("rnn.") :]: v for k, v in w.items()})
    return m.eval()
