"""`seqfuse bench --onnx MODEL.onnx`: time the native engine (seqfuse.native.from_onnx) against
ONNX Runtime on one ONNX file, the user's own model rather than the seed models.

The harness's rules: both run the same feeds (random, seeded; batch from --batches, sequence
length from --onnx-steps, token ids inside the Embedding's vocabulary) at the same thread count
(native threads=, ORT intra_op_num_threads with one inter-op thread, sequential); at each
thread count the native outputs are first compared with ONNX Runtime's (every graph output, max
error absolute up to 1 and relative above, <= 1e-4: ORT's MLAS uses its own tanh/sigmoid) and
a mismatch is reported, never timed; timing is harness.time_calls (warm-up, the GC off, an
adaptive number of calls within the budget); each row reports median and p99, and the native
row their ratios to ONNX Runtime's. The file's symbolic dimensions are resolved by name: the
batch and time axes of the input the first recurrent node reads (found through the
Transpose/Gather glue; batch-first when the path is not that simple), and every other input
with the same dimension names. Checked by tests/test_bench.py (tiny budgets: the validated
errors, the rows and the report's fields).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from seqfuse.errors import SeqfuseError

SCHEMA = "seqfuse.bench.onnx"
SCHEMA_VERSION = 1
TOLERANCE = 1e-4


def add_arguments(g: argparse._ArgumentGroup) -> None:
    """The options `seqfuse bench` takes for an ONNX file (the others are shared)."""
    g.add_argument(
        "--onnx",
        metavar="MODEL.onnx",
        default=None,
        help="time the native engine (seqfuse.native.from_onnx) against ONNX Runtime on this "
        "file instead of the seed models, at each --batches and --threads (writes "
        "OUT/bench_onnx.json unless --json)",
    )
    g.add_argument(
        "--onnx-steps",
        type=int,
        default=32,
        help="sequence length for an ONNX file whose time axis is dynamic (default 32)",
    )


# ---- inputs ----------------------------------------------------------------------------------------
def _x_axes(model: Any) -> tuple[str | None, int, int, int | None]:
    """(the graph input the first recurrent node reads, its batch axis, its time axis, the
    vocabulary when it holds token ids), found through Transpose, Identity and an Embedding's
    Gather; (None, 0, 1, None) when the path is another (taken as batch-first)."""
    from seqfuse.native.onnx import Recurrent, _embedding_table

    if not model.recurrent:
        return None, 0, 1, None
    first = model.recurrent[0]
    producers = {o: s for s in model.steps for o in s.node.output}
    x, swaps, vocab = first.X, 0, None
    while x in producers:
        s = producers[x]
        if isinstance(s, Recurrent):
            return None, 0, 1, None
        op = s.node.op_type
        if op == "Transpose" and list(s.attrs.get("perm", [])) in ([1, 0, 2], [1, 0]):
            swaps += 1
        elif op == "Gather" and vocab is None and _embedding_table(model, s) is not None:
            vocab = int(_embedding_table(model, s).shape[0])
            x = s.node.input[1]
            continue
        elif op != "Identity":
            return None, 0, 1, None
        x = s.node.input[0]
    if x not in {i.name for i in model.get_inputs()}:
        return None, 0, 1, None
    batch = 0 if first.layout == 1 else 1
    if swaps % 2:
        batch = 1 - batch
    return x, batch, 1 - batch, vocab


def make_feeds(model: Any, batch: int, steps: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random feeds for every required input of ``model`` (an OnnxModel)."""
    rng = np.random.default_rng(seed)
    xname, b_at, t_at, vocab = _x_axes(model)
    inputs = model.get_inputs()
    xname = xname or (inputs[0].name if inputs else None)
    named: dict[str, int] = {}
    for arg in inputs:  # the dimension names of the sequence input decide the others
        if arg.name == xname:
            for axis, want in ((b_at, batch), (t_at, steps)):
                if axis < len(arg.shape) and isinstance(arg.shape[axis], str):
                    named[arg.shape[axis]] = want
    feeds: dict[str, np.ndarray] = {}
    for arg in inputs:
        shape = []
        for axis, d in enumerate(arg.shape):
            if isinstance(d, int) and d > 0:
                shape.append(d)
            elif isinstance(d, str) and d in named:
                shape.append(named[d])
            elif arg.name == xname and axis in (b_at, t_at):
                shape.append(batch if axis == b_at else steps)
            else:
                raise SeqfuseError(
                    f"cannot size dimension {axis} ({d!r}) of input '{arg.name}': it shares no "
                    f"name with the sequence input '{xname}'s batch or time axis"
                )
        elem = arg.type[len("tensor(") : -1]  # ONNX's names: float is float32
        dtype = np.dtype(
            {"float": "float32", "double": "float64", "float16": "float16"}.get(elem, elem)
        )
        if np.issubdtype(dtype, np.integer):
            # token ids inside the vocabulary; any other integer input (sequence_lens) full
            a = (
                rng.integers(0, vocab, shape)
                if arg.name == xname and vocab
                else np.full(shape, steps)
            )
            feeds[arg.name] = a.astype(dtype)
        elif np.issubdtype(dtype, np.floating):
            feeds[arg.name] = rng.standard_normal(shape).astype(dtype)
        else:
            raise SeqfuseError(f"input '{arg.name}' is {arg.type}: the ONNX bench feeds numbers")
    return feeds


