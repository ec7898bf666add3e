"""The text tensor format of the C++ apps in export/ (common/tensor_text.hpp), in Python.

One or more tensors, each a header line ``tensor <name> <dtype> <ndim> <dims...>`` and then
its values row-major, whitespace-separated; ``#`` starts a comment line. dtype is float32
or int64. Floats are written with 9 significant digits, which round-trips fp32 exactly.
Checked by tests/test_cxx_apps.py (round trip, and as the apps' input/output).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

DTYPES = {"float32": np.float32, "int64": np.int64}


def format_tensors(tensors: dict[str, torch.Tensor | np.ndarray]) -> str:
    """Tensors by name -> text (float tensors as float32, integer tensors as int64)."""
    parts = []
    for name, t in tensors.items():
        a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
        if np.issubdtype(a.dtype, np.integer):
            a, dtype, fmt = a.astype(np.int64), "int64", "%d"
        else:
            a, dtype, fmt = a.astype(np.float32), "float32", "%.9g"
        parts.append(f"tensor {name} {dtype} {a.ndim} {' '.join(map(str, a.shape))}".rstrip())
        flat = a.reshape(-1)
        for k in range(0, flat.size, 16):
            parts.append(" ".join(fmt % v for v in flat[k : k + 16]))
    return "\n".join(parts) + "\n"


def write_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor | np.ndarray]) -> Path:
    path = Path(path)
    path.write_text(format_tensors(tensors))
    return path


def parse_tensors(text: str) -> dict[str, torch.Tensor]:
    """Text -> tensors by name; ValueError naming the problem for malformed text."""
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    words = " ".join(lines).split()
    out: dict[str, torch.Tensor] = {}
    k = 0
    while k < len(words):
        if words[k] != "tensor" or k + 3 >= len(words):
            raise ValueError(f"expected 'tensor <name> <dtype> <ndim> <dims...>' at word {k}")
        name, dtype, ndim = words[k + 1], words[k + 2], int(words[k + 3])
        if dtype not in DTYPES:
            raise ValueError(f"tensor {name}: dtype must be float32 or int64, got {dtype}")
        shape = [int(w) for w in words[k + 4 : k + 4 + ndim]]
        n = int(np.prod(shape)) if shape else 1
        start = k + 4 + ndim
        vals = words[start : start + n]
        if len(vals) != n:
            raise ValueError(f"tensor {name}: expected {n} values, got {len(vals)}")
        a = np.array(vals, dtype=np.float64 if dtype == "float32" else np.int64)
        out[name] = torch.from_numpy(a.astype(DTYPES[dtype]).reshape(shape))
        k = start + n
    return out
