"""Checkpoints: atomic save, validated load, and model rebuild from the checkpoint alone.

A checkpoint is a torch.save'd dict (loaded with ``weights_only=True``, so no pickle code
runs) holding: format/version, task, model config, model/optimizer/scheduler state, epoch,
RNG state (each rank's, for a torchrun run), how the run was distributed (world size,
backend), metrics and task extras (e.g. a vocabulary). Loading checks every field's type
and the model config against the model state's shapes (before any model is built), so a
bad file is one :class:`SeqfuseError` for every command that reads one (eval, predict,
generate, export, bench, train --resume). Checked by tests/test_train.py (resume
equivalence, corrupt/truncated/wrong-task/ill-typed files, stale temp files).
"""

from __future__ import annotations

import math
import os
import re
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqfuse.errors import SeqfuseError
from seqfuse.models import SeqConfig, build_model, check_state_dict, parse_config

FORMAT = "seqfuse-checkpoint"
VERSION = 1
REQUIRED = ("format", "version", "task", "config", "model_state", "epoch")
MAX_SEED = 2**32 - 1  # |seed|; (seed, epoch) seeds a torch.Generator, which takes 64 bits

# ------------------------------------------------------------------------------ saving

# Temp files are ".<name>.<host>.<pid>.<random>.tmp" beside the checkpoint, so a later
# writer can tell the leftovers of a dead run (killed mid-write) from a live writer's file.
_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:64] or "host"
_IMPORTED_AT = time.time()


def _temp_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(name)}\.([A-Za-z0-9_-]+)\.(\d+)\.[A-Za-z0-9_]+\.tmp")


def _legacy_pattern(name: str) -> re.Pattern[str]:  # mkstemp names of seqfuse <= 0.1.0
    return re.compile(rf"\.{re.escape(name)}\.[a-z0-9_]{{8}}\.tmp")


