"""Load figures for `seqfuse serve`: throughput and p50/p99 latency at 1, 8 and 32 concurrent
HTTP clients, with dynamic batching (the default --max-batch-size) and without it
(--max-batch-size 1), against one process calling the native model directly.

The model is the names GRU (seed preset "names": Embedding(59, 128) -> 2-layer GRU(100) ->
Linear(18), seeded random weights, nothing trained), one request = one name of 12 token ids
(batch 1). Served outputs are checked against the direct call (<= 1e-5) before anything is
timed; a mismatch or a failed request stops the run. Figures only: no pass/fail bar. The
results are in docs/SCALE.md ("Load figures"). Not collected by pytest (not test_*.py).

Run: ``python benchmarks/serve_load.py [--seconds 4] [--json out.json]`` (needs the serve
extra; about 2-3 minutes on 2 cores, most of it Ray starting twice).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

CLIENTS = (1, 8, 32)
SEQ_LEN = 12  # the names task's padded length (as in seqfuse bench)
START_TIMEOUT = 240.0  # Ray + Serve start, on a busy small machine
STOP_TIMEOUT = 90.0
REQUEST_TIMEOUT = 30.0


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}"


def loadavg() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentiles(lat_s: list[float]) -> tuple[float, float]:
    a = np.asarray(lat_s) * 1000.0
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def build_seed_model(folder: Path) -> tuple[Path, np.ndarray]:
    """The names GRU with seeded random weights as a native weight file, and one request."""
    import torch
    from seqfuse import native
    from seqfuse.models import build_model, preset

    torch.manual_seed(0)
    cfg = preset("names")
    module = build_model(cfg).eval()
    path = folder / "names.seqfuse.safetensors"
    native.from_module(module).save(path)
    g = np.random.default_rng(0)
    x = g.integers(0, cfg["vocab_size"], size=(1, SEQ_LEN), dtype=np.int64)
    return path, x


def direct(path: Path, x: np.ndarray, warmup: float, seconds: float) -> tuple[dict, np.ndarray]:
    """One process calling the native model in a loop (batch 1, 1 thread)."""
    from seqfuse import native

    model = native.load(path, threads=1)
    y = np.asarray(model(x, need_state=False)[0])
    end = time.perf_counter() + warmup
    while time.perf_counter() < end:
        model(x, need_state=False)
    lat: list[float] = []
    t0 = time.perf_counter()
    end = t0 + seconds
    while True:
        a = time.perf_counter()
        if a >= end:
            break
        model(x, need_state=False)
        lat.append(time.perf_counter() - a)
    elapsed = time.perf_counter() - t0
    p50, p99 = percentiles(lat)
    return {"requests": len(lat), "per_s": len(lat) / elapsed, "p50_ms": p50, "p99_ms": p99}, y


class Server:
    """`seqfuse serve MODEL` as a subprocess on 127.0.0.1; stopped with SIGINT."""

    def __init__(self, model: Path, max_batch_size: int | None, log: Path) -> None:
        self.port = free_port()
        cmd = [sys.executable, "-m", "seqfuse", "serve", str(model), "--port", str(self.port)]
        if max_batch_size is not None:
            cmd += ["--max-batch-size", str(max_batch_size)]
        env = dict(os.environ)
        env.pop("SEQFUSE_DEBUG", None)
        self.log = log
        self._log = open(log, "w")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self.banner = ""

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT)
        try:
            c.request(method, path, body, {"Content-Type": "application/json"} if body else {})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def wait_healthy(self) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < START_TIMEOUT:
            if self.proc.poll() is not None:
                raise SystemExit(f"seqfuse serve exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    up = time.monotonic() - t0
                    # the banner (with the batch settings) follows serve.run() returning
                    for _ in range(60):
                        lines = self.log.read_text(errors="replace").splitlines()
                        self.banner = next((s for s in lines if s.startswith("seqfuse serve:")), "")
                        if self.banner:
                            break
                        time.sleep(0.25)
                    return up
            except OSError:
                pass
            time.sleep(0.5)
        raise SystemExit(
            f"seqfuse serve: no healthy /healthz in {START_TIMEOUT:g} s:\n{self.tail()}"
        )

    def max_batch_size(self) -> int | None:
        m = re.search(r"batches of up to (\d+)", self.banner)
        return int(m.group(1)) if m else None

    def metrics(self) -> dict:
        status, raw = self.request("GET", "/v1/metrics")
        return json.loads(raw) if status == 200 else {}

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                print(f"seqfuse serve: no exit {STOP_TIMEOUT:g} s after SIGINT; killing it")
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._log.close()
        return self.proc.returncode


def drive(port: int, body: bytes, clients: int, warmup: float, seconds: float) -> dict:
    """``clients`` threads, each with one keep-alive connection, POST the same request back
    to back; requests that start and end inside the timed window count."""
    t_start = time.perf_counter() + warmup
    t_end = t_start + seconds
    lat: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    headers = {"Content-Type": "application/json", "Connection": "keep-alive"}

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
        try:
            while True:
                a = time.perf_counter()
                if a >= t_end:
                    return
                try:
                    conn.request("POST", "/v1/predict", body, headers)
                    r = conn.getresponse()
                    raw = r.read()
                    status = r.status
                except (OSError, http.client.HTTPException) as e:
                    conn.close()  # reconnect on the next request
                    errors.append(f"{type(e).__name__}: {e}")
                    continue
                b = time.perf_counter()
                if status != 200:
                    errors.append(f"HTTP {status}: {raw[:200]!r}")
                elif a >= t_start and b <= t_end:
                    lat[i].append(b - a)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=warmup + seconds + REQUEST_TIMEOUT + 10)
    if any(t.is_alive() for t in threads):
        errors.append("a client thread did not finish in time")
    flat = [v for per in lat for v in per]
    if not flat:
        raise SystemExit(f"no request completed at {clients} clients: {errors[:3]}")
    p50, p99 = percentiles(flat)
    return {
        "clients": clients,
        "requests": len(flat),
        "per_s": len(flat) / seconds,
        "p50_ms": p50,
        "p99_ms": p99,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def serve_runs(model: Path, x: np.ndarray, y: np.ndarray, args, folder: Path) -> list[dict]:
    body = json.dumps({"inputs": x.tolist()}).encode()
    rows: list[dict] = []
    for label, mbs in (("batching", None), ("no batching", 1)):
        server = Server(model, mbs, folder / f"serve-{mbs or 'default'}.log")
        try:
            up = server.wait_healthy()
            print(f"  {label}: healthy after {up:.1f} s; {server.banner}", flush=True)
            status, raw = server.request("POST", "/v1/predict", body)
            if status != 200:
                raise SystemExit(f"validation request failed: HTTP {status} {raw[:200]!r}")
            got = np.asarray(json.loads(raw)["outputs"], dtype=np.float32)
            err = float(np.max(np.abs(got - y))) if got.shape == y.shape else float("inf")
            if not err <= 1e-5:
                raise SystemExit(f"served outputs differ from the direct call: {err} ({got.shape})")
            for n in args.clients:
                before = server.metrics()
                row = drive(server.port, body, n, args.warmup, args.seconds)
                after = server.metrics()
                calls = after.get("batches", 0) - before.get("batches", 0)
                reqs = after.get("requests", 0) - before.get("requests", 0)
                row.update(
                    mode=label,
                    max_batch_size=mbs or server.max_batch_size(),
                    max_abs_err=err,
                    mean_batch=reqs / calls if calls else None,
                )
                rows.append(row)
                mb = f", {row['mean_batch']:.1f} req/call" if row["mean_batch"] else ""
                print(
                    f"  {label}, {n} clients: {row['per_s']:.0f} req/s, p50 "
                    f"{row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms{mb}"
                    + (f", {row['errors']} errors ({row['first_error']})" if row["errors"] else ""),
                    flush=True,
                )
        finally:
            rc = server.stop()
            clean = "seqfuse serve: stopped" in server.tail(50)
            print(f"  {label}: server stopped by SIGINT (exit {rc}, clean: {clean})", flush=True)
    return rows


def table(base: dict, rows: list[dict]) -> str:
    out = [
        "| setup | clients | throughput (req/s) | p50 (ms) | p99 (ms) | requests per native call |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        f"| direct native call, one process (batch 1, 1 thread) | 1 | {base['per_s']:.0f} "
        f"| {base['p50_ms']:.3f} | {base['p99_ms']:.3f} | 1 |",
    ]
    for r in rows:
        setup = (
            f"`seqfuse serve`, dynamic batching (max {r['max_batch_size']})"
            if r["mode"] == "batching"
            else "`seqfuse serve --max-batch-size 1` (no batching)"
        )
        mb = f"{r['mean_batch']:.1f}" if r["mean_batch"] else "?"
        err = f" ({r['errors']} errors)" if r["errors"] else ""
        out.append(
            f"| {setup} | {r['clients']} | {r['per_s']:.0f}{err} | {r['p50_ms']:.1f} "
            f"| {r['p99_ms']:.1f} | {mb} |"
        )
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="timed seconds per point")
    ap.add_argument("--warmup", type=float, default=1.0, help="untimed seconds before each")
    ap.add_argument(
        "--clients", type=lambda s: [int(v) for v in s.split(",")], default=list(CLIENTS),
        help="concurrent clients, comma-separated",
    )  # fmt: skip
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = ap.parse_args()

    from seqfuse.version import __version__

    t0 = time.monotonic()
    info: dict[str, Any] = {
        "machine": machine(),
        "python": platform.python_version(),
        "seqfuse": __version__,
        "loadavg_before": loadavg(),
        "model": "names GRU (preset 'names', seeded random weights), 1 x 12 token ids",
        "seconds": args.seconds,
        "warmup": args.warmup,
    }
    print(f"machine: {info['machine']}; load average before: {info['loadavg_before']}")
    with tempfile.TemporaryDirectory(prefix="seqfuse-serve-load-") as tmp:
        folder = Path(tmp)
        model, x = build_seed_model(folder)
        base, y = direct(model, x, args.warmup, args.seconds)
        print(
            f"  direct: {base['per_s']:.0f} calls/s, p50 {base['p50_ms']:.3f} ms, "
            f"p99 {base['p99_ms']:.3f} ms",
            flush=True,
        )
        rows = serve_runs(model, x, y, args, folder)
    info["loadavg_after"] = loadavg()
    info["wall_s"] = round(time.monotonic() - t0, 1)
    print()
    print(table(base, rows))
    print()
    print(
        f"machine: {info['machine']}; load average (1/5/15 min) before "
        f"{info['loadavg_before']}, after {info['loadavg_after']}; {info['wall_s']} s in all"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps({**info, "direct": base, "serve": rows}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
