"""The CUDA persistent kernel's tile plan, checked on the CPU (no GPU needed).

seqfuse._C.cuda_plan is the same C++ planner the kernels launch with (csrc/cuda/plan.hpp).
For many hidden sizes, gate counts, batches, cluster limits and shared-memory limits the plan
must cover every (gate row, unit, k) of the recurrent product exactly once and every
(sequence, unit) cell update exactly once, fit its resources, be the smallest cluster that
fits, and fall back exactly when nothing fits. A NumPy emulation of the kernel's index
arithmetic (weights to registers, partial sums, reduction, h exchange) reproduces W_hh @ h.
"""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
from seqfuse import _C

VARIANTS = list(_C.cuda_kernel_variants)  # (weights per thread, max threads, bf16)
MAX_BT = _C.cuda_max_batch_tile
H100_SMEM = 227 * 1024
A100_SMEM = 163 * 1024
ADA_SMEM = 99 * 1024


def smem_of(p: dict) -> int:
    return (
        4 * (2 * p["batch_tile"] * p["hpad"] + p["ks"] * p["batch_tile"] * p["rows"])
        + 4 * p["batch_tile"]
    )


def fits_somehow(H: int, G: int, max_cluster: int, smem_limit: int, bf16: bool = False) -> bool:
    """Independent brute force: does any cluster size hold the weights (batch tile 1)?"""
    for kr, max_threads, is_bf16 in VARIANTS:
        if is_bf16 != bf16:
            continue
        ks = math.ceil(H / kr)
        kc = math.ceil(math.ceil(H / ks) / 4) * 4
        for c in range(1, max_cluster + 1):
            units = math.ceil(H / c)
            rows = G * units
            threads = math.ceil(max(rows * ks, units) / 32) * 32
            smem = 4 * (2 * ks * kc + ks * rows) + 4
            if threads <= max_threads and smem <= smem_limit:
                return True
    return False


def check_plan(
    H: int, G: int, B: int, max_cluster: int, smem_limit: int, bf16: bool = False
) -> dict:
    p = _C.cuda_plan(H, G, B, 1, max_cluster, smem_limit, bf16)
    if not p["persistent"]:
        assert p["reason"], "a fallback must say why"
        assert not fits_somehow(H, G, max_cluster, smem_limit, bf16), (H, G, max_cluster, p)
        return p
    kr, max_threads, is_bf16 = VARIANTS[p["variant"]]
    assert is_bf16 == bf16
    C, units, rows, ks, kc = p["cluster"], p["units"], p["rows"], p["ks"], p["kc"]
    bt, threads = p["batch_tile"], p["threads"]
    assert p["reason"] == ""
    assert 1 <= C <= max(1, min(max_cluster, 16))
    assert rows == G * units
    # every block owns at least one unit; together they own all H
    assert C * units >= H and (C - 1) * units < H
    # k splits: multiples of 4 (float4 reads of h), within the register array, covering H
    assert kc % 4 == 0 and 0 < kc <= kr and p["kr"] == kr
    assert p["hpad"] == ks * kc >= H and (ks - 1) * kc < H
    # block size and batch tile
    assert threads % 32 == 0 and threads <= max_threads
    assert threads >= rows * ks and threads >= bt * units
    assert 1 <= bt <= min(B, MAX_BT)
    assert p["batch_tiles"] == math.ceil(B / bt)
    # shared memory: the kernel's carving (h, partials, lengths) back to back, within the limit
    assert p["smem"] == smem_of(p) <= smem_limit
    lay = p["layout"]
    assert lay["part"] == 2 * bt * p["hpad"]
    assert lay["lens"] - lay["part"] == ks * bt * rows
    assert 4 * lay["words"] == p["smem"] and lay["words"] - lay["lens"] == bt
    # minimality: one block fewer per cluster would not fit
    if C > 1:
        assert not _C.cuda_plan(H, G, B, 1, C - 1, smem_limit, bf16)["persistent"]
    return p


