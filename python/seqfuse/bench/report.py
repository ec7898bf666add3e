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

# Register-blocked AVX-512 matvec streaming weights from L1/L2, measured on this project's
# dev machine kind (docs/BENCHMARKS.md): the per-core ceiling a batch-1 step can reach.
CACHE_BYTES_PER_CYCLE = 62.0
# fp32 FLOPs per cycle per core: two FMA pipes of the widest SIMD (x2 for multiply-add).
FLOPS_PER_CYCLE = {"avx512": 64.0, "avx2": 32.0, "portable": 8.0}

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
UNSTEADY = 0.25  # drift above which a row is marked unsteady

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
]


def roofline_peak(env: dict[str, Any]) -> dict[str, Any]:
    simd = env.get("seqfuse_build", {}).get("simd")
    if simd not in FLOPS_PER_CYCLE:
        flags = env.get("cpu_flags", [])
        simd = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "portable"
    mhz = env.get("cpu_mhz_estimate") or 2500.0
    ghz = mhz / 1000.0
    return {
        "clock_ghz": round(ghz, 2),
        "simd": simd,
        "gflops_per_core": round(ghz * FLOPS_PER_CYCLE[simd], 1),
        "gbps_per_core": round(ghz * CACHE_BYTES_PER_CYCLE, 1),
        "assumption": (
            f"clock {ghz:.2f} GHz (from /proc/cpuinfo; rough under a hypervisor); "
            f"{FLOPS_PER_CYCLE[simd]:g} fp32 FLOP/cycle/core ({simd}, 2 FMA pipes); "
            f"{CACHE_BYTES_PER_CYCLE:g} B/cycle/core of weights streamed from L1/L2 "
            "(measured register-blocked matvec). Weights larger than L2 stream from L3 or "
            "DRAM at a lower ceiling; peaks scale with the threads used."
        ),
    }


def add_roofline(results: dict[str, Any]) -> None:
    """Achieved GB/s of weights and GFLOP/s for every timed row (shown for native ones)."""
    peak = results["peak"]
    cpus = results["environment"].get("usable_cpus") or 1
    costs = {w["id"]: w for w in results["workloads"]}
    for r in results["results"]:
        if r["status"] != "ok":
            continue
        w = costs[r["workload"]]
        sec = r["median_us"] * 1e-6
        cores = min(r["threads"], cpus)
        gbps = w["weight_bytes"] / sec / 1e9
        gflops = w["flops"] / sec / 1e9
        r["roofline"] = {
            "weight_bytes": w["weight_bytes"],
            "flops": w["flops"],
            "gbps": gbps,
            "gflops": gflops,
            "pct_peak_bw": 100 * gbps / (peak["gbps_per_core"] * cores),
            "pct_peak_flops": 100 * gflops / (peak["gflops_per_core"] * cores),
        }


def _find(results: dict, workload: str, threads: int, backend: str) -> dict | None:
    for r in results["results"]:
        if r["workload"] == workload and r["threads"] == threads and r["backend"] == backend:
            return r
    return None


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


def format_table(results: dict[str, Any], show_skipped: bool = True) -> str:
    """The terminal table: per thread count and workload, one line per backend."""
    lines = [f"seqfuse bench: {summary_line(results['environment'])}"]
    warn = busy_warning(results["environment"])
    if warn:
        lines.append(warn)
    wls = {w["id"]: w for w in results["workloads"]}
    hdr = (
        f"  {'backend':<16}{'median us':>10}{'p99 us':>9}{'seq/s':>8}{'steps/s':>8}"
        f"{'x eager':>9}{'x peer':>9}  {'max err':>8}  {'GB/s':>6}{'GFLOP/s':>8}{'%peak':>6}"
    )
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
                if r["status"] != "ok":
                    if show_skipped or r["status"] != "skipped":
                        lines.append(f"  {name:<16}{r['status'].upper()}: {r['reason']}")
                    continue
                roof = r.get("roofline") if r["backend"].startswith("native") else None
                roof_s = (
                    f"{roof['gbps']:>6.1f}{roof['gflops']:>8.1f}{roof['pct_peak_bw']:>5.0f}%"
                    if roof
                    else ""
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
        " peers are the non-seqfuse backends) in the same run, workload and thread count."
    )
    ran = {r["backend"] for r in results["results"] if r["status"] == "ok"}
    for b, note in results.get("backend_notes", {}).items():
        if b in ran:
            lines.append(f"{b}: {note}.")
    lines.append(
        f"~ after a median: unsteady run (the medians of its two halves differ by more than "
        f"{UNSTEADY:.0%}): noise, rerun on a quiet machine."
    )
    lines.append(
        "GB/s, GFLOP/s, %peak: weights read and FLOPs of the minimal work per call, over the "
        f"median; %peak of the weight-streaming ceiling: {results['peak']['assumption']}"
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
    targets and the plot. Rows: seed workloads at each thread count."""
    res = results["results"]
    seed = [w for w in results["workloads"] if w["group"] == "seed"]
    cols = backend_columns(results, {r["backend"] for r in res if r["status"] == "ok"})
    skipped = sorted(
        {(r["backend"], r["reason"]) for r in res if r["status"] != "ok" and r["backend"]}
    )
    out = [
        f"Generated by `{command}` on {results['created_utc']} (do not edit by hand: rerun the "
        "command). Median latency in µs per call; every backend matched eager PyTorch before "
        "it was timed. Method and JSON schema: [docs/BENCHMARKS.md](docs/BENCHMARKS.md).",
        "",
        f"Machine: {summary_line(results['environment'])}.",
        "",
    ]
    warn = busy_warning(results["environment"])
    if warn:
        out += [f"**{warn}.**", ""]
    head = ["model", "threads"] + cols + ["native ÷ eager", "native ÷ ORT", "native ÷ best peer"]
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
