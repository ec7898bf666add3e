"""The CUDA backend of seqfuse.native: a NativeModel's weights on a GPU, run by seqfuse's own
CUDA kernels (persistent fused sequence loop; no cuDNN, no cuBLAS).

``CudaNativeModel(native, device="cuda")`` uploads the native model's weights once and is
called like the module it came from (same positional arguments, return structure and shapes,
plus ``lengths=``), with torch CUDA tensors on its device. The argument checks and output
shapes are seqfuse.native.contract's, as on the CPU; this file holds the CUDA adapter (device
and dtype checks, token-id and lengths validation, the workspace) and the GPU-only features.
Work is enqueued on torch's current stream with zero copy (``data_ptr()``); outputs are
allocated with ``torch.empty`` on the device; nothing synchronizes except validating token
ids and device-side lengths (both can be switched off). ``stream(batch)`` gives a session
that keeps h (and c) on the GPU between calls; ``graphed(batch, steps)`` and
``stream(batch, graph=True)`` replay CUDA graphs for repeated small calls.

Checked by tests/test_native_cuda.py (against the CPU loop and eager PyTorch; it skips
without a GPU or a CUDA build) and tests/test_cuda_tiling.py (the kernel's tile plan). The
GPU self-check (`python -m seqfuse.bench.cuda_check`) lives with the tooling.
"""

from __future__ import annotations

from typing import Any

import torch

from seqfuse import _C
from seqfuse.native import contract as K
from seqfuse.native.contract import InvalidArgumentError, NativeTypeError, bind_shape_facts
from seqfuse.native.cpu import NativeModel

__all__ = [
    "CudaNativeModel",
    "CudaStreamSession",
    "GraphedForward",
    "available",
    "unavailable_reason",
]

_PATHS = {"auto": 0, "persistent": 1, "step": 2, "fused": 3}
_f32 = torch.float32
_i64 = torch.int64


def unavailable_reason() -> str | None:
    """Why the CUDA backend cannot run here, or None when it can."""
    if not getattr(_C, "cuda_built", False):
        return "seqfuse was built without CUDA (no nvcc at build time, or SEQFUSE_CUDA=OFF)"
    if not torch.cuda.is_available():
        return "torch sees no CUDA device"
    if _C.cuda_device_count() == 0:
        return "the CUDA runtime linked into seqfuse sees no device (driver too old?)"
    return None


def available() -> bool:
    """True when seqfuse's CUDA kernels can run on this machine."""
    return unavailable_reason() is None


class CudaArgs:
    """The CUDA adapter of the call contract: torch tensors on the model's device, passed by
    address (0 is "absent"). ``validate`` checks token ids (a GPU sync); ``trusted_lengths``
    takes lengths already on the device as they are (GraphedForward's static buffer, checked
    when it was filled)."""

    null = 0

    def __init__(self, device: torch.device, vocab: int, validate: bool, trusted: bool) -> None:
        self.device = device
        self.vocab = vocab
        self.validate = validate
        self.trusted = trusted

    def floats(self, a: Any, what: str) -> tuple[torch.Tensor, int]:
        if not isinstance(a, torch.Tensor):
            raise NativeTypeError(f"{what} must be a torch tensor on {self.device}")
        if a.device != self.device:
            raise NativeTypeError(f"{what} is on {a.device}, the model is on {self.device}")
        if a.dtype is not _f32:
            raise NativeTypeError(f"{what} must be float32, got {a.dtype}")
        if a.requires_grad:
            a = a.detach()
        a = a if a.is_contiguous() else a.contiguous()
        return a, a.data_ptr()

    def ids(self, a: Any, what: str) -> tuple[torch.Tensor, int]:
        if not isinstance(a, torch.Tensor) or a.device != self.device:
            raise NativeTypeError(f"{what} must be an integer torch tensor on {self.device}")
        if a.dtype is not _i64:
            if a.dtype.is_floating_point or a.dtype.is_complex or a.dtype == torch.bool:
                raise NativeTypeError(f"{what} must be integers (int64), got {a.dtype}")
            a = a.to(_i64)
        a = a if a.is_contiguous() else a.contiguous()
        if self.validate and a.numel():
            bad = (a < 0) | (a >= self.vocab)
            if bool(bad.any()):
                raise InvalidArgumentError(
                    f"token id {a[bad][0].item()} is out of range [0, {self.vocab})"
                )
        return a, a.data_ptr()

    def lengths(self, a: Any, batch: int, steps: int) -> tuple[torch.Tensor, int]:
        if self.trusted:
            return a, a.data_ptr()
        if isinstance(a, (list, tuple)):
            a = torch.tensor(a, dtype=_i64)
        if not isinstance(a, torch.Tensor):
            raise NativeTypeError(f"lengths must be a tensor or a list, got {type(a).__name__}")
        if a.dtype.is_floating_point or a.dtype.is_complex or a.dtype == torch.bool:
            raise NativeTypeError(f"lengths must be integers, got {a.dtype}")
        K.lengths_shape(a, batch)
        lo, hi = int(a.min()), int(a.max())  # CPU lengths (torch's convention): no GPU sync
        if lo < 1 or hi > steps:
            raise InvalidArgumentError(
                f"lengths must be in [1, {steps}], got values in [{lo}, {hi}]"
            )
        a = a.to(device=self.device, dtype=_i64, non_blocking=True).contiguous()
        return a, a.data_ptr()

    def empty(self, shape: tuple[int, ...], like: Any) -> tuple[torch.Tensor, int]:
        y = torch.empty(shape, dtype=_f32, device=self.device)
        return y, y.data_ptr()