def _proc_start(pid: int) -> float | None:
    """Wall-clock start time of a live process from Linux /proc; None where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: alive, someone else's
        return True
    return True


def _is_stale(entry: os.DirEntry, name: str) -> bool:
    """Whether a temp file beside checkpoint ``name`` was left by a writer that is gone."""
    try:
        if not entry.is_file(follow_symlinks=False):
            return False
        mtime = entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return False
    m = _temp_pattern(name).fullmatch(entry.name)
    if m:
        host, pid = m.group(1), int(m.group(2))
        if host != _HOST or pid < 1:
            return False  # another machine's writer (a shared folder): not ours to judge
        if pid == os.getpid():
            return True  # this process writes one checkpoint at a time: an earlier one's
        if not _pid_alive(pid):
            return True
        started = _proc_start(pid)
        return started is not None and started > mtime + 2  # the pid was reused since
    if _legacy_pattern(name).fullmatch(entry.name):
        started = _proc_start(os.getpid()) or _IMPORTED_AT
        return mtime < started
    return False


def remove_stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """Remove the temp files of ``path`` that dead writers (runs killed mid-save) left.

    Only files named like this writer's temp files for this checkpoint name are considered:
    another live process's file (same machine, pid alive and started before the file) and
    files from other machines are kept. Returns the removed paths.
    """
    path = Path(path)
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        ours = entry.name.startswith(f".{path.name}.") and entry.name.endswith(".tmp")
        if ours and _is_stale(entry, path.name):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    return removed


class _Terminated(BaseException):
    """SIGTERM/SIGHUP arrived while a checkpoint was being written."""


@contextmanager
def _signals_raise() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into an exception while a temp file exists, so the writer removes
    it; afterwards the signal is delivered again with its default action (the process still
    ends as it was asked to). Only where the default action is in place, in the main thread.
    """
    caught: list[int] = []

    def handler(signum, frame):
        caught.append(signum)
        raise _Terminated(signum)

    installed: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGTERM", "SIGHUP"):
            sig = getattr(signal, name, None)
            if sig is not None and signal.getsignal(sig) is signal.SIG_DFL:
                installed[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in installed.items():
            signal.signal(sig, old)
        if caught:
            os.kill(os.getpid(), caught[0])


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGTERM/SIGHUP back (they arrive on exit) where the platform allows it."""
    sigs = {getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)}
    if not hasattr(signal, "pthread_sigmask") or not sigs:
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def save_checkpoint(path: str | os.PathLike, ckpt: dict[str, Any]) -> Path:
    """Write ``ckpt`` atomically: a temp file in the same folder, fsync, then rename.

    A failed write (an exception, Ctrl-C, SIGTERM) removes its temp file; a kill -9 cannot,
    so each save first removes the temp files of dead writers. ``path`` itself is only ever
    replaced by a complete file. An unwritable path is a :class:`SeqfuseError`.
    """
    path = Path(path)
    if path.is_dir():
        raise SeqfuseError(f"cannot write checkpoint {path}: it is a directory")
    data = {"format": FORMAT, "version": VERSION, **ckpt}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(path)
        with _signals_raise():
            tmp = None
            try:
                with _signals_held():  # no signal between creating the file and naming it
                    prefix = f".{path.name}.{_HOST}.{os.getpid()}."
                    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
                with os.fdopen(fd, "wb") as f:
                    torch.save(data, f)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                if tmp is not None:
                    Path(tmp).unlink(missing_ok=True)
                raise
    except OSError as e:
        raise SeqfuseError(f"cannot write checkpoint {path}: {e.strerror or e}") from None
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


# ----------------------------------------------------------------------------- loading


def is_int(v: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_finite_real(v: Any) -> bool:
    """A finite int or float that is not a bool."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _kind(v: Any) -> str:
    return f"a {type(v).__name__}"


def _what(v: Any) -> str:
    return f"{type(v).__name__} {repr(v)[:40]}"


# Task extras seqfuse reads back, and what each must be.
_EXTRAS: dict[str, tuple[str, Any]] = {
    "classes": (
        "a non-empty list of strings",
        lambda v: isinstance(v, list) and v and all(isinstance(c, str) for c in v),
    ),
    "vocab": ("a non-empty string", lambda v: isinstance(v, str) and v),
    "split": ("a string", lambda v: isinstance(v, str)),
    "n_streams": ("an integer >= 1", lambda v: is_int(v) and v >= 1),
    "seq_len": ("an integer >= 1", lambda v: is_int(v) and v >= 1),
    "dt": ("a finite number > 0", lambda v: is_finite_real(v) and v > 0),
}
_SCALARS = (str, int, float, bool, type(None))


def _is_rng_state(rng: Any) -> bool:
    py = rng.get("python") if isinstance(rng, dict) else None
    t = rng.get("torch") if isinstance(rng, dict) else None
    return (
        isinstance(t, torch.Tensor)
        and t.dtype == torch.uint8
        and isinstance(py, list)
        and len(py) == 625
        and all(is_int(x) and 0 <= x < 2**32 for x in py)
    )


def validate_checkpoint(ckpt: dict[str, Any], path: str | os.PathLike) -> None:
    """Check the type of every field seqfuse reads, and the model config against the model
    state's shapes (no model is built); a bad one raises :class:`SeqfuseError` naming it."""

    def bad(what: str) -> SeqfuseError:
        return SeqfuseError(f"{path}: invalid checkpoint: {what}")

    if not isinstance(ckpt["task"], str):
        raise bad(f"task must be a string, not {_kind(ckpt['task'])}")
    if not is_int(ckpt["epoch"]) or ckpt["epoch"] < 0:
        raise bad(f"epoch must be an integer >= 0, not {_what(ckpt['epoch'])}")
    if "seed" in ckpt and not (is_int(ckpt["seed"]) and abs(ckpt["seed"]) <= MAX_SEED):
        raise bad(
            f"seed must be an integer in [-{MAX_SEED}, {MAX_SEED}], not {_what(ckpt['seed'])}"
        )
    for key in ("config", "optimizer_state", "hparams"):
        if key in ckpt and not isinstance(ckpt[key], dict):
            raise bad(f"{key} must be a dict, not {_kind(ckpt[key])}")
    if not isinstance(ckpt.get("scheduler_state"), (dict, type(None))):
        raise bad(f"scheduler_state must be a dict or None, not {_kind(ckpt['scheduler_state'])}")
    state = ckpt["model_state"]
    if not isinstance(state, dict):
        raise bad(f"model_state must be a dict of tensors, not {_kind(state)}")
    for k, v in state.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise bad(f"model_state must map names to tensors, not {_kind(k)} to {_kind(v)}")
    extras = ckpt.get("extras", {})
    if not isinstance(extras, dict):
        raise bad(f"extras must be a dict, not {_kind(extras)}")
    for key, (desc, ok) in _EXTRAS.items():
        if key in extras and not ok(extras[key]):
            raise bad(f"extras.{key} must be {desc}, not {_kind(extras[key])}")
    if "rng_state" in ckpt and not _is_rng_state(ckpt["rng_state"]):
        raise bad("rng_state must hold a uint8 'torch' tensor and 625 'python' integers")
    if "distributed" in ckpt:
        dd = ckpt["distributed"]
        if not (
            isinstance(dd, dict)
            and is_int(dd.get("world_size"))
            and dd["world_size"] >= 1
            and isinstance(dd.get("backend"), str)
        ):
            raise bad("distributed must be a dict with world_size (an integer >= 1) and backend")
    if "rng_states" in ckpt:
        states = ckpt["rng_states"]
        if not (isinstance(states, list) and states and all(map(_is_rng_state, states))):
            raise bad("rng_states must be a non-empty list of per-rank RNG states")
    metrics = ckpt.get("metrics", {})
    if not isinstance(metrics, dict):
        raise bad(f"metrics must be a dict, not {_kind(metrics)}")
    history = metrics.get("history", [])
    if not isinstance(history, list) or not all(
        isinstance(row, dict)
        and is_int(row.get("epoch"))
        and isinstance(row.get("train_loss"), (int, float))  # nan when a run diverged
        and not isinstance(row.get("train_loss"), bool)
        and all(isinstance(k, str) and isinstance(v, _SCALARS) for k, v in row.items())
        for row in history
    ):
        raise bad("metrics.history must be a list of rows of numbers (with epoch, train_loss)")
    try:
        cfg = parse_config(ckpt["config"])
    except ValueError as e:
        raise bad(f"model config: {e}") from None
    try:
        check_state_dict(cfg, state)
    except ValueError as e:
        raise SeqfuseError(f"{path}: model state does not fit its config ({e})") from None


def load_checkpoint(path: str | os.PathLike, task: str | None = None) -> dict[str, Any]:
    """Load and validate a checkpoint; a bad file raises :class:`SeqfuseError` naming why."""
    path = Path(path)
    if path.is_dir():
        raise SeqfuseError(f"{path} is a directory, not a checkpoint file")
    if not path.exists():
        raise SeqfuseError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise SeqfuseError(f"{path} is not a regular file, not a checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, random bytes, pickled code, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SeqfuseError(f"{path} is not a readable seqfuse checkpoint ({first})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise SeqfuseError(f"{path} is not a seqfuse checkpoint (no '{FORMAT}' format tag)")
    if ckpt.get("version") != VERSION:
        raise SeqfuseError(
            f"{path}: checkpoint version {str(ckpt.get('version'))[:20]} is not supported "
            f"(this seqfuse reads version {VERSION})"
        )
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise SeqfuseError(f"{path}: checkpoint is missing {', '.join(missing)}")
    validate_checkpoint(ckpt, path)
    if task is not None and ckpt["task"] != task:
        raise SeqfuseError(f"{path} is a checkpoint for task '{ckpt['task']}', not '{task}'")
    return ckpt


def _io_of(config: dict[str, Any]) -> str:
    """What a model reads and writes, in words (what must match a task's data)."""
    c = parse_config(config)
    if not isinstance(c, SeqConfig):
        return f"linear {c.in_features} -> {c.out_features}"
    inp = f"token ids < {c.vocab_size}" if c.vocab_size else f"{c.input_size} features"
    if c.head == "none":
        return f"{inp} -> per-step features {c.hidden_size * c.num_directions}"
    per = "per step" if c.head == "step" else "per sequence"
    return f"{inp} -> {c.output_size} outputs {per}"


def check_fits_task(
    config: dict[str, Any], task_config: dict[str, Any], path: str | os.PathLike, task: str
) -> None:
    """A checkpoint's model must read and write what the task's data does (e.g. a names
    model trained on other languages cannot be scored on these ones)."""
    have, want = _io_of(config), _io_of(task_config)
    if have != want:
        raise SeqfuseError(
            f"{path}: the checkpoint's model ({have}) does not fit the {task} data ({want})"
        )


def model_from_checkpoint(
    path: str | os.PathLike, task: str | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint (eval mode, CPU) and return it with the checkpoint."""
    ckpt = load_checkpoint(path, task)  # config and state shapes checked: safe to allocate
    try:
        model = build_model(ckpt["config"])
        model.load_state_dict(ckpt["model_state"])
    except (ValueError, RuntimeError, TypeError) as e:
        raise SeqfuseError(f"{path}: model state does not fit its config ({e})") from None
    model.eval()
    return model, ckpt
