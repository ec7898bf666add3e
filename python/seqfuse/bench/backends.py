"""Benchmark backends: one small class per way of running a model.

Each backend has ``name``, ``available() -> (ok, reason)``, ``prepare(model, inputs)``
(exports / compiles once per workload), ``set_threads(n)``, ``reset()`` (streaming: a fresh
zero state), ``run()`` (one call, returns the outputs in the model's structure) and
``sync()`` (waits for the device). The harness validates ``run()`` against eager PyTorch
before it times anything. Checked by tests/test_bench.py (and benchmarks/).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import seqfuse.export
from seqfuse.bench.workloads import Inputs, zero_state


def ort_session(path: Path | str, threads: int, provider: str = "CPUExecutionProvider") -> Any:
    """The ONNX Runtime session every bench row times: ``threads`` intra-op threads, one
    inter-op thread, sequential, every graph optimization (also the ``ort`` backends')."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=[provider])


class BackendUnsupported(Exception):
    """This backend cannot run this workload (shown as skipped, with the reason)."""


def _cuda_ok() -> tuple[bool, str]:
    if not torch.cuda.is_available():
        return False, "no CUDA device"
    return True, ""


def _is_seq(model: nn.Module) -> bool:
    return isinstance(getattr(model, "rnn", None), nn.RNNBase)


def _to(obj: Any, device: str) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to(o, device) for o in obj)
    return obj


class Backend:
    """Base class. ``peer``: a non-seqfuse fp32 way to run the model (ratios are taken to
    the fastest peer); ``precision``: "fp32", or what a reduced-precision backend does
    (never a peer); ``tolerance``: max abs error against eager accepted at validation."""

    name = "base"
    label = "base"
    device = "cpu"
    peer = True
    precision = "fp32"
    tolerance = 1e-5
    note = ""

    def __init__(self) -> None:
        self.model: nn.Module | None = None
        self.inputs: Inputs | None = None
        self.threads = 1

    def available(self) -> tuple[bool, str]:
        return True, ""

    def prepare(self, model: nn.Module, inputs: Inputs) -> None:
        self.model, self.inputs = model, inputs
        self.reset()

    def set_threads(self, n: int) -> None:
        self.threads = n

    def reset(self) -> None:
        self._i = 0
        self._state: Any = None

    def _next_step(self) -> Any:
        assert self.inputs is not None
        x = self.inputs.steps[self._i % len(self.inputs.steps)]
        self._i += 1
        return x

    def run(self) -> Any:
        raise NotImplementedError

    def sync(self) -> None:
        pass

    def close(self) -> None:
        """Drop what prepare built (exported files, compiled graphs)."""

    def describe(self) -> dict[str, Any]:
        """Fields this backend adds to its result rows once validated (e.g. native's
        kernel set)."""
        return {}


class _TorchFn(Backend):
    """Backends that end in a torch callable with the model's own signature."""

    def make_fn(self, model: nn.Module, inputs: Inputs) -> Any:
        raise NotImplementedError

    def prepare(self, model: nn.Module, inputs: Inputs) -> None:
        super().prepare(model, inputs)
        self.fn = self.make_fn(model, inputs)

    def reset(self) -> None:
        super().reset()
        if self.model is not None and self.inputs is not None and self.inputs.mode == "stream":
            self._state = _to(zero_state(self.model, self.inputs.x.shape[0]), self.device)

    def run(self) -> Any:
        assert self.inputs is not None
        if self.inputs.mode == "batch":
            return self.fn(self._x)
        y, self._state = self.fn(self._next_step(), self._state)
        return y, self._state

    @property
    def _x(self) -> torch.Tensor:
        assert self.inputs is not None
        return self.inputs.x


class Eager(_TorchFn):
    name, label = "eager", "eager PyTorch"

    def make_fn(self, model, inputs):
        return model


