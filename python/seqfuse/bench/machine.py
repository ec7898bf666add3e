"""The machine's roofline, measured at the start of a benchmark run (under a second).

Per core, on one thread, best of repeated calls:

- the FMA peak: fp32 FLOP/s of the run's kernel set's FMA probe (seqfuse._C.fma_probe:
  independent vector multiply-adds in registers, no memory traffic), clock boost and SIMD
  width included. A library GEMM is no stand-in: torch.mm reached 111 GFLOP/s on a Zen 5
  core whose FMA pipes do 266, so the native loop read as 205% efficient against it;
- fp32 FLOP/s of a square GEMM (torch.mm, 256 and 384, operands in L2), kept for context;
- read bandwidth of the L2 and L3 caches: the same kernel set's read probe
  (seqfuse._C.read_probe: vector loads summed into 8 independent chains, as the batch-1
  matrix-vector loops read their weights) over 64-byte aligned arrays of several sizes
  within that level, each repeated until one call takes a millisecond; the median counts
  (``gbps_range`` keeps the least and the most). torch's ``sum`` and ``dot``, which stood
  in before, read L3 at 94-99 GB/s in one run and 131 in the next on a Zen 5 core; they
  remain only for the reference, which has no vector loop.

The sizes come from the cache sizes Linux reports (seqfuse.bench.env). A native row can still
read a little above 100% of a level when part of its weights sit in the level above
(docs/BENCHMARKS.md).
Checked by tests/test_bench.py (fields present, values positive, efficiencies sane).
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from seqfuse.bench.backends import torch_threads
from seqfuse.bench.env import cache_bytes

GEMM_SIZES = (256, 384)
PROBE_BUDGET_S = 0.04  # per measured size and op
PROBE_CALL_S = 1e-3  # a probe's reps are doubled until one call takes this long
# Array sizes of the read probe, in L2 sizes: the median over them is the level's bandwidth.
# One size is not enough: a Zen 5 core read arrays of 0.5-0.625 of its L2 at 260 GB/s (not
# always the same ones) and every other size from 1/8 to 7/8 at 160-220.
L2_FRACTIONS = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875)
L3_MULTIPLES = (2, 3, 4, 6, 8)  # within half of L3


def _best_s(fn: Callable[[], Any], budget_s: float = PROBE_BUDGET_S, min_reps: int = 10) -> float:
    fn()
    best = float("inf")
    t_end = time.perf_counter() + budget_s
    n = 0
    while n < min_reps or (time.perf_counter() < t_end and n < 5000):
        t0 = time.perf_counter_ns()
        fn()
        best = min(best, (time.perf_counter_ns() - t0) * 1e-9)
        n += 1
    return best


def _reps_lasting(call: Callable[[int], Any], reps: int, most: int) -> int:
    """The reps, doubled from ``reps`` up to ``most``, at which one ``call(reps)`` first takes
    PROBE_CALL_S: long enough that the call's fixed cost drops out of a probe's timing."""
    while reps < most:
        t0 = time.perf_counter_ns()
        call(reps)
        if (time.perf_counter_ns() - t0) * 1e-9 >= PROBE_CALL_S:
            break
        reps *= 2
    return reps


def gemm_gflops() -> float:
    """Best fp32 GFLOP/s of torch.mm on one thread over GEMM_SIZES."""
    out = 0.0
    for n in GEMM_SIZES:
        a, b, c = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
        t = _best_s(lambda a=a, b=b, c=c: torch.mm(a, b, out=c))
        out = max(out, 2 * n**3 / t / 1e9)
    return out


def fma_gflops(isa: str = "auto") -> tuple[str, float]:
    """(kernel set, best fp32 GFLOP/s of its FMA probe on one thread); ``isa`` as in
    ``seqfuse bench --isa`` ("auto": the kernel set native picks). 0 for the scalar
    reference, which has no vector loop to time."""
    from seqfuse import _C

    name, per_rep = _C.fma_probe(isa, 1)
    if not per_rep:
        return name, 0.0
    reps = _reps_lasting(lambda n: _C.fma_probe(isa, n), 1 << 12, 1 << 30)
    return name, per_rep * reps / _best_s(lambda: _C.fma_probe(isa, reps)) / 1e9


def aligned_floats(nbytes: int) -> np.ndarray:
    """A float32 array of about ``nbytes`` bytes (whole 64-byte lines), starting on a 64-byte
    boundary, filled with values in [0, 1)."""
    n = max(16, nbytes // 64 * 16)
    raw = np.random.default_rng(0).random(n + 16, dtype=np.float32)
    off = (-raw.ctypes.data % 64) // 4
    return raw[off : off + n]


def has_read_probe(isa: str) -> bool:
    """Whether ``isa``'s kernel set has a vector read probe (the scalar reference has none)."""
    from seqfuse import _C

    return _C.read_probe(isa, aligned_floats(64), 1)[1] is not None