# ---- the two runners ---------------------------------------------------------------------------------
def _max_err(ref: list[np.ndarray], got: list[np.ndarray]) -> float:
    """Max error over every output: absolute up to 1, relative above (NaN and Inf: inf)."""
    worst = 0.0
    for r, g in zip(ref, got):
        if r.shape != g.shape:
            raise ValueError(f"an output has shape {list(g.shape)}, ONNX Runtime's {list(r.shape)}")
        r64, g64 = np.asarray(r, np.float64), np.asarray(g, np.float64)
        if not np.all(np.isfinite(g64) == np.isfinite(r64)):
            return float("inf")
        fin = np.isfinite(r64)
        d = np.abs(r64[fin] - g64[fin]) / np.maximum(1.0, np.abs(r64[fin]))
        worst = max(worst, float(np.max(d, initial=0.0)))
    return worst


def bench_onnx_file(
    path: str | Path,
    batches: tuple[int, ...] = (1,),
    threads: tuple[int, ...] = (1,),
    steps: int = 32,
    budget_s: float = 0.5,
    warmup: int = 5,
    min_reps: int = 10,
    max_reps: int = 20000,
    seed: int = 0,
    command: str = "",
    rounds: int = 5,
) -> dict[str, Any]:
    """Native (from_onnx) against ONNX Runtime on one file: a results dict (schema
    ``seqfuse.bench.onnx``) whose rows are (batch, threads, backend) with median/p99 and, on
    the native rows, ratio_median / ratio_p99 to ONNX Runtime's. The two take turns in
    ``rounds`` rounds of the budget, as the seed-model rows do (``time_in_turns``)."""
    from seqfuse.bench.backends import ort_session
    from seqfuse.bench.env import fingerprint, load_average
    from seqfuse.bench.harness import summarize, time_in_turns
    from seqfuse.native import from_onnx

    path = Path(path)
    if steps < 1:
        raise SeqfuseError(f"--onnx-steps must be >= 1, got {steps}")
    started, load_before = time.time(), load_average()
    native = from_onnx(path, threads=threads[0])
    rows: list[dict[str, Any]] = []
    for batch in batches:
        feeds = make_feeds(native, batch, steps, seed)
        names = [o.name for o in native.get_outputs()]
        wl = SimpleNamespace(batch=batch, steps_per_call=steps)
        for t in threads:
            base = {"batch": batch, "steps": steps, "threads": t}
            try:
                sess = ort_session(path, t)
                ref = sess.run(names, feeds)
            except Exception as e:  # e.g. layout=1, which ONNX Runtime refuses
                why = (
                    "ONNX Runtime cannot run it, so nothing validates native: "
                    + " ".join(str(e).split())[:300]
                )
                rows += [
                    {**base, "backend": b, "status": "error", "reason": why}
                    for b in ("ort", "native")
                ]
                continue
            try:
                got = native.run(names, feeds, threads=t)
                err = _max_err(ref, got)
            except (ValueError, TypeError) as e:  # a feed native refuses: an error row
                err, why = float("inf"), " ".join(str(e).split())[:300]
            else:
                why = f"max err {err:.3g} > tol {TOLERANCE:g}"
            runners = {
                "ort": lambda sess=sess, n=names, f=feeds: sess.run(n, f),
                "native": lambda t=t, n=names, f=feeds: native.run(n, f, threads=t),
            }
            if not err <= TOLERANCE:
                del runners["native"]
            samples, failed = time_in_turns(
                {name: (fn, lambda: None) for name, fn in runners.items()},
                rounds, budget_s, warmup, min_reps, max_reps,
            )  # fmt: skip
            timed = {}
            for name in ("ort", "native"):
                row = {**base, "backend": name, "max_err_vs_ort": 0.0 if name == "ort" else err}
                if name not in runners:
                    rows.append({**row, "status": "failed", "reason": "mismatch: " + why})
                elif name in failed:
                    reason = "timing failed: " + " ".join(str(failed[name]).split())[:300]
                    rows.append({**row, "status": "error", "reason": reason})
                else:
                    timed[name] = summarize(samples[name], wl)
                    rows.append({**row, "status": "ok", **timed[name]})
            if "native" in timed and "ort" in timed:
                rows[-1]["ratio_median"] = timed["native"]["median_us"] / timed["ort"]["median_us"]
                rows[-1]["ratio_p99"] = timed["native"]["p99_us"] / timed["ort"]["p99_us"]
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "command": command,
        "model": str(path),
        "kernel_sets": native.kernel_sets,
        "inputs": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in feeds.items()},
        "settings": {
            "batches": list(batches),
            "threads": list(threads),
            "steps": steps,
            "budget_s": budget_s,
            "warmup": warmup,
            "min_reps": min_reps,
            "max_reps": max_reps,
            "tolerance": TOLERANCE,
            "seed": seed,
            "rounds": rounds,
        },  # fmt: skip
        "environment": fingerprint(max(threads), load_before),
        "results": rows,
    }


