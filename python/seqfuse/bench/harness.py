"""The measuring loop: prepare, validate against eager, warm up, time, summarize.

For each workload every backend gets the same model and the same input tensors. At each
thread count (torch.set_num_threads, ORT intra_op_num_threads, native threads=) a backend's
outputs are first compared with eager PyTorch's (max abs error against its tolerance); a
backend that does not match is reported as failed and never timed. Timing is per call
(perf_counter_ns, the GC off, CUDA synchronized after each call), adaptive: at least
``min_reps`` calls and as many more as fit in ``budget_s``, spent in rounds in which the
backends take turns. Checked by tests/test_bench.py.
"""

from __future__ import annotations

import gc
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from seqfuse.bench.backends import (
    BACKENDS,
    DEFAULT_BACKENDS,
    Backend,
    BackendUnsupported,
    check_isa,
    make_backends,
    to_numpy_list,
    torch_threads,
)
from seqfuse.bench.workloads import Workload

SCHEMA_VERSION = 3  # 2: measured roofline peaks, floor_us / efficiency; 3: FMA-probe peak
VALIDATE_STEPS = 4  # streaming: steps compared one by one from a fresh zero state


@dataclass
class Settings:
    threads: tuple[int, ...] = (1,)
    budget_s: float = 0.5  # time per (workload, backend, threads) once warm
    warmup: int = 5  # calls before timing (plus 5% of the budget)
    min_reps: int = 10
    max_reps: int = 20000
    seed: int = 0
    rounds: int = 5  # the budget's rounds, in which the backends take turns


def time_calls(fn, sync, budget_s: float, warmup: int, min_reps: int, max_reps: int) -> list[int]:
    """Per-call wall times in ns; stops after ``min_reps`` once ``budget_s`` is spent."""
    t_warm = time.perf_counter() + 0.05 * budget_s
    n = 0
    while n < warmup or time.perf_counter() < t_warm:
        fn()
        sync()
        n += 1
    samples: list[int] = []
    clock = time.perf_counter_ns
    gc_on = gc.isenabled()
    gc.disable()
    try:
        t_end = clock() + int(budget_s * 1e9)
        while True:
            t0 = clock()
            fn()
            sync()
            t1 = clock()
            samples.append(t1 - t0)
            if len(samples) >= max_reps or (len(samples) >= min_reps and t1 >= t_end):
                break
    finally:
        if gc_on:
            gc.enable()
    return samples


def summarize(samples_ns: list[int], wl: Workload) -> dict[str, Any]:
    a = np.asarray(samples_ns, dtype=np.float64) / 1e3  # µs
    med = float(np.median(a))
    half = len(a) // 2
    drift = (
        abs(float(np.median(a[:half])) - float(np.median(a[half:]))) / med if half >= 5 else None
    )
    return {
        "median_us": med,
        "p99_us": float(np.percentile(a, 99)),
        "mean_us": float(a.mean()),
        "min_us": float(a.min()),
        "reps": len(a),
        # |median of first half - median of second half| / median: how steady the run was
        "drift": drift,
        "seqs_per_s": wl.batch / (med * 1e-6),
        "steps_per_s": wl.batch * wl.steps_per_call / (med * 1e-6),
    }


def compare(ref: list[np.ndarray], got: list[np.ndarray]) -> tuple[float, str]:
    """Max abs error over the outputs both return (a backend may skip the state when the
    workload reads only y); raises ValueError on a shape mismatch or no common output."""
    if not got:
        raise ValueError("backend returned no outputs")
    err = 0.0
    for i, (r, g) in enumerate(zip(ref, got)):
        if r.shape != g.shape:
            raise ValueError(f"output {i} has shape {tuple(g.shape)}, eager {tuple(r.shape)}")
        if not np.all(np.isfinite(g)):
            return math.inf, f"{min(len(ref), len(got))} of {len(ref)}"
        err = max(err, float(np.max(np.abs(r.astype(np.float64) - g), initial=0.0)))
    return err, f"{min(len(ref), len(got))} of {len(ref)}"


