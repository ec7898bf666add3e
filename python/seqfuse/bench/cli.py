"""`seqfuse bench`: time every backend on the seed models (and optionally the large group and
the grid), print the table, the roofline and the native engine's targets
(docs/BENCHMARKS.md), write JSON and PNG, optionally rewrite the README's results section.
Checked by tests/test_bench.py (--quick runs on tiny selections, --isa, the large group).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from pathlib import Path

from seqfuse.bench import onnx_file
from seqfuse.bench.backends import BACKENDS, DEFAULT_BACKENDS, check_isa
from seqfuse.bench.workloads import (
    ARCH_BATCHES,
    ARCH_MODELS,
    GRID_BATCHES,
    GRID_CELLS,
    GRID_HIDDENS,
    GRID_SEQS,
    LARGE_BATCHES,
    LARGE_MODELS,
    SEED_BATCHES,
    SEED_MODELS,
    arch_workloads,
    grid_workloads,
    large_workloads,
    seed_workloads,
)
from seqfuse.errors import SeqfuseError

QUICK_BACKENDS = ["eager", "torchscript", "ort", "seqfuse.compile", "native"]
QUICK_MODELS = ["sine", "names", "shakespeare-stream"]


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _ints(s: str) -> tuple[int, ...]:
    try:
        v = tuple(int(p) for p in s.split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None
    if not v or min(v) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {s!r}")
    return v


def _names(s: str) -> list[str]:
    return [p.strip() for p in s.split(",") if p.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = (
        "examples:\n"
        "  seqfuse bench --quick                         # seconds: a demo of the method\n"
        "  seqfuse bench                                 # seed models, batch 1 and 64\n"
        "  seqfuse bench --backends all --png docs/bench.png --json docs/bench.json \\\n"
        "      --update-readme README.md                 # what the README shows\n"
        "  seqfuse bench --models none --grid sweep      # latency vs batch / length / size\n"
        "  seqfuse bench --models large --backends eager,ort,openvino,native\n"
        "                                                # LSTM(256,512), GRU(256,256)\n"
        "  seqfuse bench --quick --isa avx2              # native rows on the AVX2 kernels\n"
        "  seqfuse bench --onnx model.onnx --batches 1,8 # native vs ORT on your ONNX file\n"
        f"backends: {', '.join(BACKENDS)}\n"
        f"models: {', '.join(SEED_MODELS)}, shakespeare-stream, large "
        f"({', '.join(LARGE_MODELS)}), or none"
    )
    g = p.add_argument_group("what to run")
    g.add_argument(
        "--backends",
        default=None,
        help="comma-separated backends, 'default' or 'all' (default: "
        + ",".join(DEFAULT_BACKENDS)
        + ")",
    )
    g.add_argument(
        "--models",
        default=None,
        help="comma-separated seed models, 'all' (the seed models, the shakespeare model as "
        "its streaming step), 'large' (LSTM(256,512) T=50 and GRU(256,256) T=100 at batch "
        f"1, 8 and 64; minutes on 2 cores; or one of {', '.join(LARGE_MODELS)}), 'arch' "
        f"(whole models around RNNs, batch 1: {', '.join(ARCH_MODELS)}) or 'none' "
        "(default: all)",
    )
    g.add_argument(
        "--batches",
        type=_ints,
        default=None,
        help="batch sizes (default: 1,64 for the seed models, 1,8,64 for the large group)",
    )
    g.add_argument(
        "--grid",
        choices=("none", "sweep", "full"),
        default="none",
        help="grid workloads: 'sweep' varies batch, length and hidden size one at a time "
        "around B=1 T=128 H=128; 'full' is their product (hours) (default: %(default)s)",
    )
    g.add_argument(
        "--grid-backends",
        default=None,
        help="backends for the grid workloads (default: those of --backends); the grid "
        "runs at the first --threads count only",
    )
    g.add_argument("--grid-cells", type=_names, default=list(GRID_CELLS), help="rnn_tanh,gru,lstm")
    g.add_argument("--grid-batches", type=_ints, default=GRID_BATCHES, help="1,8,64,256")
    g.add_argument("--grid-seqs", type=_ints, default=GRID_SEQS, help="16,128,1024")
    g.add_argument("--grid-hiddens", type=_ints, default=GRID_HIDDENS, help="32,...,1024")
    g.add_argument(
        "--threads",
        type=_ints,
        default=None,
        help="thread counts, each applied to every backend (default: 1 and all usable cores)",
    )
    onnx_file.add_arguments(g)
    m = p.add_argument_group("method")
    m.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds of timed calls per backend, workload and thread count (default 0.5)",
    )
    m.add_argument("--warmup", type=int, default=5, help="warm-up calls (default 5)")
    m.add_argument("--min-reps", type=int, default=10, help="fewest timed calls (default 10)")
    m.add_argument("--max-reps", type=int, default=20000, help="most timed calls (default 20000)")
    m.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="rounds the budget is split into; the backends take turns in each (default 5)",
    )
    m.add_argument(
        "--onnx-exporter",
        choices=("seqfuse", "torch"),
        default=None,
        help="ONNX file for ONNX Runtime: seqfuse.export.to_onnx's verified file (default; "
        "seconds per model) or torch.onnx.export(dynamo=False) directly (--quick's choice)",
    )
    m.add_argument(
        "--isa",
        default="auto",
        help="kernel set of the native CPU rows: auto, or one seqfuse._C.kernel_sets() lists "
        "that this CPU runs (e.g. avx2 on an AVX-512 machine); recorded in the results",
    )
    m.add_argument(
        "--quick",
        action="store_true",
        help="seconds: sine, names and the shakespeare step at batch 1, 1 thread, "
        f"{','.join(QUICK_BACKENDS)}, a 0.05 s budget, the direct ONNX exporter "
        "(explicit options still win)",
    )
    o = p.add_argument_group("output")
    o.add_argument("--out", default="runs/bench", help="output folder (default: %(default)s)")
    o.add_argument("--json", default=None, help="results JSON (default: OUT/bench.json)")
    o.add_argument("--png", default=None, help="summary plot (default: OUT/bench.png)")
    o.add_argument(
        "--update-readme",
        metavar="README",
        default=None,
        help="rewrite the section between <!-- bench:start --> and <!-- bench:end --> of this "
        "file from the results",
    )
    o.add_argument(
        "--from-json",
        metavar="JSON",
        default=None,
        help="measure nothing: render the table, plots and README section from a results file",
    )
    o.add_argument("--hide-skipped", action="store_true", help="leave skipped rows out")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")


def _resolve_backends(spec: str) -> list[str]:
    if spec == "default":
        return list(DEFAULT_BACKENDS)
    if spec == "all":
        return list(BACKENDS)
    names = _names(spec)
    bad = [n for n in names if n not in BACKENDS]
    if bad:
        raise SeqfuseError(f"unknown backend(s) {', '.join(bad)}; expected {', '.join(BACKENDS)}")
    if "eager" not in names:
        names.insert(0, "eager")  # the reference every output is checked against
    return names


def _rel_for_readme(readme: Path, target: Path) -> str:
    try:
        return os.path.relpath(target.resolve(), readme.resolve().parent).replace(os.sep, "/")
    except ValueError:
        raise SeqfuseError(f"{target} cannot be linked from {readme}") from None


def _check_writable(paths: list[Path]) -> None:
    """Create the folders of the output files and write a probe file in each, so a bad
    --out/--json/--png fails in a second, before minutes of measuring."""
    for d in dict.fromkeys(p.parent for p in paths):
        try:
            d.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=d):
                pass
        except OSError as e:
            raise SeqfuseError(f"cannot write results to {d}: {e.strerror or e}") from None
    for p in paths:
        if p.is_dir():
            raise SeqfuseError(f"cannot write results to {p}: it is a directory")


def run(args: argparse.Namespace) -> int:
    from seqfuse.bench import report
    from seqfuse.bench.harness import merge_results, run_benchmarks
    from seqfuse.bench.plots import plot_grid, plot_summary

    argv = getattr(args, "_argv", None)
    if argv is None:
        argv = sys.argv[2:] if len(sys.argv) > 2 and sys.argv[1] == "bench" else []
    out = Path(args.out)
    json_path = Path(args.json) if args.json else out / "bench.json"
    png_path = Path(args.png) if args.png else out / "bench.png"
    grid_png = png_path.with_name(png_path.stem + "_grid" + png_path.suffix)
    command = "seqfuse bench" + (" " + shlex.join(argv) if argv else "")
    _check_writable([png_path, grid_png] + ([] if args.from_json else [json_path]))
    if args.onnx:  # one ONNX file, native against ONNX Runtime (bench/onnx_file.py)
        return onnx_file.run_cli(args, command, _usable_cpus())

    if args.update_readme:  # fail before measuring, not after minutes of it
        if args.png is None:
            raise SeqfuseError(
                "--update-readme needs --png (e.g. docs/bench.png): the README links the plot, "
                "so it must be a file that is committed, not under the default --out"
            )
        report.update_readme(args.update_readme, None)
    if args.from_json:
        results = report.load_json(args.from_json)
        command = results.get("command") or command
    else:
        try:
            isa = check_isa(args.isa)
        except ValueError as e:
            raise SeqfuseError(f"--isa: {e}") from None
        backends, models, batches = args.backends, args.models, args.batches
        explicit_batches = batches is not None
        threads, budget, exporter = args.threads, args.budget, args.onnx_exporter
        if args.quick:  # options given explicitly still win
            backends = ",".join(QUICK_BACKENDS) if backends is None else backends
            models = ",".join(QUICK_MODELS) if models is None else models
            batches = (1,) if batches is None else batches
            budget = 0.05 if budget is None else budget
            threads = (1,) if threads is None else threads
            exporter = "torch" if exporter is None else exporter
        backends = "default" if backends is None else backends
        models = "all" if models is None else models
        batches = SEED_BATCHES if batches is None else batches
        budget = 0.5 if budget is None else budget
        if threads is None:
            n = _usable_cpus()
            threads = (1, n) if n > 1 else (1,)
        if budget <= 0:
            raise SeqfuseError(f"--budget must be > 0, got {budget}")
        if args.warmup < 0 or args.min_reps < 1 or args.max_reps < args.min_reps:
            raise SeqfuseError("need --warmup >= 0 and 1 <= --min-reps <= --max-reps")
        if args.rounds < 1:
            raise SeqfuseError("need --rounds >= 1")
        try:
            seeds, grid = [], []
            if models != "none":
                names = None if models == "all" else _names(models)
                large = [n for n in names or [] if n == "large" or n in LARGE_MODELS]
                arch = [n for n in names or [] if n == "arch" or n in ARCH_MODELS]
                rest = [n for n in names or [] if n not in large and n not in arch]
                if names is None or rest:
                    pick_seed = None if names is None or "all" in rest else rest
                    seeds = seed_workloads(pick_seed, batches=tuple(batches))
                if large:
                    pick = None if "large" in large else large
                    lb = tuple(batches) if explicit_batches else LARGE_BATCHES
                    seeds += large_workloads(pick, batches=lb)
                if arch:  # whole models (seqfuse.models.architectures)
                    pick = None if "arch" in arch else arch
                    ab = tuple(batches) if explicit_batches else ARCH_BATCHES
                    seeds += arch_workloads(pick, batches=ab)
            if args.grid != "none":
                grid = grid_workloads(
                    args.grid,
                    tuple(args.grid_cells),
                    tuple(args.grid_batches),
                    tuple(args.grid_seqs),
                    tuple(args.grid_hiddens),
                )
        except ValueError as e:
            raise SeqfuseError(str(e)) from None
        if not seeds and not grid:
            raise SeqfuseError("nothing to run: --models none and --grid none")
        common = dict(
            budget_s=budget,
            warmup=args.warmup,
            min_reps=args.min_reps,
            max_reps=args.max_reps,
            rounds=args.rounds,
            progress=not args.no_progress,
            command=command,
            onnx_exporter=exporter or "seqfuse",
            isa=isa,
        )
        parts = []
        if seeds:
            parts.append(
                run_benchmarks(seeds, _resolve_backends(backends), threads=threads, **common)
            )
        if grid:
            gb = _resolve_backends(args.grid_backends or backends)
            parts.append(run_benchmarks(grid, gb, threads=threads[:1], **common))
        results = merge_results(parts)
        report.write_json(results, json_path)

    print(report.format_table(results, show_skipped=not args.hide_skipped))
    try:
        png = plot_summary(results, png_path)
        gpng = plot_grid(results, grid_png)
    except OSError as e:
        raise SeqfuseError(f"cannot write the plots to {png_path}: {e.strerror or e}") from None
    print()
    if not args.from_json:
        print(f"wrote {json_path}")
    for p in (png, gpng):
        if p is not None:
            print(f"wrote {p}")
    if args.update_readme:
        readme = Path(args.update_readme)

        section = report.markdown_section(
            results,
            command,
            _rel_for_readme(readme, png) if png else None,
            _rel_for_readme(readme, gpng) if gpng else None,
        )
        report.update_readme(readme, section)
        print(f"updated the results section of {readme}")
    return 0