class CudaNativeModel:
    """A NativeModel's weights on a GPU; call it like the source module (see module doc).

    ``path``: "auto" (for a few steps of a unidirectional model without lengths, the fused
    one-launch kernel; otherwise per layer the persistent kernel where the recurrent weights
    fit on chip, else the per-step kernel), or one of "persistent", "step", "fused" to force
    that kernel (InvalidArgumentError where it cannot run).

    ``precision``: "fp32" (exact, the default) or "bf16": the recurrent layers' weight
    matrices rounded to bf16 at load (fp32 accumulation, states, biases, Embedding and head),
    which lets the persistent kernel hold twice the hidden size on chip.
    """

    def __init__(
        self, native: NativeModel, device: Any = "cuda", path: str = "auto", precision: str = "fp32"
    ) -> None:
        why = unavailable_reason()
        if why is not None:
            raise NativeTypeError(f"the seqfuse CUDA backend is not available: {why}")
        dev = torch.device(device)
        if dev.type != "cuda":
            raise NativeTypeError(f"CudaNativeModel needs a CUDA device, got {dev}")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        if path not in _PATHS:
            raise InvalidArgumentError(f"path must be one of {sorted(_PATHS)}, got {path!r}")
        self.device = dev
        self.native = native
        self.path = path
        self._path = _PATHS[path]
        self.config = dict(native.config)
        self.module_info = native.module_info
        c = self.config
        if precision not in ("fp32", "bf16"):
            raise InvalidArgumentError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.precision = precision
        self._core = _C.CudaModel(native._core.config_json, native.weights(), dev.index, precision)
        self._addr = self._core.address
        bind_shape_facts(self, c, native.module_info)
        # One adapter per (validate token ids, trusted device lengths) choice, made once.
        self._args = {
            (v, t): CudaArgs(dev, self._V, v, t) for v in (False, True) for t in (False, True)
        }
        self._ws: torch.Tensor | None = None
        self._ws_stream = -1

    def __repr__(self) -> str:
        return (
            f"CudaNativeModel({self._kind}, {self.config}, device={self.device}, "
            f"precision={self.precision})"
        )

    def describe(self, batch: int = 1) -> str:
        """The kernel path and tile plan of each layer for this batch size."""
        return self._core.describe(int(batch), self.path)

    # -- the same model elsewhere, and on disk (the weights are the NativeModel's)
    def to(self, device: Any) -> Any:
        """``"cpu"``: the NativeModel these weights came from; a CUDA device: this model
        there (the same object when it already is)."""
        dev = torch.device(device)
        if dev.type == "cpu":
            return self.native
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        if dev == self.device:
            return self
        return CudaNativeModel(self.native, dev, self.path, self.precision)

    def weights(self) -> dict[str, Any]:
        """The weights by their file names (fp32 as given, also in the bf16 mode)."""
        return self.native.weights()

    def save(self, path: Any) -> Any:
        """Write the safetensors weight file (seqfuse.native.save)."""
        return self.native.save(path)

    def _workspace(self, B: int, T: int, stream: torch.cuda.Stream) -> tuple[int, int]:
        n = self._core.workspace_bytes(B, T)
        if n == 0:
            return 0, 0
        if torch.cuda.is_current_stream_capturing():
            # Inside a graph capture: a fresh block from the graph's private pool.
            ws = torch.empty(n, dtype=torch.uint8, device=self.device)
            return ws.data_ptr(), n
        sid = stream.cuda_stream
        if self._ws is None or self._ws.numel() < n or self._ws_stream != sid:
            # Reused across calls on one stream (stream order makes that safe).
            self._ws = torch.empty(n, dtype=torch.uint8, device=self.device)
            self._ws_stream = sid
        return self._ws.data_ptr(), self._ws.numel()

    def _run(
        self,
        B: int,
        T: int,
        bf: bool,
        xp: int,
        tp: int,
        lp: int,
        h0p: int,
        c0p: int,
        yp: int,
        hnp: int,
        cnp: int,
        path: int,
    ) -> None:
        stream = torch.cuda.current_stream(self.device)
        wsp, wsn = self._workspace(B, T, stream)
        _C.cuda_run(
            self._addr, B, T, int(bf), xp, tp, lp, h0p, c0p, yp, hnp, cnp, wsp, wsn,
            stream.cuda_stream, path,
        )  # fmt: skip

    # -- calls
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def forward(
        self,
        x: Any,
        hx: Any = None,
        lengths: Any = None,
        *,
        need_state: bool = True,
        validate: bool = True,
        path: str | None = None,
        _trusted_lengths: bool = False,
    ) -> Any:
        """Same arguments and results as the source module's forward. ``validate=False``
        skips the token-id check (a GPU sync); out-of-range ids then give NaN outputs."""
        p = self._path if path is None else _PATHS[path]
        ad = self._args[(validate, _trusted_lengths)]
        if self._kind == "linear":
            n, xp, y, yp = K.linear_call(self, ad, x, hx, lengths)
            if n:
                self._run(n, 1, True, xp, 0, 0, 0, 0, yp, 0, 0, p)
            return y
        args, result, keep = K.seq_call(self, ad, x, hx, lengths, need_state)
        self._run(*args, p)
        del keep  # the caller's stream owns the order; torch's allocator keeps blocks for it
        return result

    # -- repeated calls
    def stream(
        self, batch: int = 1, graph: bool = False, validate: bool = True
    ) -> CudaStreamSession:
        """A session that carries h (and c) on the GPU between calls (batch-first inputs).
        ``graph=True`` replays a CUDA graph per chunk length after its first call; its
        output tensor is then reused by the next call of that length (clone to keep)."""
        K.streamable(self)
        if self._dirs != 1:
            raise InvalidArgumentError(
                "streaming needs a unidirectional model (a backward direction reads the future)"
            )
        return CudaStreamSession(self, int(batch), graph, validate)

    def graphed(
        self, batch: int, steps: int, *, hx: bool = False, lengths: bool = False
    ) -> GraphedForward:
        """A CUDA-graph replay of forward() for one input shape (see GraphedForward)."""
        return GraphedForward(self, int(batch), int(steps), hx, lengths)


