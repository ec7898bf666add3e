"""Deprecated alias of seqfuse.native.cuda (the CUDA backend) and seqfuse.bench.cuda_check
(its self-check and per-step timer), kept so that code written against the old module runs.

Importing it warns once (DeprecationWarning); ``python -m seqfuse.native_cuda`` still runs
the self-check. Checked by tests/test_native_api.py (test_native_cuda_alias_still_works).
"""

from __future__ import annotations

import warnings

from seqfuse.bench.cuda_check import main, time_per_step
from seqfuse.native.cuda import (
    CudaNativeModel,
    CudaStreamSession,
    GraphedForward,
    available,
    unavailable_reason,
)

__all__ = [
    "CudaNativeModel",
    "CudaStreamSession",
    "GraphedForward",
    "available",
    "main",
    "time_per_step",
    "unavailable_reason",
]

warnings.warn(
    "seqfuse.native_cuda is deprecated: use seqfuse.native.cuda (or "
    "seqfuse.native.from_module(m, device='cuda')); the self-check is "
    "python -m seqfuse.bench.cuda_check",
    DeprecationWarning,
    stacklevel=2,
)

if __name__ == "__main__":
    raise SystemExit(main())
