"""seqfuse.bench: every way to run a recurrent model, timed side by side, honestly.

``run_benchmarks(workloads, backends, threads=...)`` validates each backend against eager
PyTorch, times it and returns a results dict (schema in docs/BENCHMARKS.md);
``format_table``, ``write_json``, ``plot_summary``/``plot_grid`` and ``update_readme``
render it. ``bench_model`` times one model of your own. ``seqfuse bench`` is the CLI.
Checked by tests/test_bench.py; benchmarks/ reuses it under pytest-benchmark.
"""

from __future__ import annotations

from typing import Any

from seqfuse.bench.backends import BACKENDS, DEFAULT_BACKENDS, Backend, make_backends
from seqfuse.bench.harness import SCHEMA_VERSION, run_benchmarks
from seqfuse.bench.plots import plot_grid, plot_summary
from seqfuse.bench.report import (
    check_targets,
    format_table,
    markdown_section,
    update_readme,
    write_json,
)
from seqfuse.bench.workloads import Workload, grid_workloads, seed_workloads


def bench_model(
    model: Any,
    name: str = "model",
    batches: tuple[int, ...] = (1,),
    seq_len: int = 16,
    backends: list[str] | None = None,
    threads: tuple[int, ...] = (1,),
    budget_s: float = 0.2,
    progress: bool = False,
) -> dict[str, Any]:
    """Benchmark a seqfuse model you built or trained (e.g. the demo's) on ``backends``
    (default: eager, TorchScript, ONNX Runtime, native) at each batch size."""
    import copy

    from seqfuse.models import config_of

    cfg = config_of(model)
    workloads = []
    for b in batches:
        w = Workload(f"{name}/b{b}", name, cfg, batch=b, seq_len=seq_len)
        frozen = copy.deepcopy(model).eval()
        w.build_model = lambda frozen=frozen: frozen  # type: ignore[method-assign]
        workloads.append(w)
    return run_benchmarks(
        workloads,
        backends or ["eager", "torchscript", "ort", "native"],
        threads=threads,
        budget_s=budget_s,
        progress=progress,
    )


__all__ = [
    "BACKENDS",
    "DEFAULT_BACKENDS",
    "SCHEMA_VERSION",
    "Backend",
    "Workload",
    "bench_model",
    "check_targets",
    "format_table",
    "grid_workloads",
    "make_backends",
    "markdown_section",
    "plot_grid",
    "plot_summary",
    "run_benchmarks",
    "seed_workloads",
    "update_readme",
    "write_json",
]
