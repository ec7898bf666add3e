"""`seqfuse export`: the verification table on success, one-line errors and a non-zero exit
on a missing/corrupt checkpoint, an unknown format, a bad --seq-len and an unwritable output dir.

Runs the real CLI in a subprocess (as users do); the oracle for the artifacts is the
manifest check of tests/test_export.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from test_export import synthetic_checkpoint


def seqfuse(*args, timeout=600):
    env = dict(os.environ)
    env.pop("SEQFUSE_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "seqfuse", "export", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return synthetic_checkpoint("hihell", tmp_path_factory.mktemp("cli") / "checkpoint.pt")


def test_export_cli_writes_verified_artifacts(ckpt, tmp_path):
    out = tmp_path / "out"
    r = seqfuse(ckpt, "--formats", "torchscript,onnx", "--out", out)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "Warning" not in r.stderr, r.stderr
    lines = r.stdout.splitlines()
    assert sum("deprecates TorchScript" in ln for ln in lines) == 1  # one clear line
    table = [ln for ln in lines if ln.startswith(("torchscript", "onnx"))]
    assert len(table) == 2 and all(" ok (" in ln for ln in table), r.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert {a["status"] for a in manifest["artifacts"].values()} == {"verified"}
    assert (out / "model.ts.pt").is_file() and (out / "model.onnx").is_file()


def test_export_cli_help(capsys):
    from seqfuse.cli import main

    with pytest.raises(SystemExit) as e:
        main(["export", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "--formats" in out and "--out" in out


def cli(capsys, *args):
    """The CLI in-process (what `seqfuse export ...` runs): (exit status, stdout, stderr)."""
    from seqfuse.cli import main

    rc = main(["export", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def assert_cli_error(result, pattern):
    rc, out, err = result
    assert rc == 2, (out, err)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("seqfuse export: error:"), err
    assert pattern in lines[0], lines[0]


def test_missing_checkpoint(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SEQFUSE_DEBUG", raising=False)
    assert_cli_error(cli(capsys, tmp_path / "missing.pt", "--out", tmp_path / "o"), "not found")


def test_corrupt_checkpoint(tmp_path, ckpt, capsys, monkeypatch):
    monkeypatch.delenv("SEQFUSE_DEBUG", raising=False)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage" * 100)
    assert_cli_error(cli(capsys, bad, "--out", tmp_path / "o"), "not a readable")
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    assert_cli_error(cli(capsys, trunc, "--out", tmp_path / "o"), "not a readable")


def test_unknown_format(tmp_path, ckpt, capsys, monkeypatch):
    monkeypatch.delenv("SEQFUSE_DEBUG", raising=False)
    r = cli(capsys, ckpt, "--formats", "onnx,coreml", "--out", tmp_path / "o")
    assert_cli_error(r, "unknown format 'coreml'")
    assert not (tmp_path / "o").exists()


def test_unwritable_out_dir(tmp_path, ckpt, capsys, monkeypatch):
    monkeypatch.delenv("SEQFUSE_DEBUG", raising=False)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = cli(capsys, ckpt, "--formats", "onnx", "--out", blocker / "out")
    assert_cli_error(r, "cannot write to output directory")


@pytest.mark.parametrize("seq_len", ["0", "-3"])
def test_bad_seq_len(tmp_path, ckpt, capsys, monkeypatch, seq_len):
    monkeypatch.delenv("SEQFUSE_DEBUG", raising=False)
    r = cli(capsys, ckpt, "--formats", "native", "--seq-len", seq_len, "--out", tmp_path / "o")
    assert_cli_error(r, f"--seq-len must be >= 1, got {seq_len}")
    assert not (tmp_path / "o").exists()  # rejected before anything is written