class TorchCompile(_TorchFn):
    name, label = "compile", "torch.compile"
    note = "Dynamo graph-breaks at nn.RNN/GRU/LSTM (allow_rnn=False): the RNN runs eagerly"
    mode: str | None = None
    tolerance = 1e-4  # Inductor may reorder fp32 reductions of the head

    def make_fn(self, model, inputs):
        torch._dynamo.reset()  # one model per cache: avoids silent fall-back to eager
        fn = torch.compile(model, mode=self.mode, dynamic=False)
        return fn

    def close(self) -> None:
        self.fn = None
        torch._dynamo.reset()


class TorchCompileRO(TorchCompile):
    name, label = "compile-ro", "torch.compile reduce-overhead"
    mode = "reduce-overhead"


class SeqfuseCompile(_TorchFn):
    name, label = "seqfuse.compile", "seqfuse.compile (fused op)"
    peer = False
    note = "its fused op runs the native engine at its default of 1 thread at every count"

    def available(self):
        return True, ""  # seqfuse.compiler ships with the package

    def make_fn(self, model, inputs):
        torch._dynamo.reset()
        return importlib.import_module("seqfuse.compiler").compile(model)

    def close(self) -> None:
        self.fn = None
        torch._dynamo.reset()


class Accelerate(_TorchFn):
    """The model itself after ``seqfuse.accelerate(model)``: its RNN/GRU/LSTM and Cell
    modules on the native engine, everything else (conv, heads, decoder loops) in torch."""

    name, label = "accelerate", "seqfuse.accelerate"
    peer = False
    note = "the model's own forward, its recurrent modules swapped for native-backed ones"

    def make_fn(self, model, inputs):
        return importlib.import_module("seqfuse.accel").accelerate(model, threads=self.threads)

    def set_threads(self, n):
        super().set_threads(n)
        if self.model is not None and self.inputs is not None:
            self.fn = self.make_fn(self.model, self.inputs)


class TorchScript(_TorchFn):
    name, label = "torchscript", "TorchScript"
    note = "deprecated in torch, kept for LibTorch users"

    def make_fn(self, model, inputs):
        args = inputs.example_args(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn = seqfuse.export.to_torchscript(model, args)
        return fn.eval()


class _ArtifactCache:
    """Exported files keyed by the model's weights and the call signature, so batch 1 and
    batch 64 of one model share one export (the exports have a dynamic batch)."""

    def __init__(self) -> None:
        self._dir: tempfile.TemporaryDirectory | None = None
        self._paths: dict[str, Path] = {}

    def get(self, model: nn.Module, sig: str, suffix: str, build) -> Path:
        h = hashlib.sha1(sig.encode())
        h.update(repr(getattr(getattr(model, "config", None), "to_dict", dict)()).encode())
        for k, v in model.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        key = h.hexdigest()[:16]
        if key not in self._paths:
            if self._dir is None:
                self._dir = tempfile.TemporaryDirectory(prefix="seqfuse-bench-")
            path = Path(self._dir.name) / f"{key}{suffix}"
            self._paths[key] = Path(build(path) or path)
        return self._paths[key]


class AOTInductor(_TorchFn):
    name, label = "aoti", "AOTInductor (.pt2)"
    note = "seqfuse.export's package: dynamic batch, sequence length fixed at export"

    def __init__(self) -> None:
        super().__init__()
        self._cache = _ArtifactCache()

    def make_fn(self, model, inputs):
        if inputs.mode == "stream":
            raise BackendUnsupported(
                "seqfuse's .pt2 takes x only (zero initial state): no state in/out per call"
            )
        x = inputs.x
        if x.shape[0] == 1:  # torch.export specializes a batch of 1; the package's is dynamic
            x = torch.cat([x, x])

        def build(path: Path) -> Path:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return Path(seqfuse.export.to_aoti(model, path, (x,)))

        path = self._cache.get(model, f"aoti:{tuple(x.shape[1:])}", ".pt2", build)
        runner = torch._inductor.aoti_load_package(str(path))
        return lambda x: runner(x)

    def close(self) -> None:
        self.fn = None


# ONNX files shared by ONNX Runtime and OpenVINO (one export per model and signature)
_ONNX_FILES = _ArtifactCache()


def _flat(obj: Any) -> list[Any]:
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in _flat(o)]
    return [obj]