def probe_read_gbps(isa: str, nbytes: int) -> float:
    """Best read bandwidth (GB/s) of ``isa``'s read probe over an aligned array of ``nbytes``
    (has_read_probe(isa) must hold)."""
    from seqfuse import _C

    a = aligned_floats(nbytes)
    reps = _reps_lasting(lambda n: _C.read_probe(isa, a, n), 1, 1 << 20)
    return a.nbytes * reps / _best_s(lambda: _C.read_probe(isa, a, reps)) / 1e9


def torch_read_gbps(small: int, large: int) -> float:
    """Read bandwidth (GB/s) between two array sizes in bytes by torch's reductions: (large -
    small) bytes over the extra time, best of torch.sum and torch.dot; the plain large/time
    when noise makes the difference meaningless. The reference's stand-in."""
    best = 0.0
    a1, a2 = torch.rand(max(1, small // 4)), torch.rand(max(2, large // 4))
    for op in (torch.sum, lambda a: torch.dot(a, a)):
        t1 = _best_s(lambda op=op: op(a1))
        t2 = _best_s(lambda op=op: op(a2))
        plain = large / t2 / 1e9
        slope = (large - small) / (t2 - t1) / 1e9 if t2 > t1 else float("inf")
        best = max(best, slope if plain <= slope <= 2 * plain else plain)
    return best


@functools.lru_cache(maxsize=4)
def measure_peaks(isa: str = "auto") -> dict[str, Any]:
    """{"gflops_per_core", "fma_kernel_set", "gflops_source", "gemm_gflops_per_core",
    "gbps_per_core": {"L2", "L3"}, "gbps_source", "gbps_range", "cache_bytes", "probe_s"},
    measured once per process and kernel set on one thread; the FMA peak and read bandwidths
    are ``isa``'s probes (the kernel set of the run's native rows), torch's for the
    reference."""
    t0 = time.perf_counter()
    caches = cache_bytes()
    l1 = caches.get("L1d", 32 << 10)
    l2 = caches.get("L2", 1 << 20)
    l3 = caches.get("L3", 16 * l2)
    with torch_threads(1), torch.inference_mode():
        kernel_set, fma = fma_gflops(isa)
        gemm = gemm_gflops()
        # L2 sizes past twice L1d (the smallest would sit in L1 beside a 256 KiB L2); L3
        # sizes past twice L2 and within half of L3 (fewer sizes when L3 is small)
        sizes = {
            "L2": sorted({int(max(2 * l1, f * l2)) for f in L2_FRACTIONS}),
            "L3": sorted({int(max(2 * l2, min(f * l2, l3 // 2))) for f in L3_MULTIPLES}),
        }
        if has_read_probe(isa):
            runs = {level: [probe_read_gbps(isa, n) for n in ns] for level, ns in sizes.items()}
            bw = {level: statistics.median(v) for level, v in runs.items()}
            spread = {level: [round(min(v), 1), round(max(v), 1)] for level, v in runs.items()}
            read_source = f"the {kernel_set} kernel set's read probe, median over array sizes"
        else:  # the reference: no vector loop
            bw = {
                "L2": torch_read_gbps(max(4 * l1, l2 // 8), int(0.6 * l2)),
                "L3": torch_read_gbps(2 * l2, max(4 * l2, min(8 * l2, l3 // 2))),
            }
            spread = {}
            read_source = f"torch sum/dot (the {kernel_set} kernel set has no vector read probe)"
    return {
        "gflops_per_core": round(fma or gemm, 1),
        "fma_kernel_set": kernel_set,
        "gflops_source": (
            f"the {kernel_set} kernel set's fp32 FMA probe"
            if fma
            else f"torch.mm (the {kernel_set} kernel set has no vector FMA probe)"
        ),
        "gemm_gflops_per_core": round(gemm, 1),
        "gbps_per_core": {k: round(v, 1) for k, v in bw.items()},
        "gbps_source": read_source,
        "gbps_range": spread,
        "cache_bytes": {"L1d": l1, "L2": l2, "L3": l3},
        "probe_s": round(time.perf_counter() - t0, 2),
    }
