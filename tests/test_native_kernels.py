"""The vectorized activations of every kernel set against double precision: relative error
<= 1e-6 over a wide range, including tiny and saturated |x| (sigmoid values below 1e-30,
which only flush towards zero, are held to an absolute bar instead). Also the kernel-set
registry: build_info() and the engine name the same kernel set under every SEQFUSE_ISA value.
"""

from __future__ import annotations

import numpy as np
import pytest
from seqfuse import _C

FAST = [name for name, ok in _C.kernel_sets() if ok and name != "reference"]


def _inputs() -> np.ndarray:
    rng = np.random.default_rng(0)
    parts = [
        np.linspace(-100, 100, 400_001),
        np.logspace(-38, 2.2, 100_000),
        -np.logspace(-38, 2.2, 100_000),
        rng.normal(0, 3, 100_000),
        np.array([0.0, -0.0, 0.625, -0.625, 88.0, -88.0, 1e4, -1e4, 3e38, -3e38]),
    ]
    return np.concatenate(parts).astype(np.float32)


@pytest.mark.parametrize("isa", FAST)
def test_tanh_relative_error(isa):
    x = _inputs()
    got = _C.activation(isa, 1, x).astype(np.float64)
    want = np.tanh(x.astype(np.float64))
    nz = want != 0
    rel = np.abs(got[nz] - want[nz]) / np.abs(want[nz])
    assert rel.max() <= 1e-6, f"max rel err {rel.max():.3g} at x={x[nz][rel.argmax()]}"
    assert np.all(got[~nz] == 0)


@pytest.mark.parametrize("isa", FAST)
def test_sigmoid_relative_error(isa):
    x = _inputs()
    got = _C.activation(isa, 0, x).astype(np.float64)
    with np.errstate(over="ignore"):
        want = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    big = want >= 1e-30
    rel = np.abs(got[big] - want[big]) / want[big]
    assert rel.max() <= 1e-6, f"max rel err {rel.max():.3g} at x={x[big][rel.argmax()]}"
    assert np.all(np.abs(got[~big]) <= 1e-30)
    assert np.all((got >= 0) & (got <= 1))


def test_unknown_kernel_set_is_an_error():
    with pytest.raises(ValueError):
        _C.activation("sse9", 0, np.zeros(3, np.float32))


def test_registry_lists_every_compiled_kernel_set_with_portable_and_reference_last():
    names = [n for n, _ in _C.kernel_sets()]
    assert names[-2:] == ["portable", "reference"]
    assert dict(_C.kernel_sets())["portable"] and dict(_C.kernel_sets())["reference"]


@pytest.mark.parametrize("env", ["", "auto", *[n for n, ok in _C.kernel_sets() if ok]])
def test_build_info_and_engine_pick_the_same_kernel_set(env, monkeypatch):
    import seqfuse
    import seqfuse.native as sn
    import torch

    monkeypatch.setenv("SEQFUSE_ISA", env)
    picked = sn.from_module(torch.nn.GRU(2, 3)).isa
    assert seqfuse.build_info()["simd"] == picked
    if env not in ("", "auto"):
        assert picked == env
    else:  # auto: the first supported kernel set other than the reference
        assert picked == next(n for n, ok in _C.kernel_sets() if ok and n != "reference")


def test_unknown_or_unsupported_kernel_set_in_the_environment(monkeypatch):
    import seqfuse
    import seqfuse.native as sn
    import torch

    monkeypatch.setenv("SEQFUSE_ISA", "sse9")
    with pytest.raises(ValueError, match="unknown kernel set 'sse9'"):
        sn.from_module(torch.nn.GRU(2, 3))
    assert seqfuse.build_info()["simd"].startswith("none (unknown kernel set 'sse9'")
