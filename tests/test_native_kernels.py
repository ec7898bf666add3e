"""The vectorized activations of every kernel set against double precision: relative error
<= 1e-6 over a wide range, including tiny and saturated |x| (sigmoid values below 1e-30,
which only flush towards zero, are held to an absolute bar instead).
"""

from __future__ import annotations

import numpy as np
import pytest
from seqfuse import _C

FAST = [i for i in ("portable", "avx2", "avx512") if _C.cpu_supports(i)]


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
