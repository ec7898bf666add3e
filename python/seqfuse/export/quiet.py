"""Exporters' chatter, muted: torch.jit / torch.onnx / torch.export print, log and warn while
they work. The exporters (seqfuse.export.formats) and verifiers (seqfuse.export.verify) run
them inside :func:`quiet_torch`, which keeps the documented deprecation warnings as one note
each and drops the rest; :func:`error_line` makes one readable line of an exporter's error.

Checked by tests/test_export.py (the TorchScript deprecation note; no stray output).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import tempfile
import warnings


@contextlib.contextmanager
def _mute_native_stderr():
    """Silence C++-level writes to fd 2 (torch's ``[W ...]`` exporter warnings)."""
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (embedded interpreters): nothing to mute
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@contextlib.contextmanager
def quiet_torch(notes: list[str]):
    """Run an exporter without letting its warnings/prints reach the user unfiltered.

    Deprecation warnings from torch.jit / torch.onnx are the expected, documented kind:
    they become one note each (deduplicated). The exporters' chatter on stdout is dropped.
    """
    previous = logging.root.manager.disable
    # torch.export logs whole graphs at ERROR level when it fails; the failure itself is
    # what we keep (the exception, in the manifest), so logging is muted meanwhile
    logging.disable(logging.CRITICAL)
    try:
        with (
            warnings.catch_warnings(record=True) as caught,
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
            _mute_native_stderr(),
        ):
            warnings.simplefilter("always")
            yield
    finally:
        logging.disable(previous)
    seen = set()
    for w in caught:
        msg = str(w.message).strip().splitlines()[0] if str(w.message).strip() else ""
        if issubclass(w.category, (DeprecationWarning, FutureWarning)) and "deprecat" in msg:
            key = msg[:80]
            if key not in seen:
                seen.add(key)
                notes.append(f"deprecation: {msg}")


def error_line(e: BaseException) -> str:
    """One readable line for an exception: the root cause's first line, ANSI codes removed."""
    while e.__cause__ is not None:  # torch.onnx wraps the real error (TorchExportError)
        e = e.__cause__
    s = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
    for line in s.splitlines():
        line = line.strip()
        if line:
            return f"{type(e).__name__}: " + re.sub(r"\s+", " ", line)[:300]
    return type(e).__name__
