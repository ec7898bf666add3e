"""seqfuse.native: run recurrent models through seqfuse's fused C++ sequence loop.

``from_module(m)`` takes a raw ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` or any seqfuse model
(``SeqModel``, ``LinearRegression``) and returns a :class:`NativeModel`, a drop-in for
inference: the same positional arguments and the same return structure and shapes as
``m.forward``, plus ``lengths=`` (pack_padded_sequence semantics), ``threads=`` and
``need_state=False`` (compute only what the head reads; the state comes back as ``None``).
``device="cuda"`` gives the CUDA backend's model instead (seqfuse.native.cuda), with the
same call contract on CUDA tensors.

Inputs may be NumPy arrays or torch CPU tensors; outputs are of the same kind. Weights are
copied and packed once, at construction. ``save(path)`` / :func:`load` use a safetensors
weight file with the config in its metadata (docs/FORMAT.md). ``stream(batch)`` gives a
:class:`StreamSession` that carries the state between calls (real-time prediction,
character-by-character generation).

``from_onnx(path)`` runs an ONNX file's RNN/GRU/LSTM graph (full ONNX semantics, layout 1
included) and returns a model with ``run(output_names, feeds)`` like ONNX Runtime's session
(seqfuse.native.onnx).

The package's rooms: ``contract`` (argument checks, messages and output shapes, written
once for every backend), ``convert`` (module <-> engine config and weights), ``files``
(weight files), ``cpu`` and ``cuda`` (one adapter per device), ``onnx`` (ONNX in). See
docs/ARCHITECTURE.md.

Checked by tests/test_native.py (parity with eager PyTorch over a randomized grid, every
kernel set), tests/test_native_api.py (API, streaming, bad inputs),
tests/test_native_format.py (weight files), tests/test_native_cuda.py (on a GPU) and
tests/test_onnx_import.py (ONNX in, against ONNX Runtime).
"""

from __future__ import annotations

import json
import os
from typing import Any

from torch import nn

from seqfuse import _C
from seqfuse.native.contract import (
    MAX_THREADS,
    InvalidArgumentError,
    NativeTypeError,
    WeightFileError,
)
from seqfuse.native.convert import engine_to_module, module_to_engine
from seqfuse.native.cpu import NativeModel, StreamSession
from seqfuse.native.files import FORMAT, VERSION, read, save

__all__ = [
    "FORMAT",
    "MAX_THREADS",
    "VERSION",
    "InvalidArgumentError",
    "NativeModel",
    "NativeTypeError",
    "StreamSession",
    "WeightFileError",
    "from_module",
    "from_onnx",
    "load",
    "save",
    "to_module",
]


def from_module(m: nn.Module, threads: int = 1, isa: str = "auto", device: Any = "cpu") -> Any:
    """Convert a module (weights are copied and packed now). ``isa`` forces a kernel set
    ("auto" or a name from ``seqfuse._C.kernel_sets()``: avx512, avx2, portable, reference on
    x86); the env var SEQFUSE_ISA does the same for "auto".
    ``device="cuda"`` returns the CUDA backend's model (seqfuse.native.cuda) instead."""
    if not isinstance(m, nn.Module):
        raise NativeTypeError(f"from_module expects an nn.Module, got {type(m).__name__}")
    cfg, weights, info = module_to_engine(m)
    core = _C.Model(json.dumps(cfg), weights, isa)
    return _on_device(NativeModel(core, info, threads=threads), device)


def from_onnx(src: Any, threads: int = 1, isa: str = "auto") -> Any:
    """Load an ONNX model (a path or an onnx.ModelProto) whose graph is RNN/GRU/LSTM nodes
    and their glue; returns a seqfuse.native.onnx.OnnxModel (``run(output_names, feeds)``,
    ``get_inputs()``, ``get_outputs()``, a plain call). Anything else is refused at load."""
    from seqfuse.native.onnx import from_onnx as _from_onnx

    return _from_onnx(src, threads=threads, isa=isa)


def load(path: str | os.PathLike, threads: int = 1, isa: str = "auto", device: Any = "cpu") -> Any:
    """Load a weight file written by :func:`save` (validated fully before use)."""
    core, info = read(path, isa)
    return _on_device(NativeModel(core, info, threads=threads), device)


def to_module(model: NativeModel) -> nn.Module:
    """Rebuild the PyTorch module a NativeModel came from (for checks and round trips)."""
    return engine_to_module(model.config, model.weights(), model.module_info)


def _on_device(nm: NativeModel, device: Any) -> Any:
    """The backend seam: CPU models stay here; a CUDA device hands the same weights to the
    CUDA backend (seqfuse.native.cuda.CudaNativeModel, same call contract)."""
    dev = str(device)
    if dev == "cpu":
        return nm
    if dev.startswith("cuda"):
        from seqfuse.native.cuda import CudaNativeModel

        return CudaNativeModel(nm, device=dev)
    raise NativeTypeError(f"device must be 'cpu' or 'cuda[:N]', got {dev!r}")
