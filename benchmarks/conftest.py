"""pytest-benchmark suite settings: which backends and thread count to time.

Environment: SEQFUSE_BENCH_BACKENDS (comma-separated, default below), SEQFUSE_BENCH_THREADS
(default 1), SEQFUSE_BENCH_MODELS (default: every seed model, shakespeare as its streaming
step). Preparation and validation are seqfuse.bench's own: a backend whose outputs differ
from eager PyTorch fails its test instead of being timed.
"""

from __future__ import annotations

import os

import pytest
import torch
from seqfuse.bench.backends import BACKENDS, DEFAULT_BACKENDS, BackendUnsupported, make_backends
from seqfuse.bench.harness import reference_outputs, validate
from seqfuse.bench.workloads import seed_workloads

DEFAULT = ",".join(DEFAULT_BACKENDS)
BACKEND_NAMES = [b for b in os.environ.get("SEQFUSE_BENCH_BACKENDS", DEFAULT).split(",") if b]
THREADS = int(os.environ.get("SEQFUSE_BENCH_THREADS", "1"))
_models = os.environ.get("SEQFUSE_BENCH_MODELS")
WORKLOADS = seed_workloads(_models.split(",") if _models else None)

for _b in BACKEND_NAMES:
    if _b not in BACKENDS:
        raise pytest.UsageError(f"SEQFUSE_BENCH_BACKENDS: unknown backend {_b!r}")

_models_cache: dict[str, tuple] = {}


def workload_model(wl):
    """One model, input set and eager reference per workload, shared by its backends."""
    if wl.id not in _models_cache:
        model, inputs = wl.build_model(), wl.make_inputs()
        with torch.inference_mode():
            ref = reference_outputs(model, wl, inputs)
        _models_cache[wl.id] = (model, inputs, ref)
    return _models_cache[wl.id]


@pytest.fixture
def prepared(request):
    """A backend prepared for the workload, at THREADS threads, validated against eager."""
    wl, name = request.param
    (backend,) = make_backends([name])
    ok, why = backend.available()
    if not ok:
        pytest.skip(f"{name}: {why}")
    model, inputs, ref = workload_model(wl)
    old = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        with torch.inference_mode():
            backend.threads = THREADS
            try:
                backend.prepare(model, inputs)
            except BackendUnsupported as e:
                pytest.skip(f"{name}: unsupported: {e}")
            err, _ = validate(backend, ref)
        assert err <= backend.tolerance, (
            f"{name} differs from eager on {wl.id}: max abs err {err:.3g} > {backend.tolerance:g}"
        )
        yield wl, backend
    finally:
        backend.close()
        torch.set_num_threads(old)