def reference_outputs(model, wl: Workload, inputs) -> list[list[np.ndarray]]:
    """Eager outputs, per call: one entry for batch mode, VALIDATE_STEPS for streaming."""
    from seqfuse.bench.backends import Eager

    e = Eager()
    e.prepare(model, inputs)
    n = VALIDATE_STEPS if inputs.mode == "stream" else 1
    return [to_numpy_list(e.run()) for _ in range(n)]


def validate(backend: Backend, ref: list[list[np.ndarray]]) -> tuple[float, str]:
    backend.reset()
    err, compared = 0.0, ""
    for r in ref:
        out = backend.run()
        backend.sync()
        e, compared = compare(r, to_numpy_list(out))
        err = max(err, e)
    backend.reset()
    return err, compared


def _row(wl: Workload, b: Backend, threads: int, status: str, reason: str = "", **kw) -> dict:
    return {
        "workload": wl.id,
        "backend": b.name,
        "device": b.device,
        "peer": b.peer,
        "precision": b.precision,
        "threads": threads,
        "status": status,
        "reason": reason,
        **kw,
    }


def _err_text(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}"[:300]


def bench_workload(
    wl: Workload, backends: list[Backend], settings: Settings, on_step=None
) -> list[dict[str, Any]]:
    """Rows for one workload: every backend at every thread count.

    Every backend is prepared first; then, at each thread count, each is validated, and the
    timing budget is split into ``settings.rounds`` rounds in which the validated backends
    take turns (in reverse order every other round). A machine whose speed drifts during the
    run (a shared host, a clock that settles) then slows every backend alike, instead of
    whichever happened to run during the slow minute.
    """
    rows: dict[tuple[int, int], dict[str, Any]] = {}  # (backend index, thread count) -> row
    model = wl.build_model()
    inputs = wl.make_inputs()
    with torch.inference_mode():
        ref = reference_outputs(model, wl, inputs)
        ready: list[tuple[int, Backend]] = []
        try:
            for i, b in enumerate(backends):
                if on_step:
                    on_step(b.name)
                status, reason = _prepare(b, model, inputs, settings.threads[0])
                if status == "ok":
                    ready.append((i, b))
                else:
                    rows.update({(i, t): _row(wl, b, t, status, reason) for t in settings.threads})
            for t in settings.threads:
                with torch_threads(t):
                    timed = _validate_all(wl, ready, ref, t, rows)
                    for i, row in _time_in_rounds(wl, timed, t, settings, on_step).items():
                        rows[i, t] = row
        finally:
            for _, b in ready:
                b.close()
    out = [rows[k] for k in sorted(rows)]  # backend order, then thread count
    add_ratios(out)
    return out


def _prepare(b: Backend, model, inputs, threads: int) -> tuple[str, str]:
    """("ok", "") when ``b`` is ready to run, else the status and reason of its rows (and
    ``b`` is closed)."""
    ok, why = b.available()
    if not ok:
        return "skipped", why
    try:
        with torch_threads(threads):
            b.threads = threads
            b.prepare(model, inputs)
    except BackendUnsupported as e:
        b.close()
        return "skipped", f"unsupported: {e}"
    except Exception as e:
        if os.environ.get("SEQFUSE_DEBUG"):
            traceback.print_exc()
        b.close()
        return "error", f"prepare failed: {_err_text(e)}"
    return "ok", ""