def _export_onnx(
    model: nn.Module, path: Path, args: tuple[Any, ...], exporter: str = "seqfuse"
) -> Path:
    """ONNX file of ``model`` through seqfuse.export.to_onnx (the verified file a user
    gets: initial states are optional inputs; it tries two exporters, seconds per model),
    or with ``exporter="torch"`` (``seqfuse bench --onnx-exporter torch``, the --quick
    default) torch's TorchScript-based exporter directly (under a second; same ORT speed on
    the seed models, and the harness validates the result either way)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "seqfuse":
            seqfuse.export.to_onnx(model, path, args)
            return path
        flat_in = _flat(args)
        names = ["x"] + [f"state{i}" for i in range(len(flat_in) - 1)]
        dyn = {n: {0: "batch"} if n == "x" else {1: "batch"} for n in names}
        torch.onnx.export(model, args, str(path), dynamo=False, input_names=names, dynamic_axes=dyn)
    return path


class _OnnxFile(Backend):
    """A runtime that runs the model's ONNX file (one export per model and mode, shared by
    every such backend): the prepared inputs as NumPy arrays, and streaming that feeds each
    call's output state into the next call. A subclass loads the file and runs one call."""

    tolerance = 1e-4  # ORT's MLAS and OpenVINO use their own tanh/sigmoid approximations
    exporter = "seqfuse"  # or "torch": see _export_onnx

    def _onnx_file(self, model, inputs, exporter: str) -> Path:
        exporter = inputs.onnx_exporter or exporter
        args = inputs.example_args(model)
        self._np_x = inputs.x.numpy()
        self._np_steps = [s.numpy() for s in inputs.steps]
        self._zero = [t.numpy() for t in _flat(args[1:])]
        return _ONNX_FILES.get(
            model,
            f"onnx:{inputs.mode}:{exporter}",
            ".onnx",
            lambda p: _export_onnx(model, p, args, exporter),
        )

    def _infer(self, x, states) -> Any:
        """One call of the runtime: outputs (y, then the states) for input x and states."""
        raise NotImplementedError

    def reset(self):
        super().reset()
        self._feed_state = [z.copy() for z in getattr(self, "_zero", [])]

    def run(self):
        assert self.inputs is not None
        if self.inputs.mode == "batch":
            return self._infer(self._np_x, [])
        step = self._np_steps[self._i % len(self._np_steps)]
        self._i += 1
        out = self._infer(step, self._feed_state)
        self._feed_state = list(out[1:])  # the state goes back in on the next call
        return out


class OnnxRuntime(_OnnxFile):
    name, label = "ort", "ONNX Runtime CPU"
    provider = "CPUExecutionProvider"

    def available(self):
        try:
            import onnxruntime as ort
        except ImportError as e:
            return False, f"onnxruntime not installed ({e})"
        if self.provider not in ort.get_available_providers():
            return False, f"{self.provider} not in this onnxruntime build"
        return True, ""

    def prepare(self, model, inputs):
        self.path = self._onnx_file(model, inputs, self.exporter)
        self.sess = None
        super().prepare(model, inputs)
        self.set_threads(self.threads)

    def set_threads(self, n):
        super().set_threads(n)
        self.sess = ort_session(self.path, n, self.provider)
        # initial states may be graph inputs with a zero default (an initializer):
        # ORT lists those apart from the required inputs
        self.in_names = [i.name for i in self.sess.get_inputs()] + [
            i.name for i in self.sess.get_overridable_initializers()
        ]
        self.reset()

    def _infer(self, x, states):
        feeds = {self.in_names[0]: x}
        if states:  # a batch call feeds x alone: nothing more on the timed path
            feeds.update(zip(self.in_names[1:], states))
        return self.sess.run(None, feeds)

    def close(self):
        self.sess = None


class OnnxRuntimeCUDA(OnnxRuntime):
    name, label = "ort-cuda", "ONNX Runtime CUDA EP"
    provider = "CUDAExecutionProvider"
    device = "cuda"

    def available(self):
        ok, why = _cuda_ok()
        return (ok, why) if not ok else super().available()


