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
from seqfuse.bench.workloads import Workload, grid_workloads, large_workloads, seed_workloads

DEMO_BACKENDS = ["eager", "torchscript", "ort", "seqfuse.compile", "native"]


def model_workloads(
    model: Any, name: str = "model", batches: tuple[int, ...] = (1,), seq_len: int = 16
) -> list[Workload]:
    """Workloads that run ``model`` itself (its trained weights) at each batch size."""
    import copy

    from seqfuse.models import config_of

    cfg = config_of(model)
    frozen = copy.deepcopy(model).eval()
    out = []
    for b in batches:
        w = Workload(f"{name}/b{b}", name, cfg, batch=b, seq_len=seq_len)
        w.build_model = lambda frozen=frozen: frozen  # type: ignore[method-assign]
        out.append(w)
    return out


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
    """Benchmark a seqfuse model you built or trained on ``backends`` (default: eager,
    TorchScript, ONNX Runtime, seqfuse.compile, native) at each batch size."""
    return run_benchmarks(
        model_workloads(model, name, batches, seq_len),
        backends or DEMO_BACKENDS,
        threads=threads,
        budget_s=budget_s,
        progress=progress,
    )


def demo_benchmark(
    checkpoints: dict[str, Any], out_dir: Any, progress: bool = True, budget_s: float = 0.1
) -> dict[str, Any]:
    """`seqfuse demo`'s last step: time the trained checkpoints ``{task: path}`` at batch 1
    and 64 on the main CPU backends (1 thread), print the table, write JSON and PNG."""
    from pathlib import Path

    from seqfuse.bench.workloads import SEED_MODELS
    from seqfuse.train.checkpoint import model_from_checkpoint

    workloads: list[Workload] = []
    for task, path in checkpoints.items():
        model, _ = model_from_checkpoint(path)
        workloads += model_workloads(model, task, (1, 64), SEED_MODELS.get(task, 16))
    res = run_benchmarks(
        workloads,
        DEMO_BACKENDS,
        threads=(1,),
        budget_s=budget_s,
        progress=progress,
        command="seqfuse demo",
    )
    out = Path(out_dir)
    print(format_table(res, show_skipped=True))
    write_json(res, out / "bench.json")
    png = plot_summary(res, out / "bench.png")
    print(f"wrote {out / 'bench.json'}" + (f" and {png}" if png else ""))
    return res


__all__ = [
    "BACKENDS",
    "DEFAULT_BACKENDS",
    "SCHEMA_VERSION",
    "Backend",
    "Workload",
    "bench_model",
    "demo_benchmark",
    "model_workloads",
    "check_targets",
    "format_table",
    "grid_workloads",
    "large_workloads",
    "make_backends",
    "markdown_section",
    "plot_grid",
    "plot_summary",
    "run_benchmarks",
    "seed_workloads",
    "update_readme",
    "write_json",
]