def time_in_turns(
    fns: dict[Any, tuple[Any, Any]],
    rounds: int,
    budget_s: float,
    warmup: int,
    min_reps: int,
    max_reps: int,
    on_turn=None,
) -> tuple[dict[Any, list[int]], dict[Any, Exception]]:
    """Per-call times (ns) of each ``key: (run, sync)``: the budget is spent in ``rounds``
    rounds in which the functions take turns, in reverse order every other round, so that a
    slow minute of a shared host falls on all of them. A function that raises drops out of
    the later rounds; its exception is returned. ``on_turn(key, round)`` precedes each turn."""
    rounds = max(1, rounds)
    keys = list(fns)
    samples: dict[Any, list[int]] = {k: [] for k in keys}
    failed: dict[Any, Exception] = {}
    for rnd in range(rounds):
        for k in keys if rnd % 2 == 0 else keys[::-1]:
            if k in failed:
                continue
            if on_turn:
                on_turn(k, rnd)
            run, sync = fns[k]
            try:
                samples[k] += time_calls(
                    run,
                    sync,
                    budget_s / rounds,
                    warmup if rnd == 0 else 1,
                    -(-min_reps // rounds),
                    max(1, max_reps // rounds),
                )
            except Exception as e:  # e.g. out of memory at a big grid point
                failed[k] = e
    return samples, failed


def _time_in_rounds(
    wl: Workload,
    timed: list[tuple[int, Backend, tuple[float, str]]],
    t: int,
    settings: Settings,
    on_step=None,
) -> dict[int, dict[str, Any]]:
    """A row per validated backend, timed by ``time_in_turns`` in ``settings.rounds``
    rounds; a backend that raises while timed gets an error row."""
    by_i = {i: b for i, b, _ in timed}
    samples, failed = time_in_turns(
        {i: (b.run, b.sync) for i, b, _ in timed},
        settings.rounds,
        settings.budget_s,
        settings.warmup,
        settings.min_reps,
        settings.max_reps,
        None
        if on_step is None
        else lambda i, rnd: on_step(f"{by_i[i].name} (round {rnd + 1}/{max(1, settings.rounds)})"),
    )
    out: dict[int, dict[str, Any]] = {
        i: _row(wl, by_i[i], t, "error", f"timing failed: {_err_text(e)}")
        for i, e in failed.items()
    }
    for i, b, (err, compared) in timed:
        if i not in out:
            out[i] = _row(
                wl,
                b,
                t,
                "ok",
                max_abs_err=err,
                tolerance=b.tolerance,
                compared_outputs=compared,
                **b.describe(),
                **summarize(samples[i], wl),
            )
    return out


def _validate_all(
    wl: Workload,
    ready: list[tuple[int, Backend]],
    ref: list[list[np.ndarray]],
    t: int,
    rows: dict[tuple[int, int], dict[str, Any]],
) -> list[tuple[int, Backend, tuple[float, str]]]:
    """The prepared backends that match eager at ``t`` threads, with (error, compared); a
    row for each that does not (skipped, error or failed), which is never timed."""
    timed = []
    for i, b in ready:
        try:
            if t != b.threads:
                b.set_threads(t)
            err, compared = validate(b, ref)
        except BackendUnsupported as e:
            rows[i, t] = _row(wl, b, t, "skipped", f"unsupported: {e}")
            continue
        except Exception as e:
            rows[i, t] = _row(wl, b, t, "error", f"run failed: {_err_text(e)}")
            continue
        tol = b.tolerance
        if not err <= tol:  # also catches NaN
            reason = f"mismatch: max abs err {err:.3g} > tol {tol:g}"
            rows[i, t] = _row(wl, b, t, "failed", reason, max_abs_err=err, tolerance=tol)
            continue
        timed.append((i, b, (err, compared)))
    return timed


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """ratio_to_eager and ratio_to_fastest_peer for every timed row, within the same
    workload, thread count and device kind (CUDA rows compare with eager-cuda)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["status"] == "ok":
            kind = "cuda" if r["device"] == "cuda" else "cpu"
            groups.setdefault((r["workload"], r["threads"], kind), []).append(r)
    for (_, _, kind), rs in groups.items():
        eager_name = "eager-cuda" if kind == "cuda" else "eager"
        eager = next((r for r in rs if r["backend"] == eager_name), None)
        peers = [r for r in rs if r["peer"]]
        best = min(peers, key=lambda r: r["median_us"]) if peers else None
        for r in rs:
            r["ratio_to_eager"] = r["median_us"] / eager["median_us"] if eager else None
            r["fastest_peer"] = best["backend"] if best else None
            r["ratio_to_fastest_peer"] = r["median_us"] / best["median_us"] if best else None


def run_benchmarks(
    workloads: list[Workload],
    backends: list[str] | list[Backend] | None = None,
    threads: tuple[int, ...] | list[int] = (1,),
    budget_s: float = 0.5,
    warmup: int = 5,
    min_reps: int = 10,
    max_reps: int = 20000,
    progress: bool = True,
    command: str = "",
    onnx_exporter: str = "seqfuse",
    isa: str = "auto",
    rounds: int = 5,
) -> dict[str, Any]:
    """Benchmark ``workloads`` on ``backends`` at each thread count; the results dict
    follows docs/BENCHMARKS.md (schema ``seqfuse.bench`` version :data:`SCHEMA_VERSION`).
    ``isa`` forces the kernel set of the native CPU rows (given by name); the budget is
    spent in ``rounds`` rounds in which the backends take turns."""
    from seqfuse.bench.env import fingerprint, load_average
    from seqfuse.bench.machine import measure_peaks
    from seqfuse.bench.report import check_targets, roofline_peak

    if not workloads:
        raise ValueError("no workloads selected")
    threads = tuple(int(t) for t in threads)
    if not threads or min(threads) < 1:
        raise ValueError(f"thread counts must be >= 1, got {threads}")
    if budget_s <= 0 or min_reps < 1 or max_reps < min_reps or warmup < 0 or rounds < 1:
        raise ValueError(
            "need budget_s > 0, warmup >= 0, rounds >= 1 and 1 <= min_reps <= max_reps"
        )
    check_isa(isa)  # an unknown or unsupported kernel set fails before any measuring
    if backends is None:
        backends = list(DEFAULT_BACKENDS)
    objs = [b if isinstance(b, Backend) else None for b in backends]
    if any(o is None for o in objs):
        objs = make_backends([b for b in backends if isinstance(b, str)], onnx_exporter, isa) + [
            b for b in backends if isinstance(b, Backend)
        ]
    names = [b.name for b in objs]
    if "eager" not in names:
        raise ValueError("the eager backend is the reference and must be included")
    settings = Settings(threads, budget_s, warmup, min_reps, max_reps, rounds=rounds)
    started = time.time()
    load_before = load_average()
    measured = measure_peaks(isa)  # the FMA peak of the native rows' kernel set, read bandwidth
    rows: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(workloads), desc="bench", unit="workload", file=sys.stderr)
    try:
        for wl in workloads:
            if bar is not None:
                bar.set_description(f"bench {wl.id}")

                def on_step(name, bar=bar):
                    bar.set_postfix_str(name, refresh=True)
            else:
                on_step = None
            rows += bench_workload(wl, objs, settings, on_step)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    env = fingerprint(max(threads), load_before)
    results = {
        "schema": "seqfuse.bench",
        "schema_version": SCHEMA_VERSION,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "command": command,
        "environment": env,
        "settings": {
            "backends": names,
            "threads": list(threads),
            "budget_s": budget_s,
            "warmup": warmup,
            "min_reps": min_reps,
            "max_reps": max_reps,
            "rounds": rounds,
            "onnx_exporter": onnx_exporter,
            "isa": isa,
        },
        "backend_notes": {b.name: b.note for b in objs if b.note},
        "backend_order": list(BACKENDS),  # the tables' column order (seqfuse.bench.report)
        "peak": roofline_peak(env, measured),
        "workloads": [w.to_dict() for w in workloads],
        "results": rows,
    }
    from seqfuse.bench.report import add_roofline

    add_roofline(results)
    results["targets"] = check_targets(results)
    return results


def merge_results(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One results dict from runs of disjoint workloads (e.g. the seed models on every
    backend and the grid on a few): the first run's header, the union of the rest."""
    from seqfuse.bench.report import check_targets

    if not parts:
        raise ValueError("nothing to merge")
    out = dict(parts[0])
    out["settings"] = dict(out["settings"])
    for p in parts[1:]:
        ids = {w["id"] for w in out["workloads"]}
        if ids & {w["id"] for w in p["workloads"]}:
            raise ValueError("merged runs must have disjoint workloads")
        out["workloads"] = out["workloads"] + p["workloads"]
        out["results"] = out["results"] + p["results"]
        out["duration_s"] = round(out["duration_s"] + p["duration_s"], 1)
        out["backend_notes"] = {**out.get("backend_notes", {}), **p.get("backend_notes", {})}
        s = out["settings"]
        s["backends"] = s["backends"] + [
            b for b in p["settings"]["backends"] if b not in s["backends"]
        ]
        s["threads"] = sorted(set(s["threads"]) | set(p["settings"]["threads"]))
    out["targets"] = check_targets(out)
    return out