def coverage(p: dict, H: int, G: int) -> None:
    """Each (gate, unit, k) multiplied exactly once; each (b, unit) updated exactly once."""
    C, units, rows, ks, kc, bt = (
        p[k] for k in ("cluster", "units", "rows", "ks", "kc", "batch_tile")
    )
    mul = np.zeros((G, H, H), np.int32)
    upd = np.zeros((bt, H), np.int32)
    for rank in range(C):
        j0 = rank * units
        nu = min(units, H - j0)
        tid = np.arange(p["threads"])
        ph1 = tid[tid < rows * ks]
        prow, pks = ph1 % rows, ph1 // rows
        g, jl = prow // units, prow % units
        ok = jl < nu
        for gg, jj, kk in zip(g[ok], (j0 + jl)[ok], pks[ok]):
            k0 = kk * kc
            mul[gg, jj, k0 : min(H, k0 + kc)] += 1
        qb, qj = tid // units, tid % units
        ok2 = (qb < bt) & (qj < nu)
        np.add.at(upd, (qb[ok2], (j0 + qj)[ok2]), 1)
    assert (mul == 1).all(), "a weight is used more or less than once"
    assert (upd == 1).all(), "a cell update is done more or less than once"


CASES = []
_rng = random.Random(42)
for _ in range(150):
    CASES.append(
        (
            _rng.choice([1, 3, 5, 16, 31, 32, 33, 37, 64, 100, 127, 128, 129, 200, 255, 256, 300]),
            _rng.choice([1, 3, 4]),
            _rng.choice([1, 2, 3, 7, 8, 9, 64, 256]),
            _rng.choice([1, 2, 8, 16]),
            _rng.choice([ADA_SMEM, A100_SMEM, H100_SMEM, 8 * 1024]),
        )
    )


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("H,G,B,max_cluster,smem", CASES)
def test_cuda_plan_is_valid(H, G, B, max_cluster, smem, bf16):
    check_plan(H, G, B, max_cluster, smem, bf16)


@pytest.mark.parametrize(
    "H,G,B,max_cluster",
    [
        (h, g, b, c)
        for h, g, b, c in itertools.product(
            [1, 7, 37, 64, 100, 128, 256], [1, 3, 4], [1, 5, 9], [1, 8, 16]
        )
    ],
)
def test_cuda_plan_covers_every_weight_once(H, G, B, max_cluster):
    for bf16 in (False, True):
        p = check_plan(H, G, B, max_cluster, H100_SMEM, bf16)
        if p["persistent"]:
            coverage(p, H, G)


def test_cuda_plan_seed_models():
    # The seed models on an H100 (clusters up to 16) and on sm_80/sm_89 (no clusters).
    lstm256 = _C.cuda_plan(256, 4, 1, 1, 16, H100_SMEM)  # Shakespeare char-LSTM
    assert lstm256["persistent"] and lstm256["cluster"] == 8 and lstm256["threads"] == 512
    assert not _C.cuda_plan(256, 4, 1, 1, 1, A100_SMEM)["persistent"]  # fallback there
    mnist = _C.cuda_plan(128, 4, 1, 2, 16, H100_SMEM)
    assert mnist["persistent"] and mnist["cluster"] == 2
    names = _C.cuda_plan(100, 3, 1, 1, 16, H100_SMEM)
    assert names["persistent"] and names["cluster"] == 2 and names["units"] == 50
    sine = _C.cuda_plan(32, 1, 1, 1, 1, ADA_SMEM)
    assert sine["persistent"] and sine["cluster"] == 1
    big = _C.cuda_plan(1024, 4, 1, 1, 16, H100_SMEM)
    assert not big["persistent"] and "do not fit" in big["reason"]
    # bf16 weights: two per register, so an H=512 LSTM fits a cluster of 16 and H=256 one of 4
    assert not _C.cuda_plan(512, 4, 1, 1, 16, H100_SMEM)["persistent"]
    lstm512 = _C.cuda_plan(512, 4, 1, 1, 16, H100_SMEM, True)
    assert lstm512["persistent"] and lstm512["cluster"] == 16 and lstm512["kr"] == 128
    assert _C.cuda_plan(256, 4, 1, 1, 16, H100_SMEM, True)["cluster"] == 4
    # bf16 pairs: every k-split starts at an even k (the kernel loads pair k0 / 2 + i)
    assert lstm512["kc"] % 4 == 0


def round_bf16(a: np.ndarray) -> np.ndarray:
    """float32 -> bf16 -> float32, round to nearest even (finite values)."""
    u = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


