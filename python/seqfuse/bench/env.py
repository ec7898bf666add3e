"""Environment fingerprint of a benchmark run: CPU, flags, cores, versions, GPU.

Enough to tell whether two result files are comparable. Reads /proc/cpuinfo where it
exists and falls back to the platform module. Checked by tests/test_bench.py.
"""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Any

SIMD_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx512_bf16", "avx512_vnni", "avx2", "fma")


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if ":" in line:
                    k, v = line.split(":", 1)
                    info.setdefault(k.strip(), v.strip())
    except OSError:
        pass
    return info


def cpu_mhz_estimate(info: dict[str, str] | None = None) -> float | None:
    """Clock estimate: 'cpu MHz' or half the BogoMIPS (both rough under a hypervisor)."""
    info = _cpuinfo() if info is None else info
    for key, scale in (("cpu MHz", 1.0), ("bogomips", 0.5)):
        try:
            v = float(info[key]) * scale
        except (KeyError, ValueError):
            continue
        if v > 100:
            return v
    return None


def _caches() -> dict[str, str]:
    """Data/unified cache sizes of CPU 0 by level (Linux sysfs), e.g. {"L1d": "48K"}."""
    out: dict[str, str] = {}
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        return out
    for e in entries:
        if not e.startswith("index"):
            continue
        try:
            with open(f"{base}/{e}/level") as f:
                level = f.read().strip()
            with open(f"{base}/{e}/type") as f:
                kind = f.read().strip()
            with open(f"{base}/{e}/size") as f:
                size = f.read().strip()
        except OSError:
            continue
        if kind != "Instruction":
            out[f"L{level}" + ("d" if kind == "Data" else "")] = size
    return out


def cache_bytes() -> dict[str, int]:
    """The cache sizes of :func:`_caches` in bytes ("48K" -> 49152); unparsable ones left out."""
    out = {}
    for level, size in _caches().items():
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1:].upper(), 1)
        digits = size[:-1] if mult > 1 else size
        if digits.isdigit() and int(digits) > 0:
            out[level] = int(digits) * mult
    return out


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for mod in ("torch", "onnxruntime", "openvino", "onnx", "numpy"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:
            out[mod] = None
    from seqfuse.version import __version__

    out["seqfuse"] = __version__
    out["python"] = platform.python_version()
    return out


def _gpu() -> dict[str, Any] | None:
    import torch

    if not torch.cuda.is_available():
        return None
    p = torch.cuda.get_device_properties(0)
    gpu: dict[str, Any] = {
        "name": p.name,
        "count": torch.cuda.device_count(),
        "memory_gib": round(p.total_memory / 2**30, 1),
        "capability": f"{p.major}.{p.minor}",
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }
    try:
        r = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        gpu["driver"] = r.stdout.strip().splitlines()[0] if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, IndexError):
        gpu["driver"] = None
    return gpu


def load_average() -> float | None:
    """1-minute load average (None where the OS has none): a busy machine's timings lie."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def fingerprint(threads_used: int = 1, load_before: float | None = None) -> dict[str, Any]:
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    try:
        import seqfuse

        build = seqfuse.build_info()
    except Exception as e:  # the compiled core is missing: say so, do not fail the run
        build = {"error": f"{type(e).__name__}: {e}"}
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {
        "cpu": info.get("model name") or platform.processor() or platform.machine(),
        "cpu_id": " ".join(
            f"{label}{info[k]}"
            for k, label in (("vendor_id", ""), ("cpu family", "family "), ("model", "model "))
            if k in info
        ),
        "cpu_caches": _caches(),
        "cpu_flags": [f for f in SIMD_FLAGS if f in flags],
        "cpu_mhz_estimate": cpu_mhz_estimate(info),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": affinity,
        "threads_used_max": threads_used,
        "platform": platform.platform(),
        "versions": _versions(),
        "seqfuse_build": build,
        "gpu": _gpu(),
        # 1-minute load average when the run started and ended; above the core count,
        # other work competed for the CPU and the timings are unreliable
        "load_avg_start": load_before,
        "load_avg_end": load_average(),
    }


def busy_warning(env: dict[str, Any]) -> str | None:
    cores = env.get("usable_cpus") or 1
    loads = [v for v in (env.get("load_avg_start"), env.get("load_avg_end")) if v is not None]
    if loads and max(loads) > 0.75 * cores + 0.5:
        return (
            f"WARNING: the machine was busy (load average up to {max(loads):.1f} on {cores} "
            "cores): other work competed for the CPU; rerun on a quiet machine before "
            "trusting these numbers"
        )
    return None


def summary_line(env: dict[str, Any]) -> str:
    v = env["versions"]
    b = env.get("seqfuse_build", {})
    flags = "/".join(f for f in env["cpu_flags"] if f in ("avx512f", "avx2")) or "no AVX2"
    gpu = env.get("gpu")
    gpu_s = f"{gpu['name']} (driver {gpu.get('driver')})" if gpu else "no GPU"
    ident = "; ".join(
        x for x in (env.get("cpu_id", ""), "L2 " + env.get("cpu_caches", {}).get("L2", "?")) if x
    )
    return (
        f"{env['cpu']} ({ident}), {env['usable_cpus']} cores ({flags}); {gpu_s}; "
        f"torch {v['torch']}, "
        f"onnxruntime {v['onnxruntime']}, seqfuse {v['seqfuse']} "
        f"(SIMD {b.get('simd', '?')}, CUDA {'on' if b.get('cuda') else 'off'})"
    )