class CudaStreamSession:
    """Streaming on the GPU: each call takes ``x`` of k >= 1 steps (``[B, k, D]`` floats or
    ``[B, k]`` token ids, batch-first, on the model's device) and returns that chunk's output;
    the state stays on the device. Outputs per head as NativeModel.stream."""

    def __init__(self, model: CudaNativeModel, batch: int, graph: bool, validate: bool) -> None:
        if batch < 1:
            raise InvalidArgumentError("stream batch must be >= 1")
        m = model
        self._m = m
        self.batch = batch
        self._ad = m._args[(validate, False)]
        shape = (m._L, batch, m._H)
        self._h = torch.zeros(shape, dtype=_f32, device=m.device)
        self._c = torch.zeros(shape, dtype=_f32, device=m.device) if m._lstm else None
        self._graph = graph
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}

    def _step(self, xa: torch.Tensor, k: int, y: torch.Tensor) -> None:
        m = self._m
        xp = 0 if m._tokens else xa.data_ptr()
        tp = xa.data_ptr() if m._tokens else 0
        hp = self._h.data_ptr()
        cp = self._c.data_ptr() if self._c is not None else 0
        # h_n aliases h0 (and c_n c0): the kernels read a layer's state before writing it.
        m._run(self.batch, k, True, xp, tp, 0, hp, cp, y.data_ptr(), hp, cp, m._path)

    def __call__(self, x: Any) -> torch.Tensor:
        xa, _, _, k = K.stream_chunk(self._m, self._ad, self.batch, x)
        if not self._graph:
            y = torch.empty(
                K.stream_output_shape(self._m, self.batch, k), dtype=_f32, device=self._m.device
            )
            self._step(xa, k, y)
            return y
        entry = self._graphs.get(k)
        if entry is None:
            entry = self._capture(xa, k)
            self._graphs[k] = entry
            return entry[2]  # _capture ran this call's step
        g, xs, ys = entry
        xs.copy_(xa)
        g.replay()
        return ys

    def _capture(
        self, xa: torch.Tensor, k: int
    ) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]:
        m = self._m
        xs = xa.clone()
        ys = torch.empty(K.stream_output_shape(self._m, self.batch, k), dtype=_f32, device=m.device)
        saved = self.state
        side = torch.cuda.Stream(m.device)
        side.wait_stream(torch.cuda.current_stream(m.device))
        with torch.cuda.stream(side):
            self._step(xs, k, ys)  # warm-up: plans and occupancy checks happen outside capture
        torch.cuda.current_stream(m.device).wait_stream(side)
        self.state = saved
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            self._step(xs, k, ys)
        g.replay()  # capture does not execute: run this call's step for real
        return g, xs, ys

    def reset(self) -> None:
        """Zero the state."""
        self._h.zero_()
        if self._c is not None:
            self._c.zero_()

    @property
    def state(self) -> Any:
        """h (or (h, c)) of shape [num_layers, B, H]: copies, on the device."""
        return (self._h.clone(), self._c.clone()) if self._c is not None else self._h.clone()

    @state.setter
    def state(self, value: Any) -> None:
        shape = tuple(self._h.shape)
        for (name, v), dst in zip(K.state_parts(self._m, value), (self._h, self._c)):
            if not isinstance(v, torch.Tensor):
                v = torch.as_tensor(v)
            K.state_shape(name, v.shape, shape)
            dst.copy_(v.to(dtype=_f32))


