"""seqfuse.version: the installed package's version, read from its metadata.

The version is stated once, in pyproject.toml; the compiled core reports the same string
(build_info). A leaf module, so any layer can name the version without importing the package
root. Checked by tests/test_build.py (test_version_is_stated_once).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("seqfuse")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
