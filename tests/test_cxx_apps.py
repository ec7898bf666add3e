"""The C++ apps in export/ build against the installed wheels (seqfuse's CMake package, the
torch wheel's LibTorch) and reproduce eager PyTorch's outputs within 1e-5 on exported seed
models; a wrong file, a truncated file, a wrong input shape or bad input text gives a
one-line message and a non-zero exit (never a crash).

Marked ``cxx``; skipped with the reason when cmake or a C++ compiler is missing. The apps
are built once per session in pytest's tmp dir (LibTorch apps take ~15 s each to build).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from seqfuse.export.textio import parse_tensors, write_tensors
from seqfuse.export.wrappers import ModelSpec
from seqfuse.train.checkpoint import model_from_checkpoint
from test_export import ALL, FAST_FORMATS, checkpoint_for, export_cached
from torch.utils._pytree import tree_leaves

pytestmark = pytest.mark.cxx
REPO = Path(__file__).resolve().parents[1]
TOL = 1e-5


def _toolchain_or_skip() -> None:
    missing = [t for t in ("cmake",) if shutil.which(t) is None]
    if not (shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")):
        missing.append("a C++ compiler (c++/g++/clang++)")
    if missing:
        pytest.skip(f"cannot build the C++ apps: {', '.join(missing)} not found")


def _build(tmp_path_factory, name: str, *flags: str) -> Path:
    _toolchain_or_skip()
    build = tmp_path_factory.mktemp(name)
    cfg = subprocess.run(
        ["cmake", "-S", str(REPO / "export"), "-B", str(build),
         f"-DPython3_EXECUTABLE={sys.executable}", *flags],
        capture_output=True, text=True,
    )  # fmt: skip
    assert cfg.returncode == 0, cfg.stdout[-3000:] + cfg.stderr[-3000:]
    jobs = str(max(1, min(2, os.cpu_count() or 1)))
    b = subprocess.run(["cmake", "--build", str(build), "-j", jobs], capture_output=True, text=True)
    assert b.returncode == 0, b.stdout[-3000:] + b.stderr[-3000:]
    return build


@pytest.fixture(scope="session")
def native_apps(tmp_path_factory) -> Path:
    return _build(tmp_path_factory, "apps_native", "-DSEQFUSE_APPS_LIBTORCH=OFF")


@pytest.fixture(scope="session")
def libtorch_apps(tmp_path_factory) -> Path:
    return _build(tmp_path_factory, "apps_libtorch", "-DSEQFUSE_APPS_NATIVE=OFF")


def run_app(app: Path, model: Path, inputs: dict, tmp_path: Path):
    inp = write_tensors(tmp_path / "input.txt", inputs)
    return subprocess.run([str(app), str(model), str(inp)], capture_output=True, text=True)


def assert_matches(r, ref, names) -> None:
    assert r.returncode == 0, r.stderr
    got = parse_tensors(r.stdout)
    assert list(got) == names
    for name, want in zip(names, tree_leaves(ref)):
        assert got[name].shape == want.shape, name
        assert (got[name] - want).abs().max() <= TOL, name


def assert_clean_error(r, app: str, pattern: str = "") -> None:
    assert r.returncode > 0, (r.returncode, r.stdout[-500:], r.stderr[-500:])  # not a signal
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{app}: error:"), r.stderr
    assert pattern in lines[0], lines[0]


def _model(task, trained_checkpoint, tmp_path_factory):
    model, _ = model_from_checkpoint(checkpoint_for(task, trained_checkpoint, tmp_path_factory))
    return model, ModelSpec.of(model)


def _inputs(spec: ModelSpec, batch: int, seq: int, states: bool, lengths: bool):
    if not spec.is_seq:
        return {"x": spec.example(batch, 0, seed=21)}, None, None
    x = spec.example(batch, seq, seed=21)
    d = {"x": x}
    st = spec.random_states(batch, seed=22) if states else None
    if states:
        d.update(zip(spec.state_names, st))
    L = None
    if lengths:
        L = torch.tensor([seq, *[max(1, seq - 3 * k) for k in range(1, batch)]])
        d["lengths"] = L
    return d, st, L


def _eager(model, spec, x, st, L):
    with torch.no_grad():
        return model(x) if not spec.is_seq else model(x, spec.hx(st), L)


@pytest.mark.parametrize("task", ["sine", "names", "mnist", "linear"])
def test_seqfuse_run_matches_python(
    task, native_apps, trained_checkpoint, tmp_path_factory, tmp_path
):
    manifest, out = export_cached(
        task, ALL if task == "sine" else FAST_FORMATS, trained_checkpoint, tmp_path_factory
    )
    if manifest["artifacts"]["native"]["status"] != "verified":
        pytest.fail(f"native artifact missing: {manifest['artifacts']['native']}")
    model, spec = _model(task, trained_checkpoint, tmp_path_factory)
    d, st, L = _inputs(spec, 3, 9, states=True, lengths=True)
    r = run_app(native_apps / "seqfuse-run", out / "model.seqfuse.safetensors", d, tmp_path)
    assert_matches(r, _eager(model, spec, d["x"], st, L), spec.output_names)


def test_seqfuse_run_projected_lstm(native_apps, tmp_path):
    # nn.LSTM(proj_size=P) saved as a native file: h0 and h_n are P wide, c0 and c_n H wide.
    import seqfuse.native as sn

    torch.manual_seed(4)
    m = torch.nn.LSTM(4, 10, num_layers=2, proj_size=3, bidirectional=True, batch_first=True)
    m = m.eval()
    path = sn.from_module(m).save(tmp_path / "proj.seqfuse.safetensors")
    x, h0, c0 = torch.randn(3, 6, 4), torch.randn(4, 3, 3), torch.randn(4, 3, 10)
    r = run_app(native_apps / "seqfuse-run", path, {"x": x, "h0": h0, "c0": c0}, tmp_path)
    with torch.no_grad():
        y, (h, c) = m(x, (h0, c0))
    assert_matches(r, (y, h, c), ["y", "h_n", "c_n"])


@pytest.mark.parametrize("task", ["sine", "mnist"])
def test_torchscript_app_matches_python(
    task, libtorch_apps, trained_checkpoint, tmp_path_factory, tmp_path
):
    manifest, out = export_cached(
        task, ALL if task == "sine" else FAST_FORMATS, trained_checkpoint, tmp_path_factory
    )
    model, spec = _model(task, trained_checkpoint, tmp_path_factory)
    app = libtorch_apps / "seqfuse-torchscript"
    for states, lengths in [(False, False), (True, True)]:
        d, st, L = _inputs(spec, 3, 11, states, lengths)
        r = run_app(app, out / "model.ts.pt", d, tmp_path)
        assert_matches(r, _eager(model, spec, d["x"], st, L), spec.output_names)


def test_aoti_app_matches_python(libtorch_apps, trained_checkpoint, tmp_path_factory, tmp_path):
    manifest, out = export_cached("sine", ALL, trained_checkpoint, tmp_path_factory)
    model, spec = _model("sine", trained_checkpoint, tmp_path_factory)
    T = manifest["artifacts"]["aoti"]["seq_len"]
    app = libtorch_apps / "seqfuse-aoti"
    d, _, _ = _inputs(spec, 3, T, False, False)
    r = run_app(app, out / "model.pt2", d, tmp_path)
    assert_matches(r, _eager(model, spec, d["x"], None, None), spec.output_names)
    # the .pt2 fixes the sequence length; the app checks it (AOTInductor does not)
    d, _, _ = _inputs(spec, 3, T + 1, False, False)
    assert_clean_error(run_app(app, out / "model.pt2", d, tmp_path), "seqfuse-aoti", "fixed")


def _truncated(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / f"truncated{''.join(src.suffixes)}"
    dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    return dst


@pytest.mark.parametrize(
    "app,file,fixture",
    [
        ("seqfuse-run", "model.seqfuse.safetensors", "native_apps"),
        ("seqfuse-torchscript", "model.ts.pt", "libtorch_apps"),
        ("seqfuse-aoti", "model.pt2", "libtorch_apps"),
    ],
)
def test_apps_reject_bad_input(
    app, file, fixture, request, trained_checkpoint, tmp_path_factory, tmp_path
):
    build = request.getfixturevalue(fixture)
    manifest, out = export_cached("sine", ALL, trained_checkpoint, tmp_path_factory)
    exe = build / app
    T = manifest["model"]["export_input"]["x"][1]
    good = {"x": torch.randn(2, T, 1)}
    # a file of another format, and a truncated one
    assert_clean_error(run_app(exe, out / "model.onnx", good, tmp_path), app)
    assert_clean_error(run_app(exe, _truncated(out / file, tmp_path), good, tmp_path), app)
    assert_clean_error(run_app(exe, tmp_path / "missing.bin", good, tmp_path), app)
    # a wrong input shape (3 features instead of 1)
    assert_clean_error(run_app(exe, out / file, {"x": torch.randn(2, T, 3)}, tmp_path), app)
    # malformed input text
    bad = tmp_path / "bad.txt"
    bad.write_text("tensor x float32 3 2 4 1\n1 2 3\n")
    r = subprocess.run([str(exe), str(out / file), str(bad)], capture_output=True, text=True)
    assert_clean_error(r, app, "expected 8 values")
