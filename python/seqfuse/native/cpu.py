"""The CPU backend of seqfuse.native: NativeModel and StreamSession over the C++ fused loop.

Inputs may be NumPy arrays or torch CPU tensors; outputs are of the same kind. Arrays are
passed to C++ by pointer after validation (zero copy); outputs are allocated here and filled
in place; a non-contiguous input is copied first. The GIL is released during compute. The
argument checks and output shapes are seqfuse.native.contract's; this file holds the CPU
adapter and a fast path for the common case (a contiguous float32 tensor, batch-first, no
state in), which batch-1 latency is mostly made of.

Checked by tests/test_native.py (parity with eager PyTorch over a randomized grid, every
kernel set), tests/test_native_api.py (API, streaming, bad inputs) and
tests/test_native_robustness.py.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqfuse import _C
from seqfuse.native import contract as K
from seqfuse.native.contract import (
    MAX_THREADS,
    NativeTypeError,
    bind_shape_facts,
    int_in,
)

_empty_torch = torch.empty
_f32 = torch.float32
_i64 = torch.int64
_Tensor = torch.Tensor
_inference_mode = torch.is_inference_mode_enabled
_ndarray = np.ndarray
_run = _C.run
_stream_step = _C.stream_step


class CpuArgs:
    """The CPU adapter of the call contract: torch CPU tensors (passed by address) or NumPy
    arrays (passed as buffers); outputs of the input's kind."""

    null = None

    @staticmethod
    def floats(a: Any, what: str) -> tuple[Any, Any]:
        if isinstance(a, _Tensor):
            if a.dtype is not _f32:
                _device_check(a, what)
                raise NativeTypeError(f"{what} must be float32, got {a.dtype}")
            if not a.is_cpu:
                _device_check(a, what)
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
        raise NativeTypeError(
            f"{what} must be a torch tensor or a NumPy array, got {type(a).__name__}"
        )

    @staticmethod
    def ids(a: Any, what: str) -> tuple[Any, Any]:
        """Integers as contiguous int64 (other integer dtypes are converted); the C++ core
        checks their range."""
        if isinstance(a, _Tensor):
            if a.dtype is not _i64:
                if a.dtype.is_floating_point or a.dtype.is_complex or a.dtype == torch.bool:
                    raise NativeTypeError(
                        f"{what} must be an integer tensor (int64), got {a.dtype}"
                    )
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

    @staticmethod
    def lengths(a: Any, batch: int, steps: int) -> tuple[Any, Any]:
        la, lp = CpuArgs.ids(a, "lengths")
        K.lengths_shape(la, batch)
        return la, lp  # the C++ core checks 1 <= length <= T

    @staticmethod
    def empty(shape: tuple[int, ...], like: Any) -> tuple[Any, Any]:
        if isinstance(like, _Tensor):
            y = _empty_torch(*shape)  # positional sizes: the fastest torch.empty call
            if y.dtype is not _f32:  # a changed default dtype
                y = y.to(_f32)
            return y, y.data_ptr()
        y = np.empty(shape, np.float32)
        return y, y


def _device_check(a: _Tensor, what: str) -> None:
    if a.device.type != "cpu":
        raise NativeTypeError(
            f"{what} is on {a.device}: the CPU engine takes CPU tensors; move it with .cpu(), "
            "or run the model on the GPU with seqfuse.native.from_module(m, device='cuda')"
        )


_ARGS = CpuArgs()


