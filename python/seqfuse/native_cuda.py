"""seqfuse.native_cuda: run a :class:`seqfuse.native.NativeModel` on a GPU with seqfuse's own
CUDA kernels (persistent fused sequence loop; no cuDNN, no cuBLAS).

``CudaNativeModel(native, device="cuda")`` uploads the native model's weights once and is
called like the module it came from (same positional arguments, return structure and shapes,
plus ``lengths=``), with torch CUDA tensors on its device. Work is enqueued on torch's current
stream with zero copy (``data_ptr()``); outputs are allocated with ``torch.empty`` on the
device; nothing synchronizes except validating token ids and device-side lengths (both can
be switched off). ``stream(batch)`` gives a session that keeps h (and c) on the GPU between
calls; ``graphed(batch, steps)`` and ``stream(batch, graph=True)`` replay CUDA graphs for
repeated small calls.

Checked by tests/test_native_cuda.py (against the CPU loop and eager PyTorch; it skips
without a GPU or a CUDA build) and tests/test_cuda_tiling.py (the kernel's tile plan).
"""

from __future__ import annotations

from typing import Any

import torch

from seqfuse import _C
from seqfuse.native import (
    InvalidArgumentError,
    NativeModel,
    NativeTypeError,
    bind_shape_facts,
    split_hx,
)