class OpenVINO(_OnnxFile):
    """OpenVINO's CPU plugin on the ONNX file the ORT backend runs (the same shared
    export), read by ``openvino.Core.read_model``; compiled per thread count."""

    name, label = "openvino", "OpenVINO CPU"
    # streaming always uses the "torch" exporter's file (see prepare)
    note = (
        "the ONNX file ONNX Runtime runs, compiled for CPU with INFERENCE_NUM_THREADS = the "
        "run's threads, INFERENCE_PRECISION_HINT f32 and the LATENCY hint; streaming uses "
        "torch.onnx's file, whose states are required inputs (seqfuse's folds the optional "
        "zero states into constants when OpenVINO reads it)"
    )

    def available(self):
        try:
            import openvino  # noqa: F401
        except ImportError as e:
            return False, f"openvino not installed (pip install openvino; {e})"
        return True, ""

    def prepare(self, model, inputs):
        import openvino as ov

        exporter = "torch" if inputs.mode == "stream" else self.exporter
        path = self._onnx_file(model, inputs, exporter)
        self._core = ov.Core()
        self._ov_model = self._core.read_model(str(path))
        n_in = len(self._ov_model.inputs)
        if inputs.mode == "stream" and n_in != 1 + len(self._zero):
            raise BackendUnsupported(f"the ONNX file has {n_in} inputs, not x and the states")
        super().prepare(model, inputs)
        self.set_threads(self.threads)

    def set_threads(self, n):
        super().set_threads(n)
        config = {
            "INFERENCE_NUM_THREADS": n,
            "INFERENCE_PRECISION_HINT": "f32",
            "PERFORMANCE_HINT": "LATENCY",
        }
        self._compiled = self._core.compile_model(self._ov_model, "CPU", config)
        self._req = self._compiled.create_infer_request()
        self.reset()

    def _infer(self, x, states):
        feeds = {0: x}
        if states:
            feeds.update((i + 1, s) for i, s in enumerate(states))
        return self._req.infer(feeds, share_inputs=True).to_tuple()

    def close(self):
        self._req = self._compiled = self._ov_model = None


class TorchInt8Dynamic(_TorchFn):
    """PyTorch dynamic int8 quantization (``torch.ao.quantization.quantize_dynamic`` on
    nn.LSTM, nn.GRU and nn.Linear): reduced precision, so it is timed and shown but never
    counted as a peer, and it is validated at its own, looser tolerance."""

    name, label = "torch-int8", "PyTorch dynamic int8"
    peer = False
    precision = "int8 dynamic"
    # measured on the seed and large models: up to 0.03 max abs (GRU(256,256), T=100)
    tolerance = 0.1
    note = (
        "REDUCED PRECISION, not an fp32 peer: torch.ao.quantization.quantize_dynamic (int8 "
        "weights of nn.LSTM/nn.GRU/nn.Linear, activations quantized per call), validated at "
        f"max abs err <= {tolerance:g}, never the fastest peer"
    )

    def make_fn(self, model, inputs):
        kinds = {nn.LSTM, nn.GRU, nn.Linear}
        if not any(isinstance(m, (nn.LSTM, nn.GRU)) for m in model.modules()):
            raise BackendUnsupported("quantize_dynamic has int8 kernels for LSTM and GRU only")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated for torchao
            q = torch.ao.quantization.quantize_dynamic(
                copy.deepcopy(model), kinds, dtype=torch.qint8
            )
        return q.eval()


def _native():
    return importlib.import_module("seqfuse.native")


def check_isa(isa: str) -> str:
    """``isa`` if it names a kernel set this build has and this CPU runs (or "auto");
    else ValueError with the choices."""
    if isa == "auto":
        return isa
    sets = dict(importlib.import_module("seqfuse._C").kernel_sets())
    if isa not in sets:
        raise ValueError(f"unknown kernel set {isa!r}; this build has auto, {', '.join(sets)}")
    if not sets[isa]:
        runs = ", ".join(n for n, ok in sets.items() if ok)
        raise ValueError(f"kernel set {isa!r} does not run on this CPU; it runs auto, {runs}")
    return isa


