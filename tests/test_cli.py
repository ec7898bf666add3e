"""The `seqfuse` command line: help, bad input as one-line errors, train/eval/predict/
generate, and the demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch


def seqfuse(*args, env=None, timeout=600):
    e = dict(os.environ)
    e.pop("SEQFUSE_DEBUG", None)
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "seqfuse", *map(str, args)],
        capture_output=True,
        text=True,
        env=e,
        timeout=timeout,
    )


def assert_one_line_error(r, pattern):
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert pattern in lines[0], lines[0]


@pytest.mark.parametrize(
    "cmd", ["train", "eval", "predict", "generate", "demo", "serve", "predict-batch"]
)
def test_help(cmd):
    r = seqfuse(cmd, "--help")
    assert r.returncode == 0 and "usage: seqfuse" in r.stdout


def test_unknown_task():
    assert_one_line_error(seqfuse("train", "poetry"), "unknown task 'poetry'")


def test_missing_data_dir(tmp_path):
    r = seqfuse("train", "names", "--data-dir", tmp_path / "none", env={"SEQFUSE_DATA_DIR": ""})
    assert_one_line_error(r, "data dir not found")


def test_cuda_without_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = seqfuse("train", "hihell", "--device", "cuda", "--save-dir", tmp_path)
    assert_one_line_error(r, "no usable CUDA device")


def test_corrupt_and_foreign_checkpoints(tmp_path, trained_checkpoint):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage" * 100)
    assert_one_line_error(seqfuse("eval", bad), "not a readable seqfuse checkpoint")
    ckpt, _ = trained_checkpoint("hihell")
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(ckpt.read_bytes()[:300])
    assert_one_line_error(seqfuse("eval", trunc), "not a readable seqfuse checkpoint")
    assert_one_line_error(seqfuse("predict", ckpt, "Smith"), "task 'hihell', not 'names'")
    assert_one_line_error(
        seqfuse("train", "sine", "--resume", ckpt, "--save-dir", tmp_path),
        "task 'hihell', not 'sine'",
    )


def test_train_eval_resume_via_cli(tmp_path):
    r = seqfuse("train", "hihell", "--epochs", "60", "--save-dir", tmp_path, "--no-progress")
    assert r.returncode == 0, r.stderr
    for f in ("checkpoint.pt", "metrics.json", "loss.png"):
        assert (tmp_path / f).stat().st_size > 0
    r = seqfuse(
        "train",
        "hihell",
        "--epochs",
        "100",
        "--resume",
        tmp_path / "checkpoint.pt",
        "--save-dir",
        tmp_path,
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    assert "epochs 61..100" in r.stdout
    r = seqfuse("eval", tmp_path / "checkpoint.pt")
    assert r.returncode == 0 and "'hihell' -> 'ihello'" in r.stdout, r.stdout + r.stderr


@pytest.mark.slow
def test_predict_and_generate(trained_checkpoint):
    ckpt, _ = trained_checkpoint("names")
    r = seqfuse("predict", ckpt, "Nakamura", "Dostoevsky", "--top", "2")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert "Japanese" in lines[0] and "Russian" in lines[1]
    ckpt, _ = trained_checkpoint("shakespeare")
    r = seqfuse("generate", ckpt, "--prompt", "KING:", "--length", "30")
    assert r.returncode == 0 and r.stdout.startswith("KING:"), r.stderr
    assert_one_line_error(seqfuse("generate", ckpt, "--prompt", "\u2603"), "outside the model")


def test_demo_end_to_end(tmp_path):
    # The AOTInductor export is left to tests/test_export.py (it compiles for ~20 s a model).
    r = seqfuse("demo", "--out", tmp_path, "--formats", "torchscript,onnx,native", "--no-progress")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    assert "'hihell' and says 'ihello'" in out
    mse = float(out.split("MSE on held-out waves ")[1].split()[0])
    assert mse < 1e-3
    for task in ("sine", "hihell"):
        manifest = json.loads((tmp_path / task / "export" / "manifest.json").read_text())
        statuses = {f: a["status"] for f, a in manifest["artifacts"].items()}
        assert statuses == dict.fromkeys(("torchscript", "onnx", "native"), "verified")
    assert (tmp_path / "bench" / "bench.json").is_file()
    assert "native" in out and "x eager" in out


def cli(capsys, *args):
    """The CLI in-process (what `seqfuse ...` runs): (exit status, stderr lines)."""
    from seqfuse.cli import main

    try:
        rc = main([*map(str, args)])
    except SystemExit as e:  # argparse
        rc = e.code
    err = capsys.readouterr().err
    return rc, [ln for ln in err.strip().splitlines() if ln.strip()]


def assert_cli_error(result, pattern):
    rc, lines = result
    assert rc == 2 and len(lines) == 1, (rc, lines)
    assert pattern in lines[0], lines[0]


@pytest.fixture
def sine_checkpoint(tmp_path):
    from seqfuse.train.loop import TrainOptions, train

    opts = dict(save_dir=str(tmp_path / "sine"), progress=False, plots=False, quiet=True)
    return train(TrainOptions(task="sine", epochs=1, **opts))["checkpoint"]


def test_ill_typed_checkpoints(tmp_path, capsys, monkeypatch, sine_checkpoint):
    monkeypatch.delenv("SEQFUSE_DEBUG", raising=False)
    base = torch.load(sine_checkpoint, weights_only=True)
    cases = [
        (dict(task=["sine"]), "task must be a string"),
        (dict(extras="abc"), "extras must be a dict"),
        (dict(seed="0"), "seed must be an integer"),
        (dict(model_state=[0]), "model_state must be a dict of tensors"),
        (dict(config={**base["config"], "hidden_size": 20000}), "hidden_size must be in"),
        (dict(config={**base["config"], "hidden_size": 16000}), "does not fit its config"),
    ]
    for i, (over, pattern) in enumerate(cases):
        path = tmp_path / f"bad{i}.pt"
        torch.save({**base, **over}, path)
        assert_cli_error(cli(capsys, "eval", path), pattern)
        assert_cli_error(cli(capsys, "export", path, "--out", tmp_path / "o"), pattern)
        assert_cli_error(cli(capsys, "predict", path, "Smith"), pattern)
        assert_cli_error(cli(capsys, "generate", path), pattern)
        r = cli(capsys, "train", "sine", "--resume", path, "--save-dir", tmp_path / "r")
        assert_cli_error(r, pattern)


def test_directory_as_checkpoint(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SEQFUSE_DEBUG", raising=False)
    msg = "is a directory, not a checkpoint file"
    assert_cli_error(cli(capsys, "eval", tmp_path), msg)
    assert_cli_error(cli(capsys, "predict", tmp_path, "Smith"), msg)
    assert_cli_error(cli(capsys, "generate", tmp_path), msg)
    assert_cli_error(cli(capsys, "export", tmp_path, "--out", tmp_path / "o"), msg)
    r = cli(capsys, "train", "sine", "--resume", tmp_path, "--save-dir", tmp_path / "r")
    assert_cli_error(r, msg)


@pytest.mark.parametrize("name", ["checkpoint.pt", "metrics.json"])
def test_train_output_taken_by_a_directory(tmp_path, capsys, monkeypatch, name):
    monkeypatch.delenv("SEQFUSE_DEBUG", raising=False)
    (tmp_path / name).mkdir()
    r = cli(capsys, "train", "sine", "--epochs", "1", "--save-dir", tmp_path, "--no-progress")
    assert_cli_error(r, f"{name}: it is a directory")
    assert not (tmp_path / "checkpoint.pt").is_file()  # failed before training


@pytest.mark.parametrize(
    "args",
    [
        ["--lr", "nan"],
        ["--lr", "inf"],
        ["--lr", "-0.1"],
        ["--lr", "0"],
        ["--epochs", "0"],
        ["--epochs", "-3"],
        ["--batch-size", "0"],
        ["--step-size", "0"],
        ["--gamma", "nan"],
        ["--gamma", "1.5"],
        ["--max-batches", "0"],
        ["--seed", str(2**70)],
    ],
)
def test_train_bad_numbers(tmp_path, capsys, args):
    r = cli(capsys, "train", "sine", *args, "--save-dir", tmp_path / "out")
    assert_cli_error(r, f"argument {args[0]}: ")
    assert not (tmp_path / "out").exists()


def test_generate_and_predict_bad_numbers(tmp_path, capsys):
    ckpt = tmp_path / "c.pt"  # argparse rejects the numbers before the file is read
    assert_cli_error(cli(capsys, "generate", ckpt, "--temperature", "nan"), "--temperature")
    assert_cli_error(cli(capsys, "generate", ckpt, "--length", "-1"), "--length")
    assert_cli_error(cli(capsys, "predict", ckpt, "Smith", "--top", "0"), "--top")


def test_bad_number_end_to_end():
    # the real console entry point: one line, exit status 2, no usage block, no traceback
    r = seqfuse("train", "sine", "--lr", "nan")
    assert r.returncode == 2
    assert_one_line_error(r, "seqfuse train: error: argument --lr: must be a finite number > 0")