def format_table(results: dict[str, Any]) -> str:
    """The rows as a Markdown table: median and p99 in µs, native's ratios to ORT's."""
    lines = [
        f"{results['model']}: native (from_onnx) vs ONNX Runtime, T = {results['settings']['steps']}",
        "",
        "| batch | threads | backend | median µs | p99 µs | max err vs ORT | median / ORT | p99 / ORT |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results["results"]:
        if r["status"] != "ok":
            lines.append(
                f"| {r['batch']} | {r['threads']} | {r['backend']} | {r['reason']} | | | | |"
            )
            continue
        ratios = f"{r['ratio_median']:.2f}x | {r['ratio_p99']:.2f}x" if "ratio_median" in r else "|"
        lines.append(
            f"| {r['batch']} | {r['threads']} | {r['backend']} | {r['median_us']:.1f} | "
            f"{r['p99_us']:.1f} | {r['max_err_vs_ort']:.2g} | {ratios} |"
        )
    return "\n".join(lines)


def run_cli(args: argparse.Namespace, command: str, usable_cpus: int) -> int:
    """`seqfuse bench --onnx FILE`: measure, print the table, write the JSON."""
    from seqfuse.bench.report import write_json

    if args.update_readme or args.from_json:
        raise SeqfuseError(
            "--onnx prints its own table and JSON; --update-readme and --from-json are for the "
            "seed-model benchmark"
        )
    batches = args.batches or ((1,) if args.quick else (1, 64))
    threads = args.threads or ((1,) if args.quick or usable_cpus < 2 else (1, usable_cpus))
    budget = args.budget if args.budget is not None else (0.05 if args.quick else 0.5)
    if budget <= 0:
        raise SeqfuseError(f"--budget must be > 0, got {budget}")
    if args.warmup < 0 or args.min_reps < 1 or args.max_reps < args.min_reps:
        raise SeqfuseError("need --warmup >= 0 and 1 <= --min-reps <= --max-reps")
    if args.rounds < 1:
        raise SeqfuseError("need --rounds >= 1")
    results = bench_onnx_file(
        args.onnx, tuple(batches), tuple(threads), args.onnx_steps, budget,
        args.warmup, args.min_reps, args.max_reps, command=command, rounds=args.rounds,
    )  # fmt: skip
    out = Path(args.json) if args.json else Path(args.out) / "bench_onnx.json"
    write_json(results, out)
    print(format_table(results))
    print(f"\nwrote {out}")
    return 0