class Native(Backend):
    """seqfuse's fused C++ loop (seqfuse.native.from_module), threads set per model."""

    name, label = "native", "seqfuse native CPU"
    peer = False
    isa = "auto"  # the kernel set (seqfuse bench --isa NAME); each row records the one used

    def available(self):
        return True, ""  # the compiled core is always built (pip install .)

    def _convert(self, model: nn.Module, threads: int) -> Any:
        return _native().from_module(model, threads=threads, isa=self.isa)

    def describe(self):
        if self.device != "cpu":
            return {}
        nm = getattr(self, "nm", None)
        isa = getattr(nm, "isa", None)
        return {"isa": isa} if isinstance(isa, str) else {}

    def prepare(self, model, inputs):
        self.model, self.inputs = model, inputs
        self._kw: dict[str, Any] = {}
        self.set_threads(self.threads)
        if inputs.mode == "batch" and not inputs.need_state:
            self._kw = {"need_state": False}  # compute only what the head reads

    @property
    def _x(self):
        assert self.inputs is not None
        return self.inputs.x

    def set_threads(self, n):
        super().set_threads(n)
        assert self.model is not None
        # Converting is where the engine decides whether it supports a model: it raises
        # InvalidArgumentError for an unsupported module or option (the C++ Unsupported maps
        # to it; there is no separate Python class). Any other exception, and every error
        # while running, is a real failure and becomes an error row.
        try:
            self.nm = self._convert(self.model, n)
        except _native().InvalidArgumentError as e:
            raise BackendUnsupported(str(e)) from e
        self.reset()

    def reset(self):
        super().reset()
        if self.inputs is not None and self.inputs.mode == "stream" and hasattr(self, "nm"):
            self.sess = self.nm.stream(batch=self.inputs.x.shape[0])

    def run(self):
        assert self.inputs is not None
        if self.inputs.mode == "batch":
            return self.nm(self._x, **self._kw)
        return self.sess(self._next_step())


class _CudaMixin:
    device = "cuda"

    def available(self):
        return _cuda_ok()

    def sync(self):
        torch.cuda.synchronize()


class NativeCUDA(_CudaMixin, Native):
    """seqfuse's CUDA kernels (seqfuse.native.cuda.CudaNativeModel); inputs live on the GPU,
    work goes on torch's current stream, the harness synchronizes after each call."""

    name, label = "native-cuda", "seqfuse native CUDA"
    graph = False

    def available(self):
        ok, why = _cuda_ok()
        if not ok:
            return ok, why
        ok, why = Native.available(self)
        if not ok:
            return ok, why
        try:
            nc = importlib.import_module("seqfuse.native.cuda")
        except ImportError as e:
            return False, f"seqfuse.native.cuda not importable ({e})"
        why = nc.unavailable_reason()
        return (False, why) if why else (True, "")

    def _convert(self, model, threads):
        nc = importlib.import_module("seqfuse.native.cuda")
        return nc.CudaNativeModel(_native().from_module(model, threads=threads), device="cuda")

    def prepare(self, model, inputs):
        inputs = copy.copy(inputs)
        inputs.x = inputs.x.cuda()
        inputs.steps = [s.cuda() for s in inputs.steps]
        super().prepare(model, inputs)
        if self.graph and inputs.mode == "batch":
            if self.nm.module_info["kind"] == "linear":  # graph replay serves recurrent models
                raise BackendUnsupported("graphed() serves recurrent models")
            self._g = self.nm.graphed(inputs.x.shape[0], inputs.x.shape[1])

    def reset(self):
        Backend.reset(self)
        if self.inputs is not None and self.inputs.mode == "stream" and hasattr(self, "nm"):
            self.sess = self.nm.stream(batch=self.inputs.x.shape[0], graph=self.graph)

    def run(self):
        assert self.inputs is not None
        if self.inputs.mode == "batch":
            if self.graph:
                return self._g(self._x)
            return self.nm(self._x, **self._kw)
        return self.sess(self._next_step())


