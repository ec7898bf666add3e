"""The vectorized activations of every kernel set against double precision, over a sweep of
the whole float range (every 97th float32 bit pattern: about 44 million values per function,
with every binade, the denormals and NaNs of both signs) plus the special values, and the
kernel-set registry: build_info() and the engine name the same kernel set under every
SEQFUSE_ISA value.

The bar (csrc/cpu/simd_math.hpp; tests/cpp/test_kernel_sets.cpp checks the same):
- tanh: relative error <= 1e-6 wherever tanh(x) != 0; x = tanh(x) exactly, sign of zero
  included, for |x| < 1e-30 (denormals); results within [-1, 1]; tanh(+-Inf) = +-1.
- sigmoid: relative error <= 1e-6 wherever sigmoid(x) >= 1e-30 (x >= -69.08); below that,
  absolute error <= 1e-30; results within [0, 1]; sigmoid(-Inf) = 0, sigmoid(Inf) = 1.
- NaN in, NaN out, as in eager PyTorch.
"""

from __future__ import annotations

import numpy as np
import pytest
from seqfuse import _C

FAST = [name for name, ok in _C.kernel_sets() if ok and name != "reference"]
STRIDE = 97  # float32 bit patterns between samples
CHUNK = 1 << 22  # samples per chunk: bounds the float64 working set to a few tens of MB
SPECIALS = np.array(
    [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1e-38, -1e-38, 0.625, -0.625, 9.0, -9.0]
    + [20.0, -20.0, 69.0, -69.0, 87.0, -87.0, 88.7, -88.7, 89.0, -89.0, 104.0, -104.0]
    + [1e4, -1e4, 3e38, -3e38],
    np.float32,
)


def _sweep():
    """The inputs in chunks: every STRIDE-th float32 bit pattern, then SPECIALS."""
    for lo in range(0, 1 << 32, STRIDE * CHUNK):
        bits = np.arange(lo, min(lo + STRIDE * CHUNK, 1 << 32), STRIDE, dtype=np.uint64)
        yield bits.astype(np.uint32).view(np.float32)
    yield SPECIALS


def _check(isa: str, kind: int):
    """Runs one activation over the sweep; returns (max relative error, max absolute error
    below the relative bar's floor) and asserts everything but the error bars."""
    worst_rel, worst_abs = 0.0, 0.0
    for x in _sweep():
        got32 = _C.activation(isa, kind, x)
        nan = np.isnan(x)
        assert np.array_equal(np.isnan(got32), nan), (
            f"NaN in/out differ at x={x[np.isnan(got32) != nan][:4]}"
        )
        x, got32 = x[~nan], got32[~nan]
        got, xd = got32.astype(np.float64), x.astype(np.float64)
        if kind == 1:
            want = np.tanh(xd)
            assert np.all(np.abs(got) <= 1)
            tiny = np.abs(x) < 1e-30  # tanh(x) = x in float, sign of zero included
            assert np.array_equal(got32[tiny].view(np.uint32), x[tiny].view(np.uint32))
            rel_ok = want != 0
        else:
            with np.errstate(over="ignore"):
                want = 1.0 / (1.0 + np.exp(-xd))
            assert np.all((got >= 0) & (got <= 1))
            rel_ok = want >= 1e-30
            if (~rel_ok).any():
                worst_abs = max(worst_abs, np.abs(got[~rel_ok] - want[~rel_ok]).max())
        if rel_ok.any():
            rel = np.abs(got[rel_ok] - want[rel_ok]) / np.abs(want[rel_ok])
            if rel.max() > worst_rel:
                worst_rel = rel.max()
                assert worst_rel <= 1e-6, (
                    f"rel err {worst_rel:.3g} at x={x[rel_ok][rel.argmax()]!r}"
                )
    return worst_rel, worst_abs


@pytest.mark.parametrize("isa", FAST)
def test_tanh_over_the_float_range(isa):
    worst_rel, _ = _check(isa, 1)
    assert worst_rel <= 1e-6
    inf = np.array([np.inf, -np.inf, 1e30, -1e30], np.float32)
    assert list(_C.activation(isa, 1, inf)) == [1.0, -1.0, 1.0, -1.0]


