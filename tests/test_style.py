"""The tree stays clean under the committed ruff and clang-format settings."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

PY_DIRS = ["python", "tests", "benchmarks"]


def _ruff(*args):
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, *PY_DIRS], cwd=REPO, capture_output=True, text=True
    )


def test_ruff_lint():
    pytest.importorskip("ruff")
    r = _ruff("check")
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format():
    pytest.importorskip("ruff")
    r = _ruff("format", "--check")
    assert r.returncode == 0, r.stdout + r.stderr


def test_clang_format():
    exe = shutil.which("clang-format")
    if exe is None:
        pytest.skip("clang-format is not installed (pip install '.[test]' brings it)")
    files = sorted(
        str(p)
        for d in ("csrc", "export", "tests/cpp", "tests/fuzz")
        for p in (REPO / d).rglob("*")
        if p.suffix in {".cpp", ".hpp", ".h", ".cu", ".cuh"} and "build" not in p.parts
    )
    assert files, "no C++ sources found"
    r = subprocess.run([exe, "--dry-run", "-Werror", *files], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[:4000]


def test_shell_scripts_parse():
    # CI's scripts and the GPU session script: bash -n, a comment that says what each is, and
    # the Python the GPU script writes out parses (it runs only where a GPU is lent)
    scripts = sorted([*(REPO / ".ci").iterdir(), *(REPO / "benchmarks").glob("*.sh")])
    assert len(scripts) >= 5, scripts
    for p in scripts:
        r = subprocess.run(["bash", "-n", str(p)], capture_output=True, text=True)
        assert r.returncode == 0, f"{p.name}: {r.stderr}"
        lines = p.read_text().splitlines()
        assert lines[0].startswith("#!") and lines[1].startswith("# "), p.name
    text = (REPO / "benchmarks" / "cuda_device_check.sh").read_text()
    embedded = re.findall(r"<<'PY'\n(.*?)\nPY\n", text, re.S)
    assert embedded, "the first-contact script is written from a <<'PY' here-document"
    for src in embedded:
        ast.parse(src)


def test_robustness_table_names_tests_that_exist():
    # docs/ROBUSTNESS.md: every row names the test that checks it; each must exist.
    import re

    text = (REPO / "docs" / "ROBUSTNESS.md").read_text()
    refs = re.findall(r"`(tests/[\w/]+\.(?:py|cpp))(?:::(\w+))?`", text)
    assert len(refs) >= 20, "the table lost its test references"
    for path, name in refs:
        src = REPO / path
        assert src.is_file(), f"docs/ROBUSTNESS.md names a missing file {path}"
        if name:
            assert f"def {name}(" in src.read_text(), f"docs/ROBUSTNESS.md names {path}::{name}"
