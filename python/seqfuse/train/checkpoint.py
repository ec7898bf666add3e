"""Checkpoints: atomic save, validated load, and model rebuild from the checkpoint alone.

A checkpoint is a torch.save'd dict (loaded with ``weights_only=True``, so no pickle code
runs) holding: format/version, task, model config, model/optimizer/scheduler state, epoch,
RNG state, metrics and task extras (e.g. a vocabulary). Checked by tests/test_train.py
(resume equivalence, corrupt/truncated/wrong-task files).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqfuse import SeqfuseError
from seqfuse.models import build_model

FORMAT = "seqfuse-checkpoint"
VERSION = 1
REQUIRED = ("format", "version", "task", "config", "model_state", "epoch")


def save_checkpoint(path: str | os.PathLike, ckpt: dict[str, Any]) -> Path:
    """Write ``ckpt`` atomically: a temp file in the same folder, fsync, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "version": VERSION, **ckpt}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, task: str | None = None) -> dict[str, Any]:
    """Load and validate a checkpoint; a bad file raises :class:`SeqfuseError` naming why."""
    path = Path(path)
    if not path.is_file():
        raise SeqfuseError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, random bytes, pickled code, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SeqfuseError(f"{path} is not a readable seqfuse checkpoint ({first})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise SeqfuseError(f"{path} is not a seqfuse checkpoint (no '{FORMAT}' format tag)")
    if ckpt.get("version") != VERSION:
        raise SeqfuseError(
            f"{path}: checkpoint version {ckpt.get('version')} is not supported "
            f"(this seqfuse reads version {VERSION})"
        )
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise SeqfuseError(f"{path}: checkpoint is missing {', '.join(missing)}")
    if task is not None and ckpt["task"] != task:
        raise SeqfuseError(f"{path} is a checkpoint for task '{ckpt['task']}', not '{task}'")
    return ckpt


def model_from_checkpoint(
    path: str | os.PathLike, task: str | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint (eval mode, CPU) and return it with the checkpoint."""
    ckpt = load_checkpoint(path, task)
    try:
        model = build_model(ckpt["config"])
        model.load_state_dict(ckpt["model_state"])
    except (ValueError, RuntimeError) as e:
        raise SeqfuseError(f"{path}: model state does not fit its config ({e})") from None
    model.eval()
    return model, ckpt
