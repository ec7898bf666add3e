"""The GPU self-check of seqfuse's CUDA backend, and its per-step timer.

``python -m seqfuse.bench.cuda_check --out DIR`` runs every seed model through every CUDA
kernel path: parity with eager PyTorch (CPU, fp32, 1e-5), the kernel plan, batch-1 latency
(plain and CUDA-graphed) and the streaming step on every path; it prints a table and writes
cuda_check.json. It is tooling, not runtime: it lives beside the benchmarks and uses their
timing loop. docs/CUDA.md says when to run it.

Checked by tests/test_native_cuda.py (test_cuda_self_check_writes_parity_and_timings on a
GPU, test_cuda_self_check_says_why_it_cannot_run without one).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from seqfuse.bench.harness import time_calls
from seqfuse.models.presets import preset
from seqfuse.models.seq import build_model, example_input
from seqfuse.native import from_module
from seqfuse.native.contract import InvalidArgumentError
from seqfuse.native.cuda import CudaNativeModel, unavailable_reason

__all__ = ["main", "time_per_step"]


def time_per_step(
    model: CudaNativeModel,
    batch: int = 1,
    short: int = 64,
    long: int = 1024,
    repeats: int = 20,
    path: str | None = None,
) -> dict[str, float]:
    """Per-timestep cost of the sequence loop, free of launch overhead: the median time of a
    ``long``-step call minus that of a ``short``-step call, over the step difference (CUDA
    events, after a warm-up). Returns microseconds: per_step, short_call, long_call."""
    m = model
    dev = m.device
    times: dict[int, float] = {}
    for steps in (short, long):
        if m._tokens:
            x = torch.randint(0, m._V, (batch, steps), device=dev)
        else:
            x = torch.randn(batch, steps, m._D, device=dev)
        if not m._batch_first:
            x = x.transpose(0, 1).contiguous()
        for _ in range(3):
            m.forward(x, validate=False, path=path)
        samples = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            m.forward(x, validate=False, path=path)
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) * 1000.0)
        times[steps] = sorted(samples)[len(samples) // 2]
    return {
        "per_step": (times[long] - times[short]) / (long - short),
        "short_call": times[short],
        "long_call": times[long],
    }


def _latency_us(fn: Any, repeats: int) -> tuple[float, float]:
    """Median and p99 wall time of fn() + synchronize, in microseconds, after 5 warm-up
    calls: seqfuse bench's timing loop (gc off while timing), exactly ``repeats`` calls."""
    ns = sorted(time_calls(fn, torch.cuda.synchronize, 0.0, 5, repeats, repeats))
    samples = [t / 1e3 for t in ns]
    return samples[len(samples) // 2], samples[min(len(samples) - 1, int(0.99 * len(samples)))]


def main(argv: list[str] | None = None) -> int:
    """GPU self-check of the seed models: parity with eager (CPU), the kernel plan, batch-1
    latency (plain and graphed, every path), per-step cost and the streaming step. Prints a
    table and writes cuda_check.json into --out. ``python -m seqfuse.bench.cuda_check --out DIR``.
    Exit status 1 (naming the checks) when any parity error exceeds 1e-5, 2 without CUDA."""
    ap = argparse.ArgumentParser(
        prog="python -m seqfuse.bench.cuda_check", description=main.__doc__
    )
    ap.add_argument("--out", default=".", help="directory for cuda_check.json")
    ap.add_argument("--repeats", type=int, default=200, help="timed calls per measurement")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    tol = 1e-5  # fp32 native vs eager, the project's parity bound
    failures: list[str] = []
    why = unavailable_reason()
    if why is not None:
        print(f"CUDA backend unavailable: {why}")
        return 2
    steps = {"sine": 20, "hihell": 6, "names": 12, "mnist": 28, "shakespeare": 100}
    report: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(),
        "capability": list(torch.cuda.get_device_capability()),
        "torch": torch.__version__,
        "models": {},
    }
    for name, T in steps.items():
        cfg = preset(name)
        torch.manual_seed(0)
        m = build_model(cfg).eval()
        x = example_input(cfg, batch=1, seq_len=T, seed=0)
        nm = from_module(m)
        with torch.no_grad():
            want = m(x)[0]
        row: dict[str, Any] = {"T": T}
        for path in ("auto", "persistent", "step", "fused"):
            try:
                gm = CudaNativeModel(nm, "cuda", path=path)
                xc = x.cuda()
                got = gm(xc, validate=False)[0].cpu()
            except InvalidArgumentError as e:
                row[path] = {"unsupported": str(e)}
                continue
            err = float((got - want).abs().max())
            if not err <= tol:  # also catches NaN
                failures.append(f"{name} path={path}: max abs err {err:.3g} > {tol:g}")
            med, p99 = _latency_us(lambda gm=gm, xc=xc: gm(xc, validate=False), args.repeats)
            g = gm.graphed(1, T)
            gmed, gp99 = _latency_us(lambda g=g, xc=xc: g(xc), args.repeats)
            row[path] = {
                "max_err": err,
                "us": med,
                "us_p99": p99,
                "graph_us": gmed,
                "graph_p99": gp99,
            }
            if path == "auto":
                row["plan"] = gm.describe(1)
                row["per_step_us"] = time_per_step(gm, 1, 16, 16 + 8 * T, 20)["per_step"]
        if cfg.get("vocab_size", 0) and not cfg.get("bidirectional", False):
            # One token per call on every path, so that auto's choice for streaming can be
            # checked against the alternatives.
            tok = x[:, :1].cuda()
            row["stream"] = {}
            for path in ("auto", "fused", "persistent", "step"):
                gm = CudaNativeModel(nm, "cuda", path=path)
                cell: dict[str, Any] = {}
                try:
                    for graph in (False, True):
                        sess = gm.stream(1, graph=graph, validate=False)
                        med, p99 = _latency_us(lambda s=sess, t=tok: s(t), args.repeats)
                        cell["graph" if graph else "plain"] = [med, p99]
                except InvalidArgumentError as e:
                    cell = {"unsupported": str(e)}
                row["stream"][path] = cell
        report["models"][name] = row
        print(name, json.dumps({k: v for k, v in row.items() if k != "plan"}, default=str))
        print(row.get("plan", ""))
    out = Path(args.out) / "cuda_check.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")
    if failures:
        print("parity check FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