class GraphedForward:
    """forward() for one shape ([B, T] inputs, optional state and lengths) captured into a
    CUDA graph: a call copies its inputs into static buffers and replays the graph. The
    returned tensors are the static outputs, overwritten by the next call (clone to keep)."""

    def __init__(
        self, model: CudaNativeModel, batch: int, steps: int, hx: bool, lengths: bool
    ) -> None:
        m = model
        self._m = m
        dev = m.device
        B, T = batch, steps
        bf = m._batch_first
        if m._kind == "linear":
            raise InvalidArgumentError("graphed() serves recurrent models")
        if m._tokens:
            self._x = torch.zeros((B, T) if bf else (T, B), dtype=_i64, device=dev)
        else:
            self._x = torch.zeros((B, T, m._D) if bf else (T, B, m._D), dtype=_f32, device=dev)
        self._hx: Any = None
        if hx:
            h = torch.zeros(m._S, B, m._H, dtype=_f32, device=dev)
            self._hx = (h, torch.zeros_like(h)) if m._lstm else h
        self._len = torch.full((B,), T, dtype=_i64) if lengths else None
        self._len_dev = torch.full((B,), T, dtype=_i64, device=dev) if lengths else None
        self.batch, self.steps = B, T
        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):
            self._call()  # warm-up outside the capture
        torch.cuda.current_stream(dev).wait_stream(side)
        self._g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._g):
            self._out = self._call()

    def _call(self) -> Any:
        # validate=False: a sync cannot be captured; __call__ validates token ids instead.
        return self._m.forward(
            self._x, self._hx, self._len_dev, validate=False, _trusted_lengths=True
        )

    def __call__(self, x: torch.Tensor, hx: Any = None, lengths: Any = None) -> Any:
        m = self._m
        if tuple(x.shape) != tuple(self._x.shape):
            raise InvalidArgumentError(
                f"this graph takes x of shape {K.shape_str(self._x.shape)}, got {K.shape_str(x.shape)}"
            )
        if m._tokens:
            m._args[(True, False)].ids(x, "x (token ids)")
        self._x.copy_(x)
        if (hx is None) != (self._hx is None):
            raise InvalidArgumentError("pass hx exactly when the graph was made with hx=True")
        if hx is not None:
            if m._lstm:
                self._hx[0].copy_(hx[0])
                self._hx[1].copy_(hx[1])
            else:
                self._hx.copy_(hx)
        if (lengths is None) != (self._len_dev is None):
            raise InvalidArgumentError(
                "pass lengths exactly when the graph was made with lengths=True"
            )
        if lengths is not None:
            self._len_dev.copy_(m._args[(True, False)].lengths(lengths, self.batch, self.steps)[0])
        self._g.replay()
        return self._out
