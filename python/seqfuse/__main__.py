"""`python -m seqfuse`: the CLI, plus `--cmake-dir` / `--include-dir` for C++ consumers.

Checked by tests/test_build.py.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _paths_flag(argv: list[str]) -> int | None:
    # The compiled files sit beside _C (site-packages/seqfuse), also in editable installs.
    from seqfuse import _C

    root = Path(_C.__file__).resolve().parent
    where = {
        "--cmake-dir": root / "lib" / "cmake" / "seqfuse",
        "--include-dir": root / "include",
        "--lib-dir": root / "lib",
    }
    if len(argv) == 1 and argv[0] in where:
        print(where[argv[0]])
        return 0
    return None


if __name__ == "__main__":
    rc = _paths_flag(sys.argv[1:])
    if rc is None:
        from seqfuse.cli import main

        rc = main()
    sys.exit(rc)