def pack_bf16_pairs(W: np.ndarray) -> np.ndarray:
    """The host packing of model.cu: pair q of a row holds weight 2q (low half) and 2q + 1
    (high half), zero padded."""
    rows, H = W.shape
    u = np.zeros((rows, (H + 1) // 2 * 2), np.uint32)
    u[:, :H] = round_bf16(W).view(np.uint32)
    return (u[:, 0::2] >> 16) | (u[:, 1::2] & 0xFFFF0000)


def emulate_matvec(p: dict, W: np.ndarray, h: np.ndarray, G: int, H: int) -> np.ndarray:
    """The kernel's recurrent product W_hh @ h, index by index (one cluster, batch rows);
    for a bf16 plan through the packed pairs and the kernel's unpacking."""
    C, units, rows, ks, kc, kr, hpad = (
        p[k] for k in ("cluster", "units", "rows", "ks", "kc", "kr", "hpad")
    )
    bf16 = VARIANTS[p["variant"]][2]
    packed = pack_bf16_pairs(W) if bf16 else None
    nb = h.shape[0]
    hbuf = np.zeros((nb, hpad), np.float64)  # zero padded, like the shared buffer
    hbuf[:, :H] = h
    out = np.full((nb, G * H), np.nan)
    for rank in range(C):
        j0 = rank * units
        nu = min(units, H - j0)
        part = np.zeros((ks, nb, rows))
        for tid in range(rows * ks):
            prow, pks = tid % rows, tid // rows
            g, jl = prow // units, prow % units
            w = np.zeros(kr)
            if jl < nu and bf16:
                for i in range(kr // 2):  # register i: pair (k0 + 2i, k0 + 2i + 1)
                    k = pks * kc + 2 * i
                    if 2 * i < kc and k < H:
                        reg = int(packed[g * H + j0 + jl, k // 2])
                        w[2 * i] = np.uint32((reg << 16) & 0xFFFFFFFF).view(np.float32)
                        w[2 * i + 1] = np.uint32(reg & 0xFFFF0000).view(np.float32)
            elif jl < nu:
                for i in range(kr):
                    k = pks * kc + i
                    if i < kc and k < H:
                        w[i] = W[g * H + j0 + jl, k]
            for bb in range(nb):
                part[pks, bb, prow] = sum(w[i] * hbuf[bb, pks * kc + i] for i in range(kc))
        for tid in range(p["threads"]):
            qb, qj = tid // units, tid % units
            if qb < nb and qj < nu:
                for g in range(G):
                    out[qb, g * H + j0 + qj] = part[:, qb, g * units + qj].sum()
    return out


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize(
    "H,G,max_cluster", [(37, 4, 16), (100, 3, 16), (64, 1, 1), (130, 4, 16), (5, 3, 2)]
)
def test_cuda_plan_emulated_product_matches_numpy(H, G, max_cluster, bf16):
    rng = np.random.default_rng(H * 10 + G)
    B = 3
    p = check_plan(H, G, B, max_cluster, H100_SMEM, bf16)
    assert p["persistent"]
    W = rng.standard_normal((G * H, H)).astype(np.float32)
    h = rng.standard_normal((min(B, p["batch_tile"]), H))
    got = emulate_matvec(p, W, h, G, H)
    want = h @ (round_bf16(W) if bf16 else W).astype(np.float64).T
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_cuda_bf16_rounding_and_packing_match_torch():
    # The C++ host code the bf16 mode uploads with, against torch's .bfloat16().
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((37, 41)).astype(np.float32) * 100
    x[0, :4] = [0.0, -0.0, 1e-40, 3.0e38]  # zero, negative zero, a denormal, near the top
    want = torch.from_numpy(x).bfloat16().float().numpy()
    rounded, packed = _C.cuda_pack_bf16(x)
    np.testing.assert_array_equal(rounded, want)
    np.testing.assert_array_equal(round_bf16(x), want)
    np.testing.assert_array_equal(packed, pack_bf16_pairs(x))
    assert packed.shape == (37, 21) and (packed[:, -1] & 0xFFFF0000 == 0).all()  # odd H pad


FUSED_CASES = [
    (h, g, layers, d, b, c)
    for h, g, layers, d, b, c in itertools.product(
        [1, 5, 17, 37, 100, 256, 1000], [1, 3, 4], [1, 2, 3], [0, 1, 28], [1, 3, 9], [1, 8, 16]
    )
]


@pytest.mark.parametrize("H,G,L,D,B,max_cluster", FUSED_CASES)
def test_cuda_fused_plan_owns_every_unit_and_head_row_once(H, G, L, D, B, max_cluster):
    p = _C.cuda_fused_plan(H, G, L, D, B, max_cluster, H100_SMEM)
    assert p["ok"], p["reason"]
    C, units, bt = p["cluster"], p["units"], p["batch_tile"]
    assert 1 <= C <= max_cluster
    assert C * units >= H and (C - 1) * units < H  # every block owns >= 1 unit, all H owned
    assert p["rows"] == G * units
    assert p["hp"] >= H and p["hp"] % 4 == 0 and p["dp"] >= D and p["dp"] % 4 == 0
    assert 1 <= bt <= min(B, MAX_BT) and p["batch_tiles"] == math.ceil(B / bt)
    smem = 4 * (2 * L * bt * p["hp"] + bt * p["dp"] + 2 * L * bt * p["rows"] + L * bt * units)
    assert p["smem"] == smem <= H100_SMEM
    # the kernel's carving: each region as large as its use, back to back, nothing overlaps
    lay = p["layout"]
    sizes = {
        "xin": 2 * L * bt * p["hp"],  # what precedes xin: the h buffers
        "gxs": bt * p["dp"],
        "ghs": L * bt * p["rows"],
        "cst": L * bt * p["rows"],
        "words": L * bt * units,
    }
    prev = 0
    for name in ("xin", "gxs", "ghs", "cst", "words"):
        assert lay[name] - prev == sizes[name], name
        prev = lay[name]
    assert 4 * lay["words"] == p["smem"]
    # head rows split as in the kernel: block r owns [r*per, min(outs, (r+1)*per))
    for outs in (1, 2, 65, 100):
        per = math.ceil(outs / C)
        owned = [o for r in range(C) for o in range(r * per, min(outs, (r + 1) * per))]
        assert sorted(owned) == list(range(outs))


def test_cuda_fused_plan_limits():
    assert not _C.cuda_fused_plan(64, 4, 9, 1, 1, 16, H100_SMEM)["ok"]  # > 8 layers
    assert not _C.cuda_fused_plan(64, 4, 2, 5000, 1, 16, H100_SMEM)["ok"]  # wide float input
    tiny = _C.cuda_fused_plan(4096, 4, 8, 0, 8, 1, 8 * 1024)
    assert not tiny["ok"] and "shared memory" in tiny["reason"]
    # The Shakespeare char-LSTM's streaming step: one cluster of 16 blocks, 16 units each.
    p = _C.cuda_fused_plan(256, 4, 2, 0, 1, 16, H100_SMEM)
    assert p["ok"] and p["cluster"] == 16 and p["units"] == 16


def emulate_fused_wavefront(x: np.ndarray, W_ih: list, W_hh: list, h0: np.ndarray):
    """The fused kernel's schedule with its buffers (tanh RNN cells, one sequence): at tick
    tau layer l works on step tau - l; phase 1 of every layer in flight reads before any
    phase 2 of that tick writes (the __syncthreads between them); h buffers by step parity."""
    T, L, H = x.shape[0], len(W_hh), h0.shape[1]
    hb = np.zeros((2, L, H))
    hb[0] = h0
    y = np.full((T, H), np.nan)
    for tick in range(T + L - 1):
        lo, hi = max(0, tick - (T - 1)), min(L - 1, tick)
        pre = {}
        for layer in range(lo, hi + 1):  # phase 1: reads only
            t = tick - layer
            par = t & 1
            inp = x[t] if layer == 0 else hb[par ^ 1, layer - 1]
            pre[layer] = W_ih[layer] @ inp + W_hh[layer] @ hb[par, layer]
        for layer in range(lo, hi + 1):  # phase 2: writes
            t = tick - layer
            hb[(t & 1) ^ 1, layer] = np.tanh(pre[layer])
        t = tick - (L - 1)
        if t >= 0:  # the head reads the top layer's step t after the barrier
            y[t] = hb[(t & 1) ^ 1, L - 1]
    return y, hb[T & 1]


@pytest.mark.parametrize("T,L", [(1, 1), (1, 3), (2, 2), (5, 1), (7, 3), (4, 4)])
def test_cuda_fused_wavefront_schedule_matches_layer_by_layer(T, L):
    rng = np.random.default_rng(T * 10 + L)
    D, H = 3, 5
    W_ih = [rng.standard_normal((H, D if layer == 0 else H)) * 0.5 for layer in range(L)]
    W_hh = [rng.standard_normal((H, H)) * 0.5 for _ in range(L)]
    x = rng.standard_normal((T, D))
    h0 = rng.standard_normal((L, H))
    got_y, got_h = emulate_fused_wavefront(x, W_ih, W_hh, h0)
    inp = x
    want_h = np.empty_like(h0)
    for layer in range(L):  # the plain order: one layer over all steps, then the next
        h = h0[layer]
        out = []
        for t in range(T):
            h = np.tanh(W_ih[layer] @ inp[t] + W_hh[layer] @ h)
            out.append(h)
        inp = np.array(out)
        want_h[layer] = h
    np.testing.assert_allclose(got_y, inp, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got_h, want_h, rtol=0, atol=1e-12)


def emulate_persistent_layer(x, lengths, W_ih, W_hh, b, h0, batch_first, bt):
    """One bidirectional tanh-RNN layer through the persistent kernel's loop: the host zeroes
    y (lengths given), the GEMM fills gx in the caller's row order, each batch tile runs
    max(lengths in tile) steps, sequence b is active while s < len_b, at time t = s (forward)
    or len_b - 1 - s (backward), and keeps its state past its length."""
    T, B = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    H = h0.shape[-1]
    rows = x.reshape(B * T, -1)  # the caller's row order, as the GEMM sees it

    def row_of(t, bb):
        return bb * T + t if batch_first else t * B + bb

    y = np.zeros((B * T, 2 * H))
    hn = np.zeros((2, B, H))
    for d in range(2):
        gx = rows @ W_ih[d].T + b[d]
        for b0 in range(0, B, bt):
            tile = range(b0, min(B, b0 + bt))
            h = {bb: h0[d, bb].copy() for bb in tile}
            for s in range(max(lengths[bb] for bb in tile)):
                for bb in tile:
                    n = lengths[bb]
                    if s < n:
                        t = s if d == 0 else n - 1 - s
                        h[bb] = np.tanh(gx[row_of(t, bb)] + W_hh[d] @ h[bb])
                        y[row_of(t, bb), d * H : (d + 1) * H] = h[bb]
            for bb in tile:
                hn[d, bb] = h[bb]
    shape = (B, T, 2 * H) if batch_first else (T, B, 2 * H)
    return y.reshape(shape), hn


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("bt", [1, 2, 8])
def test_cuda_persistent_loop_semantics_match_pack_padded_sequence(batch_first, bt):
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    B, T, D, H = 5, 7, 3, 4
    torch.manual_seed(bt)
    rnn = torch.nn.RNN(D, H, batch_first=batch_first, bidirectional=True).double()
    x = torch.randn((B, T, D) if batch_first else (T, B, D), dtype=torch.float64)
    lengths = [7, 3, 1, 5, 2]
    h0 = torch.randn(2, B, H, dtype=torch.float64)
    with torch.no_grad():
        packed = pack_padded_sequence(x, torch.tensor(lengths), batch_first, enforce_sorted=False)
        out, hn = rnn(packed, h0)
        out, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=T)
    sd = {k: v.numpy() for k, v in rnn.state_dict().items()}
    W_ih = [sd["weight_ih_l0"], sd["weight_ih_l0_reverse"]]
    W_hh = [sd["weight_hh_l0"], sd["weight_hh_l0_reverse"]]
    b = [sd["bias_ih_l0"] + sd["bias_hh_l0"], sd["bias_ih_l0_reverse"] + sd["bias_hh_l0_reverse"]]
    y, h = emulate_persistent_layer(x.numpy(), lengths, W_ih, W_hh, b, h0.numpy(), batch_first, bt)
    np.testing.assert_allclose(y, out.numpy(), atol=1e-12)
    np.testing.assert_allclose(h, hn.numpy(), atol=1e-12)