class NativeCUDAGraphs(NativeCUDA):
    name, label = "native-cuda-graphs", "seqfuse native CUDA, graph replay"
    graph = True


class EagerCUDA(_CudaMixin, _TorchFn):
    name, label = "eager-cuda", "eager PyTorch CUDA (cuDNN)"
    tolerance = 1e-4  # cuDNN's fp32 (TF32 off) differs from the CPU reference in the 6th digit

    def make_fn(self, model, inputs):
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        self._xc = inputs.x.cuda()
        self._stepsc = [s.cuda() for s in inputs.steps]
        return copy.deepcopy(model).cuda()

    @property
    def _x(self):
        return self._xc

    def _next_step(self):
        x = self._stepsc[self._i % len(self._stepsc)]
        self._i += 1
        return x


class CudaGraphs(EagerCUDA):
    """Eager CUDA captured once into a CUDA graph; a call copies the input in and replays.
    Streaming: the state copy-back is captured in the graph too."""

    name, label = "cuda-graphs", "CUDA graphs of eager"

    def make_fn(self, model, inputs):
        m = super().make_fn(model, inputs)
        stream = inputs.mode == "stream"
        self._in = (self._stepsc[0] if stream else self._xc).clone()
        if stream:
            self._st = _flat(_to(zero_state(model, inputs.x.shape[0]), "cuda"))

        def body():
            if not stream:
                return m(self._in)
            st = tuple(self._st) if len(self._st) == 2 else self._st[0]
            y, new = m(self._in, st)
            for dst, src in zip(self._st, _flat(new)):
                dst.copy_(src)
            return y, new

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                body()
        torch.cuda.current_stream().wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._out = body()
        return m

    def reset(self):
        super().reset()
        for t in getattr(self, "_st", []):
            t.zero_()

    def run(self):
        assert self.inputs is not None
        src = self._xc if self.inputs.mode == "batch" else self._next_step()
        self._in.copy_(src, non_blocking=True)
        self._graph.replay()
        return self._out


# name -> class, in table order
BACKENDS: dict[str, type[Backend]] = {
    cls.name: cls
    for cls in (
        Eager,
        TorchScript,
        TorchCompile,
        TorchCompileRO,
        AOTInductor,
        OnnxRuntime,
        OpenVINO,
        TorchInt8Dynamic,
        SeqfuseCompile,
        Accelerate,
        Native,
        EagerCUDA,
        CudaGraphs,
        OnnxRuntimeCUDA,
        NativeCUDA,
        NativeCUDAGraphs,
    )
}
# The default set: every backend but these two, which compile for 10-30 s per workload on
# 2 cores: opt in (or --backends all).
SLOW_BACKENDS = ("compile-ro", "aoti")
DEFAULT_BACKENDS = [n for n in BACKENDS if n not in SLOW_BACKENDS]


def make_backends(
    names: list[str], onnx_exporter: str = "seqfuse", isa: str = "auto"
) -> list[Backend]:
    """Backend objects by name; ``isa`` forces the native CPU rows' kernel set."""
    if onnx_exporter not in ("seqfuse", "torch"):
        raise ValueError(f"unknown ONNX exporter {onnx_exporter!r}; expected seqfuse or torch")
    check_isa(isa)
    out = []
    for n in names:
        if n not in BACKENDS:
            raise ValueError(f"unknown backend {n!r}; expected one of {', '.join(BACKENDS)}")
        b = BACKENDS[n]()
        if isinstance(b, (OnnxRuntime, OpenVINO)):
            b.exporter = onnx_exporter
        if isinstance(b, Native) and b.device == "cpu":
            b.isa = isa
        out.append(b)
    return out


def to_numpy_list(out: Any) -> list[np.ndarray]:
    """Flatten a backend's outputs (tensors, arrays, nested tuples; None dropped)."""
    res = []
    for o in _flat(out):
        if o is None:
            continue
        if isinstance(o, torch.Tensor):
            o = o.detach().cpu().numpy()
        res.append(np.asarray(o))
    return res


@contextlib.contextmanager
def torch_threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
