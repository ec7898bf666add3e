"""seqfuse.errors: the exception every layer raises for user-facing problems.

A leaf module (it imports nothing from seqfuse), so any module can raise SeqfuseError without
importing the package root. Checked by tests/test_cli.py (one-line errors) and
tests/test_style.py (no import cycle).
"""

from __future__ import annotations


class SeqfuseError(Exception):
    """A user-facing error: bad input, a missing file, an unsupported option.

    The CLI prints its message on one line and exits non-zero, without a traceback.
    """
