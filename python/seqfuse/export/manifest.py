"""Export pipeline and manifest: write every requested format, verify it, record it.

:func:`export_model` / :func:`export_checkpoint` write ``model.ts.pt``, ``model.onnx``,
``model.pt2``, ``model.seqfuse.safetensors`` and ``manifest.json`` (schema in
docs/EXPORT.md). A format that cannot be produced for the model records its reason
(status ``unavailable``); a format that is produced but does not verify, or whose exporter
fails, records status ``failed`` and the whole export raises :class:`ExportError` naming
the error, after the manifest is written so the evidence stays on disk.

Checked by tests/test_export.py and tests/test_export_cli.py.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqfuse.errors import SeqfuseError
from seqfuse.export import formats as F
from seqfuse.export import verify as V
from seqfuse.export.quiet import error_line, quiet_torch
from seqfuse.export.wrappers import ModelSpec
from seqfuse.version import __version__

MANIFEST_FORMAT = "seqfuse-export-manifest"
MANIFEST_VERSION = 1
FORMATS = ("torchscript", "onnx", "aoti", "native")
FILES = {
    "torchscript": "model.ts.pt",
    "onnx": "model.onnx",
    "aoti": "model.pt2",
    "native": "model.seqfuse.safetensors",
}
# The export shape: batch 2 and the task's natural sequence length (the .pt2 keeps it).
EXPORT_BATCH = 2
SEQ_LEN = {"hihell": 6, "names": 12, "mnist": 28, "sine": 20, "shakespeare": 32}
DEFAULT_SEQ_LEN = 16


class ExportError(SeqfuseError):
    """An artifact failed to export or to verify; the message names format and error."""


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _version(mod: str) -> str | None:
    try:
        m = __import__(mod)
    except Exception:
        return None
    return str(getattr(m, "__version__", "unknown"))


def versions(fmt: str | None = None) -> dict[str, Any]:
    """Versions of the software that produced (and verified) an artifact."""
    v: dict[str, Any] = {"seqfuse": __version__, "torch": torch.__version__}
    if fmt in (None, "onnx"):
        v.update(onnx=_version("onnx"), onnxruntime=_version("onnxruntime"))
        v["onnxscript"] = _version("onnxscript")
    if fmt is None:
        v["python"] = platform.python_version()
    return v


def parse_formats(formats: str | Iterable[str]) -> list[str]:
    """'torchscript,onnx' or a list -> validated list; 'all' means every format."""
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    items = [f.strip().lower() for f in items if f.strip()]
    if items == ["all"]:
        return list(FORMATS)
    if not items:
        raise SeqfuseError(f"no format given; choose from {', '.join(FORMATS)}")
    bad = [f for f in items if f not in FORMATS]
    if bad:
        raise SeqfuseError(
            f"unknown format {', '.join(repr(b) for b in bad)}; choose from {', '.join(FORMATS)}"
        )
    return list(dict.fromkeys(items))


def _prepare_out_dir(out_dir: str | os.PathLike) -> Path:
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".seqfuse-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise SeqfuseError(f"cannot write to output directory {out}: {e.strerror or e}") from None
    return out


def _export_one(
    fmt: str, model: nn.Module, spec: ModelSpec, x: torch.Tensor, path: Path
) -> dict[str, Any]:
    shape = tuple(x.shape)
    rec: dict[str, Any] = {"file": path.name}
    if fmt == "torchscript":
        sm, info = F.torchscript_with_info(model, (x,))
        tmp = path.with_name(f".{path.name}.tmp")
        with quiet_torch([]):  # torch.jit.save's deprecation: already noted in info
            torch.jit.save(sm, str(tmp))
        os.replace(tmp, path)
        rec.update(info)
        rec["inputs"] = (
            ["x", "hx (optional: h0, or (h0, c0) for LSTM)", "lengths (optional)"]
            if spec.is_seq
            else ["x"]
        )
        rec["dynamic"] = {"batch": True, "seq": True} if spec.is_seq else {"batch": True}
        rec["verification"] = V.verify_torchscript(path, model, spec, shape)
    elif fmt == "onnx":
        info = F.to_onnx(model, path, (x,))
        rec.update(info)
        facts = info["facts"]
        rec["inputs"] = [
            i["name"] + (" (optional)" if i["optional"] else "") for i in facts["inputs"]
        ]
        rec["dynamic"] = {"batch": True, "seq": True} if spec.is_seq else {"batch": True}
        if spec.is_seq and not info["lengths_input"]:
            rec["limits"] = [V.ONNX_NO_LENGTHS]
    elif fmt == "aoti":
        _, info = F.aoti_with_info(model, path, (x,))
        rec.update(info)
        rec["inputs"] = ["x"]
        rec["verification"] = V.verify_aoti(
            path, model, spec, shape, dynamic_seq=info["dynamic"].get("seq", False)
        )
    elif fmt == "native":
        F.to_native(model, path)
        rec["exporter"] = "seqfuse.native.from_module(model).save(path)"
        rec["inputs"] = (
            ["x", "hx (optional: h0, or (h0, c0) for LSTM)", "lengths (optional)"]
            if spec.is_seq
            else ["x"]
        )
        rec["dynamic"] = {"batch": True, "seq": True} if spec.is_seq else {"batch": True}
        rec["verification"] = V.verify_native(path, model, spec, shape)
    rec["sha256"] = sha256_of(path)
    rec["bytes"] = path.stat().st_size
    rec["versions"] = versions(fmt)
    v = rec["verification"]
    rec["status"] = "verified" if v["ok"] else "failed"
    rec["max_abs_err"] = v["max_abs_err"]
    rec["max_err"] = v["max_err"]  # |got - eager| / max(1, |eager|): what the tolerance bounds
    rec["tolerance"] = v["tolerance"]
    rec["verified_on"] = [c["inputs"] for c in v["checks"]]
    if not v["ok"]:
        rec["error"] = v["error"]
    return rec


def export_model(
    model: nn.Module,
    formats: str | Iterable[str],
    out_dir: str | os.PathLike,
    *,
    task: str | None = None,
    seq_len: int | None = None,
    progress: bool = True,
    source: dict[str, Any] | None = None,
    raise_on_failure: bool = True,
) -> dict[str, Any]:
    """Export an in-memory seqfuse model; see :func:`export_checkpoint`."""
    fmts = parse_formats(formats)
    try:
        spec = ModelSpec.of(model)
    except ValueError as e:
        raise SeqfuseError(str(e)) from None
    T = int(seq_len if seq_len is not None else SEQ_LEN.get(task or "", DEFAULT_SEQ_LEN))
    if T < 1:  # checked before the output dir is made
        raise SeqfuseError(f"--seq-len must be >= 1, got {T}")
    out = _prepare_out_dir(out_dir)
    model = model.eval().cpu()
    x = spec.example(EXPORT_BATCH, T, seed=0)
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": source or {},
        "model": {
            "task": task,
            "config": spec.config,
            "export_input": {"x": list(x.shape), "dtype": str(x.dtype).replace("torch.", "")},
            "outputs": spec.output_names,
        },
        "versions": versions(),
        "artifacts": {},
    }
    from tqdm.auto import tqdm

    bar = tqdm(fmts, desc="export", unit="format", disable=not progress, leave=False)
    for fmt in bar:
        bar.set_postfix_str(fmt)
        path = out / FILES[fmt]
        try:
            rec = _export_one(fmt, model, spec, x, path)
        except F.FormatUnavailable as e:
            rec = {"file": None, "status": "unavailable", "reason": str(e)}
            path.unlink(missing_ok=True)
        except Exception as e:
            rec = {
                "file": None,
                "status": "failed",
                "error": error_line(e),
                "versions": versions(fmt),
            }
            path.unlink(missing_ok=True)
        manifest["artifacts"][fmt] = rec
    bar.close()
    write_manifest(manifest, out / "manifest.json")
    failed = {k: v for k, v in manifest["artifacts"].items() if v["status"] == "failed"}
    if failed and raise_on_failure:
        msg = "; ".join(f"{k}: {v['error']}" for k, v in failed.items())
        raise ExportError(f"export did not verify ({msg}); details in {out / 'manifest.json'}")
    return manifest


def write_manifest(manifest: dict[str, Any], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)


def export_checkpoint(
    ckpt_path: str | os.PathLike,
    formats: str | Iterable[str],
    out_dir: str | os.PathLike,
    progress: bool = True,
    seq_len: int | None = None,
) -> dict[str, Any]:
    """Export a seqfuse checkpoint to verified artifacts plus ``manifest.json``.

    Returns the manifest dict. Raises :class:`SeqfuseError` for a missing/corrupt
    checkpoint, an unknown format or an unwritable ``out_dir``, and :class:`ExportError`
    when an artifact fails to export or verify.
    """
    from seqfuse.train.checkpoint import model_from_checkpoint

    fmts = parse_formats(formats)  # fail on a bad format before the (slow) work
    model, ckpt = model_from_checkpoint(ckpt_path)
    source = {
        "checkpoint": Path(ckpt_path).name,
        "sha256": sha256_of(ckpt_path),
        "task": ckpt.get("task"),
        "epoch": ckpt.get("epoch"),
    }
    return export_model(
        model, fmts, out_dir, task=ckpt.get("task"), seq_len=seq_len, progress=progress,
        source=source,
    )  # fmt: skip


def summary_rows(manifest: dict[str, Any]) -> list[list[str]]:
    """Rows of the verification table: format, status, file, error / tol, exporter."""
    rows = []
    for fmt, a in manifest["artifacts"].items():
        if a["status"] == "unavailable":
            rows.append([fmt, "n/a", "-", "-", a["reason"]])
            continue
        err = a.get("max_err", a.get("max_abs_err"))
        err_s = "-" if err is None else f"{err:.1e} <= {a['tolerance']:g}"
        if a["status"] == "failed":
            err_s = "-" if err is None else f"{err:.1e} > {a.get('tolerance', 0):g}"
        detail = a.get("exporter", "")
        if fmt == "onnx" and "chosen" in a:
            detail = f"{a['chosen']} exporter"
            other = a["candidates"].get("dynamo", {})
            if a["chosen"] == "legacy" and other.get("error"):
                err = other["error"]
                if "no native RNN node" in err:
                    err = "unrolled the RNN"
                elif "invalid dimension" in err.lower():
                    err = "fixed a dynamic axis"
                detail += f" (dynamo {err[:60]})"
        if a["status"] == "failed":
            detail = a.get("error", "")
        n = len(a.get("verified_on", []))
        status = f"ok ({n} checks)" if a["status"] == "verified" else "FAILED"
        rows.append([fmt, status, a.get("file") or "-", err_s, detail])
    return rows


def format_table(manifest: dict[str, Any]) -> str:
    head = ["format", "verified", "file", "error / tol", "exporter / reason"]
    rows = [head, *summary_rows(manifest)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    lines = []
    for k, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
        if k == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * len(head[-1]))
    return "\n".join(lines)