__all__ = [
    "CudaNativeModel",
    "CudaStreamSession",
    "GraphedForward",
    "available",
    "time_per_step",
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


def _shape_str(s: Any) -> str:
    return "[" + ", ".join(str(int(d)) for d in s) + "]"


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

    # -- argument helpers
    def _float(self, a: Any, what: str) -> torch.Tensor:
        if not isinstance(a, torch.Tensor):
            raise NativeTypeError(f"{what} must be a torch tensor on {self.device}")
        if a.device != self.device:
            raise NativeTypeError(f"{what} is on {a.device}, the model is on {self.device}")
        if a.dtype is not _f32:
            raise NativeTypeError(f"{what} must be float32, got {a.dtype}")
        if a.requires_grad:
            a = a.detach()
        return a if a.is_contiguous() else a.contiguous()

    def _tokens_arg(self, a: Any, validate: bool) -> torch.Tensor:
        if not isinstance(a, torch.Tensor) or a.device != self.device:
            raise NativeTypeError(f"token ids must be an integer torch tensor on {self.device}")
        if a.dtype is not _i64:
            if a.dtype.is_floating_point or a.dtype.is_complex or a.dtype == torch.bool:
                raise NativeTypeError(f"token ids must be integers (int64), got {a.dtype}")
            a = a.to(_i64)
        a = a if a.is_contiguous() else a.contiguous()
        if validate and a.numel() and bool(((a < 0) | (a >= self._V)).any()):
            bad = a[(a < 0) | (a >= self._V)][0].item()
            raise InvalidArgumentError(f"token id {bad} is out of range [0, {self._V})")
        return a

    def _lengths_arg(self, a: Any, B: int, T: int, trusted: bool = False) -> torch.Tensor:
        if trusted:  # GraphedForward's static device buffer, validated when it was filled
            return a
        if isinstance(a, (list, tuple)):
            a = torch.tensor(a, dtype=_i64)
        if not isinstance(a, torch.Tensor):
            raise NativeTypeError(f"lengths must be a tensor or a list, got {type(a).__name__}")
        if a.dtype.is_floating_point or a.dtype.is_complex or a.dtype == torch.bool:
            raise NativeTypeError(f"lengths must be integers, got {a.dtype}")
        if tuple(a.shape) != (B,):
            raise InvalidArgumentError(
                f"lengths must have shape [{B}] (one per sequence), got {_shape_str(a.shape)}"
            )
        lo, hi = int(a.min()), int(a.max())  # CPU lengths (torch's convention): no GPU sync
        if lo < 1 or hi > T:
            raise InvalidArgumentError(f"lengths must be in [1, {T}], got values in [{lo}, {hi}]")
        return a.to(device=self.device, dtype=_i64, non_blocking=True).contiguous()

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
        if self._kind == "linear":
            if hx is not None or lengths is not None:
                raise InvalidArgumentError("LinearRegression takes only x")
            xa = self._float(x, "x")
            if xa.ndim < 1 or xa.shape[-1] != self._D:
                raise InvalidArgumentError(
                    f"x must have shape [..., {self._D}], got {_shape_str(xa.shape)}"
                )
            y = torch.empty((*xa.shape[:-1], self._O), dtype=_f32, device=self.device)
            n = xa.numel() // self._D
            if n:
                self._run(n, 1, True, xa.data_ptr(), 0, 0, 0, 0, y.data_ptr(), 0, 0, p)
            return y
        bf = self._batch_first
        unbatched = False
        xp = tp = 0
        if self._tokens:
            xa = self._tokens_arg(x, validate)
            if xa.ndim != 2:
                raise InvalidArgumentError(
                    f"x must be token ids of shape [B, T], got {_shape_str(xa.shape)}"
                )
            B, T = xa.shape if bf else xa.shape[::-1]
            tp = xa.data_ptr()
        else:
            xa = self._float(x, "x")
            if xa.ndim == 2 and self._kind == "rnn":
                unbatched = True
                (T, D), B = xa.shape, 1
            elif xa.ndim == 3:
                B, T, D = xa.shape if bf else (xa.shape[1], xa.shape[0], xa.shape[2])
            else:
                want = "[B, T, D]" if bf else "[T, B, D]"
                raise InvalidArgumentError(
                    f"x must have shape {want} with D={self._D}, got {_shape_str(xa.shape)}"
                )
            if D != self._D:
                raise InvalidArgumentError(
                    f"x has {D} features, the model takes input_size={self._D}"
                )
            xp = xa.data_ptr()
        B, T = int(B), int(T)
        if B == 0 or T == 0:
            raise InvalidArgumentError(f"x has an empty dimension: {_shape_str(xa.shape)}")
        S, H = self._S, self._H
        h0p = c0p = 0
        keep: Any = None
        if hx is not None:
            h0, c0 = split_hx(hx, self._cell)
            want = (S, H) if unbatched else (S, B, H)
            h0a = self._float(h0, "h0")
            if tuple(h0a.shape) != want:
                raise InvalidArgumentError(
                    f"h0 must have shape {_shape_str(want)}, got {_shape_str(h0a.shape)}"
                )
            h0p = h0a.data_ptr()
            keep = h0a
            if c0 is not None:
                c0a = self._float(c0, "c0")
                if tuple(c0a.shape) != want:
                    raise InvalidArgumentError(
                        f"c0 must have shape {_shape_str(want)}, got {_shape_str(c0a.shape)}"
                    )
                c0p = c0a.data_ptr()
                keep = (h0a, c0a)
        lp = 0
        if lengths is not None:
            la = self._lengths_arg(lengths, B, T, _trusted_lengths)
            lp = la.data_ptr()
            keep = (keep, la)
        head = self._head
        if head == "none":
            yshape = (T, self._F) if unbatched else ((B, T, self._F) if bf else (T, B, self._F))
        elif head == "step":
            yshape = (B, T, self._O)
        else:
            yshape = (B, self._O)
        dev = self.device
        y = torch.empty(yshape, dtype=_f32, device=dev)
        hn = cn = None
        if need_state:
            sshape = (S, H) if unbatched else (S, B, H)
            hn = torch.empty(sshape, dtype=_f32, device=dev)
            if self._lstm:
                cn = torch.empty(sshape, dtype=_f32, device=dev)
        self._run(
            B, T, bf, xp, tp, lp, h0p, c0p, y.data_ptr(),
            hn.data_ptr() if hn is not None else 0,
            cn.data_ptr() if cn is not None else 0, p,
        )  # fmt: skip
        del keep  # the caller's stream owns the order; torch's allocator keeps blocks for it
        if not need_state:
            return y, None
        return y, ((hn, cn) if self._lstm else hn)

    # -- repeated calls
    def stream(
        self, batch: int = 1, graph: bool = False, validate: bool = True
    ) -> CudaStreamSession:
        """A session that carries h (and c) on the GPU between calls (batch-first inputs).
        ``graph=True`` replays a CUDA graph per chunk length after its first call; its
        output tensor is then reused by the next call of that length (clone to keep)."""
        if self._kind == "linear":
            raise InvalidArgumentError("a LinearRegression model has no state to stream")
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
        self._validate = validate
        shape = (m._L, batch, m._H)
        self._h = torch.zeros(shape, dtype=_f32, device=m.device)
        self._c = torch.zeros(shape, dtype=_f32, device=m.device) if m._lstm else None
        self._graph = graph
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}

    def _yshape(self, k: int) -> tuple[int, ...]:
        m, B = self._m, self.batch
        if m._head == "none":
            return (B, k, m._F)
        if m._head == "step":
            return (B, k, m._O)
        return (B, m._O)

    def _check(self, x: Any) -> tuple[torch.Tensor, int]:
        m, B = self._m, self.batch
        if m._tokens:
            xa = m._tokens_arg(x, self._validate)
            if xa.ndim != 2 or xa.shape[0] != B:
                raise InvalidArgumentError(
                    f"x must be token ids of shape [{B}, k], got {_shape_str(xa.shape)}"
                )
        else:
            xa = m._float(x, "x")
            if xa.ndim != 3 or xa.shape[0] != B or xa.shape[2] != m._D:
                raise InvalidArgumentError(
                    f"x must have shape [{B}, k, {m._D}], got {_shape_str(xa.shape)}"
                )
        k = int(xa.shape[1])
        if k == 0:
            raise InvalidArgumentError("x has no time steps")
        return xa, k

    def _step(self, xa: torch.Tensor, k: int, y: torch.Tensor) -> None:
        m = self._m
        xp = 0 if m._tokens else xa.data_ptr()
        tp = xa.data_ptr() if m._tokens else 0
        hp = self._h.data_ptr()
        cp = self._c.data_ptr() if self._c is not None else 0
        # h_n aliases h0 (and c_n c0): the kernels read a layer's state before writing it.
        m._run(self.batch, k, True, xp, tp, 0, hp, cp, y.data_ptr(), hp, cp, m._path)

    def __call__(self, x: Any) -> torch.Tensor:
        xa, k = self._check(x)
        if not self._graph:
            y = torch.empty(self._yshape(k), dtype=_f32, device=self._m.device)
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
        ys = torch.empty(self._yshape(k), dtype=_f32, device=m.device)
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
        m = self._m
        parts = value if m._lstm else (value,)
        if m._lstm and (not isinstance(value, (tuple, list)) or len(value) != 2):
            raise InvalidArgumentError("an LSTM state is a pair (h, c)")
        for name, v, dst in zip(("h", "c"), parts, (self._h, self._c)):
            if not isinstance(v, torch.Tensor):
                v = torch.as_tensor(v)
            if tuple(v.shape) != tuple(dst.shape):
                raise InvalidArgumentError(
                    f"state {name} must have shape {_shape_str(dst.shape)}, got {_shape_str(v.shape)}"
                )
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
                f"this graph takes x of shape {_shape_str(self._x.shape)}, got {_shape_str(x.shape)}"
            )
        if m._tokens:
            m._tokens_arg(x, True)
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
            self._len_dev.copy_(m._lengths_arg(lengths, self.batch, self.steps))
        self._g.replay()
        return self._out