class _OutputsAhead:
    """Float32 output tensors of one shape, allocated ahead in batches; each is returned
    once, as a tensor of its own. Why: a call whose weights pass through L2 (the Shakespeare
    LSTM's 3 MB step, mnist's 2 MB BiLSTM) leaves torch's allocator cold, and one
    ``torch.empty`` after it took about 20 us (a 100 us call), where a batch costs about 1 us
    a tensor. A shape that repeats doubles its batch, up to ``MAX_N`` tensors and
    ``MAX_BYTES`` in all; a new shape starts again from one, so calls whose shapes vary pay
    no more than before. A batch belongs to the inference mode it was made in too (a tensor
    made under ``torch.inference_mode()`` cannot join autograd outside it). Safe for
    concurrent calls: a batch is read with its key as one tuple, and list.pop is atomic."""

    MAX_N = 64
    MAX_BYTES = 256 * 1024

    def __init__(self) -> None:
        self._batch: tuple[tuple[Any, ...], list[tuple[Any, int]], int] = ((), [], 0)

    def take(self, *shape: int) -> tuple[Any, int]:
        """A fresh tensor of ``shape`` and its address."""
        key = (_inference_mode(), *shape)
        have, items, n = self._batch
        if have == key:
            try:
                return items.pop()
            except IndexError:
                pass
            n = max(1, min(2 * n, self.MAX_N, self.MAX_BYTES // max(1, 4 * math.prod(shape))))
        else:
            n = 1
        ys = [_empty_torch(shape, dtype=_f32) for _ in range(n)]
        self._batch = (key, [(y, y.data_ptr()) for y in ys[1:]], n)
        return ys[0], ys[0].data_ptr()


class NativeModel:
    """A model running on the native CPU engine; call it like the module it came from."""

    def __init__(
        self, core: Any, module: dict[str, Any], threads: int = 1, device: str = "cpu"
    ) -> None:
        if device != "cpu":
            raise NativeTypeError(
                f"NativeModel runs on the CPU, got device {device!r}; "
                "use seqfuse.native.from_module(m, device='cuda') for the GPU"
            )
        self._core = core
        self.module_info = module
        self.config: dict[str, Any] = json.loads(core.config_json)
        self.threads = int_in(threads, "threads", 1, MAX_THREADS)
        self.device = device
        bind_shape_facts(self, self.config, module)
        self._addr = self._core.address
        # The fast path of forward(): batch-first sequence models, for a contiguous CPU
        # tensor of the input's dtype (float32 features, int64 token ids).
        fast = self._kind in ("seq", "rnn") and self._batch_first
        self._fast_dtype = _i64 if self._tokens else _f32
        self._fast_fn = self._build_fast() if fast else None

    def _build_fast(self) -> Any:
        """forward() for a contiguous CPU tensor of the right dtype, with the model's
        constants bound as locals (attribute lookups are a visible share of a 3 us call).
        Returns None for any input it does not serve; the general path then checks it."""
        addr, D, S, H, Hs, nout = self._addr, self._D, self._S, self._H, self._Hs, self._O
        lstm, tokens = self._lstm, self._tokens
        per_step = self._head in ("step", "none")
        ylast = nout if self._head == "step" else self._F
        run = _run
        # outputs allocated ahead (see _OutputsAhead), one source per output
        y_take, h_take, c_take = _OutputsAhead().take, _OutputsAhead().take, _OutputsAhead().take

        def fast(x: torch.Tensor, threads: int, need_state: bool) -> Any:
            shp = x.shape
            if tokens:
                if len(shp) != 2:
                    return None
                B, T = shp
                xp, tp = None, x.data_ptr()
            else:
                if len(shp) != 3:
                    return None
                B, T, Dx = shp
                if Dx != D:
                    return None
                xp, tp = x.data_ptr(), None
            if not B or not T:
                return None
            y, yp = y_take(B, T, ylast) if per_step else y_take(B, nout)
            if not need_state:
                run(addr, B, T, 1, xp, tp, None, None, None, yp, None, None, threads, 1)
                return y, None
            hn, hp = h_take(S, B, Hs)
            if lstm:
                cn, cp = c_take(S, B, H)
                run(addr, B, T, 1, xp, tp, None, None, None, yp, hp, cp, threads, 0)
                return y, (hn, cn)
            run(addr, B, T, 1, xp, tp, None, None, None, yp, hp, None, threads, 0)
            return y, hn

        return fast

    def cell_step(self) -> Any:
        """One time step of a one-layer, unidirectional, headless model (what an
        nn.RNNCell / nn.GRUCell / nn.LSTMCell computes), at the cost of one engine call:
        ``step(x, h0, c0) -> (h, c)`` for ``x`` ``[B, D]`` and ``h0`` / ``c0`` ``[B, H]`` or
        None (zeros); ``c`` is None unless LSTM. Serves contiguous CPU float32 tensors of
        exactly those shapes and returns None for anything else (the caller then takes a
        checked path). Used by seqfuse.accel for the Cell modules."""
        if self._L != 1 or self._dirs != 1 or self._head != "none" or self._tokens:
            raise K.InvalidArgumentError("cell_step needs one unidirectional layer and no head")
        addr, D, H, lstm, threads = self._addr, self._D, self._H, self._lstm, self.threads
        run, empty, f32, T = _run, _empty_torch, _f32, _Tensor

        def served(t: Any, B: int) -> bool:  # a state the engine takes as is: [B, H]
            return (
                type(t) is T
                and t.dtype is f32
                and t.is_cpu
                and t.shape == (B, H)
                and t.is_contiguous()
            )

        def step(x: Any, h0: Any, c0: Any) -> Any:
            if type(x) is not T or x.dtype is not f32 or not x.is_cpu:
                return None
            shp = x.shape
            if len(shp) != 2 or shp[1] != D or not shp[0] or not x.is_contiguous():
                return None
            B = shp[0]
            if h0 is None:
                if c0 is not None:
                    return None
                hp = cp = None
            else:
                if not served(h0, B):
                    return None
                hp = h0.data_ptr()
                if lstm:
                    if not served(c0, B):
                        return None
                    cp = c0.data_ptr()
                elif c0 is not None:
                    return None
                else:
                    cp = None
            h = empty(B, H)
            if h.dtype is not f32:  # a changed default dtype
                return None
            if lstm:
                c = empty(B, H)
                run(addr, B, 1, 1, x.data_ptr(), None, None, hp, cp, h.data_ptr(), None,
                    c.data_ptr(), threads, 0)  # fmt: skip
                return h, c
            run(addr, B, 1, 1, x.data_ptr(), None, None, hp, cp, h.data_ptr(), None, None,
                threads, 0)  # fmt: skip
            return h, None

        return step

    # -- info
    @property
    def isa(self) -> str:
        """The kernel set in use (a name from ``seqfuse._C.kernel_sets()``, e.g. ``"avx2"``),
        with the reason when "auto" had to take the reference, e.g.
        ``"reference (fused kernels lack: activations)"`` (ONNX semantics; see seqfuse.native.onnx).
        """
        reason = self._core.kernel_set_reason
        return f"{self._core.isa} ({reason})" if reason else self._core.isa

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
        """Same arguments and results as the source module's forward (see seqfuse.native)."""
        if threads is None:
            threads = self.threads
        if (
            hx is None
            and lengths is None
            and type(x) is _Tensor
            and self._fast_fn is not None
            and x.dtype is self._fast_dtype
            and x.is_cpu
            and x.is_contiguous()
        ):
            r = self._fast_fn(x, threads, need_state)
            if r is not None:
                return r
        if self._kind == "linear":
            n, xp, y, yp = K.linear_call(self, _ARGS, x, hx, lengths)
            if n:
                _run(self._addr, n, 1, 1, xp, None, None, None, None, yp, None, None, threads, 0)
            return y
        args, result, keep = K.seq_call(self, _ARGS, x, hx, lengths, need_state)
        _run(self._addr, *args, threads, not need_state)
        del keep
        return result

    __call__ = forward

    # -- streaming
    def stream(self, batch: int = 1, threads: int | None = None) -> StreamSession:
        """A session that carries h (and c) between calls; inputs are batch-first."""
        K.streamable(self)
        batch = int_in(batch, "stream batch", 1, 2**31 - 1)
        threads = self.threads if threads is None else int_in(threads, "threads", 1, MAX_THREADS)
        return StreamSession(self, batch, threads)

    # -- files
    def weights(self) -> dict[str, np.ndarray]:
        """The weights by their file names (PyTorch state_dict names; see docs/FORMAT.md)."""
        return dict(self._core.weights())

    def save(self, path: str | os.PathLike) -> Path:
        """Write the safetensors weight file (atomic: temp file, then rename)."""
        from seqfuse.native.files import save

        return save(self, path)


class StreamSession:
    """Streaming: each call takes ``x`` of k >= 1 steps (``[B, k, D]`` floats or ``[B, k]``
    token ids, batch-first) and returns the output for those steps, carrying the state.

    Outputs per head: none ``[B, k, dirs*H]``; step ``[B, k, O]``; last_step / last_hidden
    ``[B, O]`` (for the chunk's last step). ``state`` is ``h`` (or ``(h, c)`` for LSTM) of
    shape ``[num_layers, B, H]`` as NumPy arrays; assign to it to set the state.

    One-step calls of one sequence alternate the order in which they read the weights (each
    starts with what the one before read last, still in cache): outputs may differ from a
    whole-sequence call by rounding (within 1e-5), and the same calls after ``reset()`` give
    the same outputs.

    Calls with a tensor input take their outputs from a batch allocated ahead
    (``_OutputsAhead``): each is still a tensor of its own, returned once.
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
        self._y_take = _OutputsAhead().take

    def __call__(self, x: Any) -> Any:
        # Fast path: a contiguous CPU tensor of the right dtype and shape (a streaming loop's
        # usual input). Anything else takes the contract's checks, with their errors.
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
                y, yp = (
                    self._y_take(B, k, self._ylast)
                    if self._per_step
                    else self._y_take(B, self._ylast)
                )
                if self._fast_last is None:
                    _stream_step(self._addr, None, x.data_ptr(), k, yp, self.threads)
                else:
                    _stream_step(self._addr, x.data_ptr(), None, k, yp, self.threads)
                return y
        xa, xp, tp, k = K.stream_chunk(self._m, _ARGS, self.batch, x)
        y, yp = _ARGS.empty(K.stream_output_shape(self._m, self.batch, k), xa)
        _stream_step(self._addr, xp, tp, k, yp, self.threads)
        return y

    def reset(self) -> None:
        """Zero the state."""
        self._s.reset()

    @property
    def state(self) -> Any:
        m = self._m
        h = np.empty((m._L, self.batch, m._Hs), np.float32)
        c = np.empty((m._L, self.batch, m._H), np.float32) if m._lstm else None
        self._s.get_state_ptr(h.ctypes.data, c.ctypes.data if c is not None else 0)
        return (h, c) if m._lstm else h

    @state.setter
    def state(self, value: Any) -> None:
        m = self._m
        arrs = []
        for name, v in K.state_parts(m, value):
            if isinstance(v, _Tensor):
                v = v.detach().cpu().numpy()
            a = np.ascontiguousarray(v, dtype=np.float32)
            K.state_shape(name, a.shape, (m._L, self.batch, m._Hs if name == "h" else m._H))
            arrs.append(a)
        self._s.set_state_ptr(arrs[0].ctypes.data, arrs[1].ctypes.data if len(arrs) > 1 else 0)
