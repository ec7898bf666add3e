"""Every backend on every seed model (batch 1 and 64, and the Shakespeare streaming step),
grouped per workload. Outputs are checked against eager before timing (see conftest.py).

Run: ``pytest benchmarks/`` (``--benchmark-json out.json`` to keep the numbers).
`seqfuse bench` is the fuller report (ratios, targets, roofline, plots) over the same
preparation and validation.
"""

from __future__ import annotations

import pytest
import torch
from conftest import BACKEND_NAMES, THREADS, WORKLOADS

CASES = [(wl, b) for wl in WORKLOADS for b in BACKEND_NAMES]


@pytest.mark.parametrize("prepared", CASES, indirect=True, ids=[f"{wl.id}-{b}" for wl, b in CASES])
def test_latency(benchmark, prepared):
    wl, backend = prepared
    benchmark.group = f"{wl.id} ({THREADS} thread{'s' if THREADS > 1 else ''})"
    benchmark.extra_info.update(
        backend=backend.name, workload=wl.id, threads=THREADS, batch=wl.batch, T=wl.seq_len
    )

    def call():
        backend.run()
        backend.sync()

    with torch.inference_mode():
        benchmark.pedantic(call, warmup_rounds=5, rounds=max(20, 2000 // wl.batch), iterations=1)