def time_per_step(
    model: CudaNativeModel,
    batch: int = 1,
    short: int = 64,
    long: int = 1024,
    repeats: int = 20,
    path: str | None = None,
) -> dict[str, float]:
    """Per-timestep cost of the sequence loop, free of launch overhead: the median time of a
    ``long``-step call minus that of a ``short``-step call, over the step difference (CUDA
    events, after a warm-up). Returns microseconds: per_step, short_call, long_call."""
    m = model
    dev = m.device
    times: dict[int, float] = {}
    for steps in (short, long):
        if m._tokens:
            x = torch.randint(0, m._V, (batch, steps), device=dev)
        else:
            x = torch.randn(batch, steps, m._D, device=dev)
        if not m._batch_first:
            x = x.transpose(0, 1).contiguous()
        for _ in range(3):
            m.forward(x, validate=False, path=path)
        samples = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            m.forward(x, validate=False, path=path)
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) * 1000.0)
        times[steps] = sorted(samples)[len(samples) // 2]
    return {
        "per_step": (times[long] - times[short]) / (long - short),
        "short_call": times[short],
        "long_call": times[long],
    }


def _latency_us(fn: Any, repeats: int) -> tuple[float, float]:
    """Median and p99 wall time of fn() + synchronize, in microseconds, after 5 warm-up
    calls: seqfuse bench's timing loop (gc off while timing), exactly ``repeats`` calls."""
    from seqfuse.bench.harness import time_calls

    ns = sorted(time_calls(fn, torch.cuda.synchronize, 0.0, 5, repeats, repeats))
    samples = [t / 1e3 for t in ns]
    return samples[len(samples) // 2], samples[min(len(samples) - 1, int(0.99 * len(samples)))]


def main(argv: list[str] | None = None) -> int:
    """GPU self-check of the seed models: parity with eager (CPU), the kernel plan, batch-1
    latency (plain and graphed, every path), per-step cost and the streaming step. Prints a
    table and writes cuda_check.json into --out. ``python -m seqfuse.native_cuda --out DIR``.
    Exit status 1 (naming the checks) when any parity error exceeds 1e-5, 2 without CUDA."""
    import argparse
    import json
    import sys
    from pathlib import Path

    from seqfuse.models.presets import preset
    from seqfuse.models.seq import build_model, example_input
    from seqfuse.native import from_module

    ap = argparse.ArgumentParser(prog="python -m seqfuse.native_cuda", description=main.__doc__)
    ap.add_argument("--out", default=".", help="directory for cuda_check.json")
    ap.add_argument("--repeats", type=int, default=200, help="timed calls per measurement")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    tol = 1e-5  # fp32 native vs eager, the project's parity bound
    failures: list[str] = []
    why = unavailable_reason()
    if why is not None:
        print(f"CUDA backend unavailable: {why}")
        return 2
    steps = {"sine": 20, "hihell": 6, "names": 12, "mnist": 28, "shakespeare": 100}
    report: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(),
        "capability": list(torch.cuda.get_device_capability()),
        "torch": torch.__version__,
        "models": {},
    }
    for name, T in steps.items():
        cfg = preset(name)
        torch.manual_seed(0)
        m = build_model(cfg).eval()
        x = example_input(cfg, batch=1, seq_len=T, seed=0)
        nm = from_module(m)
        with torch.no_grad():
            want = m(x)[0]
        row: dict[str, Any] = {"T": T}
        for path in ("auto", "persistent", "step", "fused"):
            try:
                gm = CudaNativeModel(nm, "cuda", path=path)
                xc = x.cuda()
                got = gm(xc, validate=False)[0].cpu()
            except InvalidArgumentError as e:
                row[path] = {"unsupported": str(e)}
                continue
            err = float((got - want).abs().max())
            if not err <= tol:  # also catches NaN
                failures.append(f"{name} path={path}: max abs err {err:.3g} > {tol:g}")
            med, p99 = _latency_us(lambda gm=gm, xc=xc: gm(xc, validate=False), args.repeats)
            g = gm.graphed(1, T)
            gmed, gp99 = _latency_us(lambda g=g, xc=xc: g(xc), args.repeats)
            row[path] = {
                "max_err": err,
                "us": med,
                "us_p99": p99,
                "graph_us": gmed,
                "graph_p99": gp99,
            }
            if path == "auto":
                row["plan"] = gm.describe(1)
                row["per_step_us"] = time_per_step(gm, 1, 16, 16 + 8 * T, 20)["per_step"]
        if cfg.get("vocab_size", 0) and not cfg.get("bidirectional", False):
            gm = CudaNativeModel(nm, "cuda")
            tok = x[:, :1].cuda()
            for graph in (False, True):
                sess = gm.stream(1, graph=graph, validate=False)
                med, p99 = _latency_us(lambda s=sess, t=tok: s(t), args.repeats)
                row[f"stream_{'graph' if graph else 'plain'}_us"] = [med, p99]
        report["models"][name] = row
        print(name, json.dumps({k: v for k, v in row.items() if k != "plan"}, default=str))
        print(row.get("plan", ""))
    out = Path(args.out) / "cuda_check.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")
    if failures:
        print("parity check FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