@pytest.mark.parametrize("isa", FAST)
def test_sigmoid_over_the_float_range(isa):
    worst_rel, worst_abs = _check(isa, 0)
    assert worst_rel <= 1e-6 and worst_abs <= 1e-30
    inf = np.array([np.inf, -np.inf, 1e30, -1e30, -0.0, 0.0], np.float32)
    assert list(_C.activation(isa, 0, inf)) == [1.0, 0.0, 1.0, 0.0, 0.5, 0.5]


@pytest.mark.parametrize("kind", [0, 1], ids=["sigmoid", "tanh"])
@pytest.mark.parametrize("isa", FAST)
def test_eight_wide_activations_give_the_same_bits_as_one_at_a_time(isa, kind):
    # The epilogues run the activations over a tile's rows at once (simd_math.hpp's
    # vsigmoid_n, vtanh_n): each value must see the same operations as alone. A long array goes
    # through the eight-vector form; one value per call through the one-vector tail.
    bits = np.arange(0, 1 << 32, 2097143, dtype=np.uint64).astype(np.uint32)  # every sign, size
    x = np.concatenate([bits.view(np.float32), SPECIALS])
    x = np.resize(x, (len(x) + 127) // 128 * 128)  # whole groups of eight 16-lane vectors
    wide = _C.activation(isa, kind, x)
    alone = np.concatenate([_C.activation(isa, kind, x[i : i + 1]) for i in range(len(x))])
    assert np.array_equal(wide.view(np.uint32), alone.view(np.uint32))


def test_unknown_kernel_set_is_an_error():
    with pytest.raises(ValueError):
        _C.activation("sse9", 0, np.zeros(3, np.float32))


# fp32 lanes per vector of each kernel set, as its traits header declares them.
LANES = {"avx512": 16, "avx2": 8, "neon": 4, "portable": 4}


@pytest.mark.parametrize("isa", FAST)
def test_fma_probe_counts_the_flops_it_runs(isa):
    """The bench's FMA peak (seqfuse.bench.machine) is the probe's FLOPs over its time: 12
    chains of one multiply-add (2 FLOPs) per lane and rep."""
    assert _C.fma_probe(isa, 1000) == (isa, 1000 * 12 * 2 * LANES[isa])
    assert _C.fma_probe(isa, 0) == (isa, 0)


def test_fma_probe_resolves_auto_and_has_nothing_for_the_reference(monkeypatch):
    monkeypatch.delenv("SEQFUSE_ISA", raising=False)
    assert _C.fma_probe("auto", 1)[0] == FAST[0]
    monkeypatch.setenv("SEQFUSE_ISA", "portable")  # auto honours it, as the engine does
    assert _C.fma_probe("auto", 1)[0] == "portable"
    assert _C.fma_probe("reference", 1000) == ("reference", 0)  # no vector loop to time
    with pytest.raises(ValueError, match="unknown kernel set"):
        _C.fma_probe("sse9", 1)


@pytest.mark.parametrize("isa", FAST)
def test_read_probe_reads_every_float_once_per_pass(isa):
    """The bench's cache bandwidths (seqfuse.bench.machine) are the read probe's bytes over
    its time: the sum it returns is NumPy's, so no element was skipped or read twice, at any
    alignment and with tails of every length (8 chains of one vector, then single vectors,
    then floats)."""
    from seqfuse.bench.machine import aligned_floats

    base = aligned_floats(1 << 16)
    lanes = LANES[isa]
    for n in (1, lanes - 1, lanes, 8 * lanes, 8 * lanes + 3 * lanes + 1, 16381):
        for off in (0, 1, 3):
            a = base[off : off + n]
            name, total = _C.read_probe(isa, a, 3)
            assert name == isa
            want = float(a.astype(np.float64).sum())
            assert abs(total - want) <= 1e-5 * want, (n, off, total, want)
    assert _C.read_probe("reference", base, 1) == ("reference", None)  # no vector loop
    with pytest.raises(ValueError, match="reps"):
        _C.read_probe(isa, base, 0)
    with pytest.raises(TypeError):  # no silent copy (unaligned, inside the timed call)
        _C.read_probe(isa, base.astype(np.float64), 1)


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
