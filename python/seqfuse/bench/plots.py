"""PNG plots of a results dict (matplotlib, Agg backend, no display needed).

``plot_summary``: seed and large models, each backend's median latency over eager's (log scale), one
panel per thread count. ``plot_grid``: latency against batch size, sequence length and
hidden size per backend (log-log), one row per cell type. Checked by tests/test_bench.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seqfuse.bench.report import backend_columns


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _ok(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in results["results"] if r["status"] == "ok"]


def _backends(results: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    return backend_columns(results, {r["backend"] for r in rows})


def plot_summary(results: dict[str, Any], path: str | Path) -> Path | None:
    plt = _plt()
    seed = [w["id"] for w in results["workloads"] if w["group"] in ("seed", "large")]
    rows = [r for r in _ok(results) if r["workload"] in seed and r.get("ratio_to_eager")]
    if not rows:
        return None
    threads = results["settings"]["threads"]
    backends = [b for b in _backends(results, rows) if b != "eager"]  # eager is the 1.0 line
    fig, axes = plt.subplots(
        len(threads), 1, figsize=(max(8, 1.1 * len(seed) + 3), 3.8 * len(threads)), squeeze=False
    )
    width = 0.8 / max(1, len(backends))
    cmap = plt.get_cmap("tab20")
    for ax, th in zip(axes[:, 0], threads):
        for k, b in enumerate(backends):
            xs, ys = [], []
            for i, wid in enumerate(seed):
                r = next(
                    (
                        r
                        for r in rows
                        if r["workload"] == wid and r["backend"] == b and r["threads"] == th
                    ),
                    None,
                )
                if r is not None:
                    xs.append(i + (k - (len(backends) - 1) / 2) * width)
                    ys.append(r["ratio_to_eager"])
            ax.bar(xs, ys, width, label=b, color=cmap(k % 20))
        ax.axhline(1.0, color="k", lw=0.8, label="eager" if th == threads[0] else None)
        ax.set_yscale("log")
        ax.set_xticks(range(len(seed)))
        ax.set_xticklabels(seed, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("median latency / eager (log)")
        cpu = results["environment"]["cpu"]
        ax.set_title(f"seed models on {cpu}, {th} thread(s): lower is faster", fontsize=10)
        ax.grid(axis="y", which="both", alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, ncol=min(8, len(labels)), loc="upper center")
    fig.tight_layout(rect=(0, 0, 1, 0.92 if len(threads) == 1 else 0.955))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


SWEEPS = (("batch", "batch", "batch size"), ("seq", "seq_len", "sequence length"),
          ("hidden", "hidden", "hidden size"))  # fmt: skip


def plot_grid(results: dict[str, Any], path: str | Path) -> Path | None:
    plt = _plt()
    grid = [w for w in results["workloads"] if w["group"] == "grid"]
    if not grid:
        return None
    rows = _ok(results)
    cells = sorted({w["cell"] for w in grid})
    th = results["settings"]["threads"][0]
    full = any(w["sweep"] == "full" for w in grid)
    fig, axes = plt.subplots(len(cells), 3, figsize=(13, 3.4 * len(cells)), squeeze=False)
    backends = _backends(results, [r for r in rows if r["workload"].startswith("grid/")])
    cmap = plt.get_cmap("tab20")
    for i, cell in enumerate(cells):
        for j, (sweep, key, label) in enumerate(SWEEPS):
            ax = axes[i, j]
            ws = [w for w in grid if w["cell"] == cell and (full or sweep in w["sweep"])]
            if full:  # a full grid: slice it through the smallest values of the other axes
                others = [k for _, k, _ in SWEEPS if k != key]
                lo = {k: min(w[k] for w in ws) for k in others}
                ws = [w for w in ws if all(w[k] == lo[k] for k in others)]
            for k, b in enumerate(backends):
                pts = sorted(
                    (w[key], r["median_us"])
                    for w in ws
                    for r in rows
                    if r["workload"] == w["id"] and r["backend"] == b and r["threads"] == th
                )
                if pts:
                    ax.plot(*zip(*pts), marker="o", ms=3, label=b, color=cmap(k % 20))
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel(label)
            ax.set_ylabel("median latency (µs)")
            fixed = ", ".join(f"{k2}={ws[0][k2]}" for _, k2, _ in SWEEPS if k2 != key and ws)
            ax.set_title(f"{cell}: {fixed}", fontsize=9)
            ax.grid(which="both", alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"{results['environment']['cpu']}, {th} thread(s)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
