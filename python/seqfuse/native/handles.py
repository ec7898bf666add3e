"""Handles by which the custom ops of torch.compile name a Python object (seqfuse.compile's
model, an accelerated module): a number torch.compile bakes into the graph as a constant,
looked up in this process's table when the op runs.

The number is random (62 bits), not a count: Inductor's on-disk graph cache keys a compiled
graph on its text, this constant included, and a count gives another process's object the
same number (it gave an accelerated CRNN results 0.07 off eager in a later test process).

Checked by tests/test_accelerate.py (two processes' first handles differ; compiled models
match eager) and tests/test_compile.py.
"""

from __future__ import annotations

import secrets
import weakref
from typing import Any


class HandleTable:
    """Handle -> value, each entry dropped when its owner is garbage-collected."""

    def __init__(self, what: str) -> None:
        self._what = what  # names the table in the error of a freed handle
        self._items: dict[int, Any] = {}

    def add(self, owner: object, value: Any) -> int:
        """A new handle for ``value``, released with ``owner`` (which ``value`` must not
        hold strongly if it is the owner itself: pass a weakref then)."""
        handle = secrets.randbits(62) | 1
        while handle in self._items:
            handle = secrets.randbits(62) | 1
        self._items[handle] = value
        weakref.finalize(owner, self._items.pop, handle, None)
        return handle

    def get(self, handle: int) -> Any:
        value = self._items.get(handle)
        if isinstance(value, weakref.ref):
            value = value()
        if value is None:
            raise RuntimeError(f"{self._what} handle {handle} is not registered (freed?)")
        return value
