"""Reporting: roofline napkin math, the native engine's speed targets (docs/BENCHMARKS.md,
"Targets"), the terminal table, JSON and the README section between
``<!-- bench:start -->`` and ``<!-- bench:end -->``.

Every number printed here is computed from a results dict (docs/BENCHMARKS.md), never typed
in. Checked by tests/test_bench.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from seqfuse.bench.env import busy_warning, summary_line

# Used only when no measurement is given (seqfuse.bench.machine measures the real peaks at
# the start of every run): the per-core L1/L2 read ceiling of a register-blocked AVX-512
# matvec on this project's dev machine kind, and two FMA pipes of the widest SIMD.
CACHE_BYTES_PER_CYCLE = 62.0
FLOPS_PER_CYCLE = {"avx512": 64.0, "avx2": 32.0, "portable": 8.0}
# AMD family 25 (Zen 3 and Zen 4) has two 256-bit FMA pipes: Zen 4 runs an AVX-512 FMA on both
# at once, so its fp32 rate is that of AVX2 (measured: the avx512 probe read 118 GFLOP/s at a
# 3.7 GHz boost, 32 FLOP/cycle). Zen 5 (family 26) has 512-bit pipes.
HALF_WIDTH_AVX512_IDS = ("AuthenticAMD family 25 ",)


def flops_per_cycle(simd: str, cpu_id: str = "") -> float:
    """Nominal fp32 FLOP/cycle/core of a kernel set's SIMD width on the CPU ``cpu_id``
    (``seqfuse.bench.env``'s "vendor family N model M")."""
    if simd == "avx512" and cpu_id.startswith(HALF_WIDTH_AVX512_IDS):
        return FLOPS_PER_CYCLE["avx2"]
    return FLOPS_PER_CYCLE[simd]


START, END = "<!-- bench:start -->", "<!-- bench:end -->"
UNSTEADY = 0.25  # drift above which a row is marked unsteady
# The fields of seqfuse.bench.machine's measurement that the peak carries as they are (None
# when nothing was measured).
MEASURED_ONLY = (
    "fma_kernel_set",
    "gflops_source",
    "gemm_gflops_per_core",
    "gbps_source",
    "gbps_range",
    "probe_s",
)

# (id, workload, threads, backend, vs, max ratio); vs is a backend name or "fastest peer".
TARGETS: list[tuple[str, str, int, str, str, float]] = [
    ("sine b1 vs ORT", "sine/b1", 1, "native", "ort", 0.25),
    ("sine b1 vs eager", "sine/b1", 1, "native", "eager", 0.05),
    ("names b1 vs ORT", "names/b1", 1, "native", "ort", 0.5),
    ("names b1 vs eager", "names/b1", 1, "native", "eager", 0.1),
    ("mnist b1 vs ORT", "mnist/b1", 1, "native", "ort", 0.5),
    ("mnist b1 vs eager", "mnist/b1", 1, "native", "eager", 0.25),
    ("sine b64 vs fastest peer", "sine/b64", 1, "native", "fastest peer", 1.0),
    ("names b64 vs fastest peer", "names/b64", 1, "native", "fastest peer", 1.0),
    ("mnist b64 vs fastest peer", "mnist/b64", 1, "native", "fastest peer", 1.0),
    ("hihell b64 vs fastest peer", "hihell/b64", 1, "native", "fastest peer", 1.0),
    ("linear b64 vs fastest peer", "linear/b64", 1, "native", "fastest peer", 1.0),
    ("shakespeare stream 1 thread vs ORT", "shakespeare/stream", 1, "native", "ort", 0.5),
    ("shakespeare stream 2 threads vs ORT", "shakespeare/stream", 2, "native", "ort", 0.3),
    # issue 11: against the best fp32 peer (int8 is not one) at the same thread count
    ("sine b1 vs best fp32 peer", "sine/b1", 1, "native", "fastest peer", 0.25),
    ("names b1 vs best fp32 peer", "names/b1", 1, "native", "fastest peer", 0.5),
    ("char step vs best fp32 peer", "shakespeare/stream", 1, "native", "fastest peer", 0.5),
    ("mnist b1 vs best fp32 peer", "mnist/b1", 1, "native", "fastest peer", 0.65),
    ("mnist b1 2 threads vs best fp32 peer", "mnist/b1", 2, "native", "fastest peer", 0.5),
    ("lstm256x512 b1 vs best fp32 peer", "lstm256x512/b1", 1, "native", "fastest peer", 0.7),
] + [
    (f"{m} b64{'' if th == 1 else ' 2 threads'} vs best fp32 peer", f"{m}/b64", th, "native",
     "fastest peer", 0.9)
    for th in (1, 2)
    for m in ("sine", "names", "mnist", "lstm256x512", "gru256x256")
]  # fmt: skip


def roofline_peak(env: dict[str, Any], measured: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's peaks: measured ones (seqfuse.bench.machine.measure_peaks) when given, else
    nominal ones from the clock and the SIMD width (``measured: false``)."""
    simd = env.get("seqfuse_build", {}).get("simd")
    if simd not in FLOPS_PER_CYCLE:
        flags = env.get("cpu_flags", [])
        simd = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "portable"
    mhz = env.get("cpu_mhz_estimate") or 2500.0
    ghz = mhz / 1000.0
    per_cycle = flops_per_cycle(simd, env.get("cpu_id") or "")
    nominal = round(ghz * per_cycle, 1)
    if measured:
        gflops, gbps = measured["gflops_per_core"], dict(measured["gbps_per_core"])
        caches = dict(measured.get("cache_bytes", {}))
        assumption = (
            f"measured at the start of the run on 1 thread: {gflops:g} GFLOP/s "
            f"({measured['gflops_source']}; torch.mm {measured['gemm_gflops_per_core']:g}; "
            f"nominal {nominal:g} = {ghz:.2f} GHz x {per_cycle:g} FLOP/cycle, "
            f"{simd}), read bandwidth L2 {gbps.get('L2', 0):g} GB/s and L3 "
            f"{gbps.get('L3', 0):g} GB/s ({measured.get('gbps_source', 'torch sum/dot')}); "
            "per core, times the threads used"
        )
    else:
        gflops = nominal
        gbps = {"L2": round(ghz * CACHE_BYTES_PER_CYCLE, 1), "L3": None}
        caches = {}
        assumption = (
            f"not measured: clock {ghz:.2f} GHz (from /proc/cpuinfo; rough under a "
            f"hypervisor); {per_cycle:g} fp32 FLOP/cycle/core ({simd} on two FMA pipes); "
            f"{CACHE_BYTES_PER_CYCLE:g} B/cycle/core streamed from L1/L2"
        )
    return {
        "measured": bool(measured),
        "clock_ghz": round(ghz, 2),
        "simd": simd,
        "nominal_gflops_per_core": nominal,
        "gflops_per_core": gflops,
        "gbps_per_core": gbps,
        "cache_bytes": caches,
        **{key: (measured or {}).get(key) for key in MEASURED_ONLY},
        "assumption": assumption,
    }


def roofline_floor(w: dict[str, Any], peak: dict[str, Any], cores: int) -> dict[str, Any]:
    """The least time one call of workload ``w`` can take on ``cores`` cores, with its two
    phases in sequence (as the engine runs them): the input-projection GEMM at the FMA peak
    (or its weights at cache bandwidth, whichever is slower), then the recurrent steps at the
    FMA peak or streaming their weights from cache, whichever is slower. The working set is
    one layer and direction's recurrent matrix when a call runs several steps (it is reread
    every step), and every weight when a call is one step (reread only by the next call).
    When it fits the L2 of the cores used it streams from L2; when it does not, each reread
    takes from L3 at least what does not fit (the rest can still be in L2, as when the
    engine alternates the order of its reads from step to step), at the two levels' mixed
    bandwidth."""
    l2 = (peak.get("cache_bytes") or {}).get("L2")
    hot = w["step_weight_bytes"] if w["steps_per_call"] > 1 else w["weight_bytes"]
    level = "L2" if l2 is None or hot <= l2 * cores else "L3"
    bws = peak["gbps_per_core"]
    bw = bws["L2"] * 1e9 * cores
    if level == "L3" and bws.get("L3"):
        from_l3 = (hot - l2 * cores) / hot  # the least share of each reread that misses L2
        bw = 1.0 / (from_l3 / (bws["L3"] * 1e9 * cores) + (1.0 - from_l3) / bw)
    flops = peak["gflops_per_core"] * 1e9 * cores
    t_gemm = max(w["gemm_flops"] / flops, w["gemm_bytes"] / bw)
    t_fma, t_mem = w["step_flops"] / flops, w["step_bytes"] / bw
    floor = t_gemm + max(t_fma, t_mem)
    bound = f"{level} bandwidth" if t_mem > t_fma and t_mem > t_gemm else "FMA peak"
    return {"floor_us": floor * 1e6, "level": level, "bound": bound, "bw": bw}


def add_roofline(results: dict[str, Any]) -> None:
    """Achieved GB/s of weights and GFLOP/s, the roofline floor and the efficiency
    (floor / median) for every timed CPU row (the table shows native ones). GPU rows get
    none: the peaks are the CPU's, measured at the start of the run."""
    peak = results["peak"]
    cpus = results["environment"].get("usable_cpus") or 1
    costs = {w["id"]: w for w in results["workloads"]}
    for r in results["results"]:
        if r["status"] != "ok" or r.get("device", "cpu") != "cpu":
            continue
        w = costs[r["workload"]]
        sec = r["median_us"] * 1e-6
        cores = min(r["threads"], cpus)
        gbps = w["weight_bytes"] / sec / 1e9
        gflops = w["flops"] / sec / 1e9
        f = roofline_floor(w, peak, cores)
        r["roofline"] = {
            "weight_bytes": w["weight_bytes"],
            "flops": w["flops"],
            "gbps": gbps,
            "gflops": gflops,
            "pct_peak_bw": 100 * gbps * 1e9 / f["bw"],
            "pct_peak_flops": 100 * gflops / (peak["gflops_per_core"] * cores),
            "floor_us": f["floor_us"],
            "efficiency": f["floor_us"] / r["median_us"],
            "bound": f["bound"],
            "cache_level": f["level"],
        }


def _find(results: dict, workload: str, threads: int, backend: str) -> dict | None:
    for r in results["results"]:
        if r["workload"] == workload and r["threads"] == threads and r["backend"] == backend:
            return r
    return None


def _note_floor(t: dict[str, Any], row: dict[str, Any], ratio: float, limit: float) -> None:
    """A missed target whose time lies below native's roofline floor in the same run (the
    measured FMA peak and cache bandwidths) cannot be met by any fp32 kernel on this machine:
    say so, with both times, so a miss against a peer near the peaks reads as what it is."""
    floor = (row.get("roofline") or {}).get("floor_us")
    if floor is None:
        return
    target_us = row["median_us"] * limit / ratio
    t["target_us"], t["floor_us"] = target_us, floor
    t["below_floor"] = target_us < floor
    if t["below_floor"]:
        t["detail"] += (
            f"; the target's {_us(target_us)} is below this run's roofline floor of {_us(floor)}"
        )


def _us(x: float) -> str:
    s = fmt_us(x)
    return s if s.endswith("ms") else f"{s} us"


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each of the native engine's targets whose workload ran at its thread count: met, missed (by how
    much) or not measured (why)."""
    ran = {(r["workload"], r["threads"]) for r in results["results"]}
    out = []
    for tid, wl, th, be, vs, limit in TARGETS:
        if (wl, th) not in ran:
            continue
        row = _find(results, wl, th, be)
        t: dict[str, Any] = {
            "id": tid,
            "workload": wl,
            "threads": th,
            "backend": be,
            "vs": vs,
            "target": limit,
            "measured": None,
        }
        if row is None:
            t.update(status="not measured", detail=f"{be} was not run")
        elif row["status"] != "ok":
            t.update(status="not measured", detail=f"{be} {row['status']}: {row['reason']}")
        else:
            ratio = row["ratio_to_fastest_peer"] if vs == "fastest peer" else None
            if vs != "fastest peer":
                other = _find(results, wl, th, vs)
                if other is not None and other["status"] == "ok":
                    ratio = row["median_us"] / other["median_us"]
            if ratio is None:
                t.update(status="not measured", detail=f"{vs} was not timed")
            else:
                t["measured"] = ratio
                if vs == "fastest peer":
                    t["vs"] = f"fastest peer ({row['fastest_peer']})"
                if ratio <= limit:
                    t.update(status="met", detail=f"{ratio:.3f}x <= {limit:g}x")
                else:
                    t.update(
                        status="missed",
                        detail=f"{ratio:.3f}x > {limit:g}x: {ratio / limit:.2f}x too slow",
                    )
                    _note_floor(t, row, ratio, limit)
        out.append(t)
    return out


# ---------------------------------------------------------------- formatting helpers


def fmt_us(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 1e5:
        return f"{v / 1e3:.0f}ms"
    if v >= 1e4:
        return f"{v / 1e3:.1f}ms"
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def fmt_rate(v: float | None) -> str:
    if v is None:
        return "-"
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:.3g}{suf}"
    return f"{v:.3g}"


def fmt_ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}x" if v < 1 else f"{v:.2f}x"


def _workload_title(w: dict[str, Any]) -> str:
    c = w["config"]
    if c.get("kind") == "linear":
        arch = "Linear"
    elif c.get("kind") == "arch":  # a whole model: its note describes it
        arch = c["arch"]
    else:
        arch = f"{c['cell']} H={c['hidden_size']}"
        if c["num_layers"] > 1:
            arch += f" x{c['num_layers']}"
        if c["bidirectional"]:
            arch += " bidir"
        if c.get("vocab_size"):
            arch = f"Embedding {c['vocab_size']}->{c['embed_dim']}, " + arch
    shape = f"B={w['batch']}" + (f" T={w['seq_len']}" if w["mode"] == "batch" else " stream")
    note = f"; {w['note']}" if w.get("note") else ""
    return f"{w['id']}  ({arch}; {shape}{note})"


def kernel_set_line(results: dict[str, Any]) -> str:
    """Which kernel set the native CPU rows ran, and whether --isa forced it."""
    want = results.get("settings", {}).get("isa", "auto")
    used = sorted({r["isa"] for r in results["results"] if r.get("isa")})
    native_ok = any(r["backend"] == "native" and r["status"] == "ok" for r in results["results"])
    ran = "/".join(used) if used else "not recorded" if native_ok else "not run"
    if want == "auto":
        return f"native kernel set: {ran} (auto)"
    return f"native kernel set: {ran} (forced by --isa {want})"


def format_table(results: dict[str, Any], show_skipped: bool = True) -> str:
    """The terminal table: per thread count and workload, one line per backend."""
    lines = [f"seqfuse bench: {summary_line(results['environment'])}"]
    lines.append(kernel_set_line(results))
    warn = busy_warning(results["environment"])
    if warn:
        lines.append(warn)
    wls = {w["id"]: w for w in results["workloads"]}
    hdr = (
        f"  {'backend':<16}{'median us':>10}{'p99 us':>9}{'seq/s':>8}{'steps/s':>8}"
        f"{'x eager':>9}{'x peer':>9}  {'max err':>8}  {'GB/s':>6}{'GFLOP/s':>8}"
        f"{'floor us':>9}{'eff':>6}  bound"
    )
    reduced = False
    for th in results["settings"]["threads"]:
        lines.append("")
        lines.append(f"== threads = {th} " + "=" * 70)
        for wid, w in wls.items():
            rows = [r for r in results["results"] if r["workload"] == wid and r["threads"] == th]
            if not rows:
                continue
            lines.append(_workload_title(w))
            lines.append(hdr)
            for r in rows:
                name = r["backend"]
                if r.get("precision", "fp32") != "fp32":
                    name += " ‡"
                    reduced = True
                if r["status"] != "ok":
                    if show_skipped or r["status"] != "skipped":
                        lines.append(f"  {name:<16}{r['status'].upper()}: {r['reason']}")
                    continue
                roof = r.get("roofline") if r["backend"].startswith("native") else None
                roof_s = ""
                if roof:
                    roof_s = f"{roof['gbps']:>6.1f}{roof['gflops']:>8.1f}"
                    if "floor_us" in roof:  # files from before schema 2 have no floor
                        roof_s += (
                            f"{fmt_us(roof['floor_us']):>9}{roof['efficiency']:>6.0%}"
                            f"  {roof['bound']}"
                        )
                mark = "*" if r["backend"] == r.get("fastest_peer") else " "
                steady = "~" if (r.get("drift") or 0) > UNSTEADY else " "
                lines.append(
                    f"  {name:<15}{mark}{fmt_us(r['median_us']):>9}{steady}{fmt_us(r['p99_us']):>9}"
                    f"{fmt_rate(r['seqs_per_s']):>8}{fmt_rate(r['steps_per_s']):>8}"
                    f"{fmt_ratio(r.get('ratio_to_eager')):>9}"
                    f"{fmt_ratio(r.get('ratio_to_fastest_peer')):>9}"
                    f"  {r['max_abs_err']:>8.1e}  {roof_s}"
                )
    lines.append("")
    lines.append(
        "x eager / x peer: median latency over eager's / over the fastest peer's (* marks it;"
        " peers are the non-seqfuse fp32 backends) in the same run, workload and thread count."
    )
    if reduced:
        lines.append("‡ reduced precision: validated at its own, looser tolerance; never a peer.")
    ran = {r["backend"] for r in results["results"] if r["status"] == "ok"}
    for b, note in results.get("backend_notes", {}).items():
        if b in ran:
            lines.append(f"{b}: {note}.")
    lines.append(
        f"~ after a median: unsteady run (the medians of its two halves differ by more than "
        f"{UNSTEADY:.0%}): noise, rerun on a quiet machine."
    )
    lines.append(
        "GB/s, GFLOP/s: weights read and FLOPs of the minimal work per call, over the median. "
        "floor us: the roofline floor of that work (GEMM phase at the FMA peak, then the "
        "recurrent steps at the FMA peak or at the bandwidth of the cache level their weights "
        "fit in); eff: floor / median; bound: what sets the floor. Peaks: "
        f"{results['peak']['assumption']}"
    )
    lines += ["", format_targets(results)]
    if warn:
        lines += ["", warn]
    return "\n".join(lines)


def format_targets(results: dict[str, Any]) -> str:
    if not results.get("targets"):
        return "native engine targets (docs/BENCHMARKS.md): none of their workloads ran at their thread counts"
    lines = [
        "native engine targets (docs/BENCHMARKS.md; native vs. peers, same thread count, same run):"
    ]
    for t in results.get("targets", []):
        lines.append(f"  {t['status'].upper():<13}{t['id']:<38}{t['detail']}")
    return "\n".join(lines)


def write_json(results: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)

    def clean(o: Any) -> Any:  # JSON has no inf/nan
        if isinstance(o, float) and not math.isfinite(o):
            return None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return o

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(clean(results), indent=1) + "\n", encoding="utf-8")
    except OSError as e:
        from seqfuse.errors import SeqfuseError

        raise SeqfuseError(f"cannot write benchmark results {path}: {e.strerror or e}") from None
    return path


def load_json(path: str | Path) -> dict[str, Any]:
    from seqfuse.errors import SeqfuseError

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SeqfuseError(f"cannot read benchmark results {path}: {e}") from None
    if not isinstance(data, dict) or data.get("schema") != "seqfuse.bench":
        raise SeqfuseError(f"{path} is not a seqfuse bench results file")
    return data


# ---------------------------------------------------------------- README section


def backend_columns(results: dict[str, Any], present: set[str] | None = None) -> list[str]:
    """The backends in table order: the registry's order as the run recorded it
    (``backend_order``; a file from before that field: the requested order), then any
    other backend in the order its rows come. ``present``: keep only these."""
    order = results.get("backend_order") or results.get("settings", {}).get("backends") or []
    cols = list(
        dict.fromkeys([*order, *(r["backend"] for r in results["results"] if r["backend"])])
    )
    return [b for b in cols if present is None or b in present]


def markdown_section(
    results: dict[str, Any], command: str, png: str | None, grid_png: str | None = None
) -> str:
    """The README results section: fingerprint, per-workload medians, native's ratios,
    targets and the plot. Rows: seed and large workloads at each thread count."""
    res = results["results"]
    seed = [w for w in results["workloads"] if w["group"] in ("seed", "large")]
    cols = backend_columns(results, {r["backend"] for r in res if r["status"] == "ok"})
    skipped = sorted(
        {(r["backend"], r["reason"]) for r in res if r["status"] != "ok" and r["backend"]}
    )
    out = [
        f"Generated by `{command}` on {results['created_utc']} (do not edit by hand: rerun the "
        "command). Median latency in µs per call; every backend matched eager PyTorch before "
        "it was timed. Method and JSON schema: [docs/BENCHMARKS.md](docs/BENCHMARKS.md).",
        "",
        f"Machine: {summary_line(results['environment'])}; {kernel_set_line(results)}.",
        "",
    ]
    warn = busy_warning(results["environment"])
    if warn:
        out += [f"**{warn}.**", ""]
    reduced = {r["backend"] for r in res if r.get("precision", "fp32") != "fp32"}
    head = ["model", "threads"] + [c + (" ‡" if c in reduced else "") for c in cols]
    head += ["native eff", "native ÷ eager", "native ÷ ORT", "native ÷ best fp32 peer"]
    gpu = "native-cuda" in cols  # GPU rows compare with the GPU peers (eager-cuda, graphs)
    if gpu:
        head.append("native-cuda ÷ best GPU peer")
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    for th in results["settings"]["threads"]:
        for w in seed:
            by = {
                r["backend"]: r
                for r in res
                if r["workload"] == w["id"] and r["threads"] == th and r["status"] == "ok"
            }
            if not by:
                continue
            nat, ort = by.get("native"), by.get("ort")
            cells = [w["id"] + ("" if w.get("need_state", True) else " †"), str(th)]
            cells += [fmt_us(by[b]["median_us"]) if b in by else "—" for b in cols]
            eff = (nat.get("roofline") or {}).get("efficiency") if nat else None
            cells.append(f"{eff:.0%}" if eff is not None else "—")
            cells.append(fmt_ratio(nat["ratio_to_eager"]) if nat else "—")
            cells.append(fmt_ratio(nat["median_us"] / ort["median_us"]) if nat and ort else "—")
            cells.append(
                f"{fmt_ratio(nat['ratio_to_fastest_peer'])} ({nat['fastest_peer']})"
                if nat and nat.get("fastest_peer")
                else "—"
            )
            if gpu:
                nc = by.get("native-cuda")
                cells.append(
                    f"{fmt_ratio(nc['ratio_to_fastest_peer'])} ({nc['fastest_peer']})"
                    if nc and nc.get("fastest_peer")
                    else "—"
                )
            out.append("| " + " | ".join(cells) + " |")
    out += [
        "",
        "† the user reads only the head's output: native computes only that "
        "(`need_state=False`); the others compute everything. Streaming: one char per call, "
        "batch 1, the state in and out of every call (ONNX Runtime is fed its state back).",
        "native eff: the roofline floor of the call (measured FMA peak and cache bandwidth of "
        "this machine) over native's median.",
    ]
    if reduced:
        out.append(
            "‡ reduced precision (" + ", ".join(sorted(reduced)) + "): validated at its own, "
            "looser tolerance, and never counted as a peer."
        )
    out += [
        "",
        "The native engine's targets (defined in docs/BENCHMARKS.md):",
        "",
    ]
    for t in results.get("targets", []):
        out.append(f"- **{t['status']}**: {t['id']} at {t['threads']} thread(s): {t['detail']}")
    ran = {r["backend"] for r in res if r["status"] == "ok"}
    notes = [f"{b}: {n}" for b, n in results.get("backend_notes", {}).items() if b in ran]
    if notes:
        out += ["", "Notes: " + "; ".join(notes) + "."]
    if skipped:
        out += ["", "Skipped or failed: " + "; ".join(f"{b} ({why})" for b, why in skipped) + "."]
    if png:
        out += ["", f"![benchmark results]({png})"]
    if grid_png:
        out += ["", f"![latency over batch, sequence length and hidden size]({grid_png})"]
    return "\n".join(out)


def update_readme(path: str | Path, section: str | None) -> None:
    """Replace the text between the bench markers of ``path`` with ``section`` (None: only
    check that the file has the markers)."""
    from seqfuse.errors import SeqfuseError

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SeqfuseError(f"cannot read {path}: {e}") from None
    i, j = text.find(START), text.find(END)
    if i < 0 or j < 0 or j < i:
        raise SeqfuseError(f"{path} has no {START} ... {END} section to update")
    if section is None:
        return
    new = text[: i + len(START)] + "\n" + section.strip() + "\n" + text[j:]
    path.write_text(new, encoding="utf-8")
