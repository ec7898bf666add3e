"""Parity of the native engine with eager PyTorch (fp32, max abs error <= 1e-5).

A seeded randomized grid over cells, layers, directions, odd sizes, batch 1..65, T 1..200,
initial states, variable (unsorted, length-1) lengths, batch_first both ways, bias on/off and
LSTM proj_size;
every kernel set (reference, portable, avx2, avx512 where the CPU has it) against eager and
the fast sets against the scalar reference; threads 1 vs 2; every seed preset and a trained
checkpoint. Runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import seqfuse.native as sn
import torch
from native_util import (
    CELLS,
    ISAS,
    TOL,
    case_inputs,
    eager_rnn,
    flat,
    make_rnn,
    max_err,
    module_of,
    random_case,
)
from seqfuse import _C
from seqfuse.models.presets import PRESETS, preset
from seqfuse.models.seq import build_model, example_input
from torch.utils._pytree import tree_leaves


def check_case(case: dict, isa: str = "auto", threads: int = 1) -> float:
    m = module_of(case)
    x, hx, lengths = case_inputs(case)
    want = eager_rnn(m, x, hx, lengths)
    nm = sn.from_module(m, isa=isa, threads=threads)
    got = nm(x, hx, lengths=lengths)
    return max_err(got, want)


GRID = [random_case(random.Random(1000 + i)) for i in range(48)]


@pytest.mark.parametrize("case", GRID, ids=[f"g{i}" for i in range(len(GRID))])
def test_grid_vs_eager(case):
    err = check_case(case)
    assert err <= TOL, f"{case}: max abs error {err:.3g}"


def _small(case: dict) -> dict:
    # The scalar reference is slow: keep its cases small.
    c = dict(case)
    c["B"] = min(c["B"], 7)
    c["T"] = min(c["T"], 40)
    c["hidden"] = min(c["hidden"], 37)
    return c


SMALL = [_small(random_case(random.Random(5000 + i))) for i in range(10)]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("case", SMALL, ids=[f"s{i}" for i in range(len(SMALL))])
def test_every_kernel_set_vs_eager_and_reference(case, isa):
    assert check_case(case, isa=isa) <= TOL
    if isa == "reference":
        return
    m = module_of(case)
    x, hx, lengths = case_inputs(case)
    ref = sn.from_module(m, isa="reference")(x, hx, lengths=lengths)
    fast = sn.from_module(m, isa=isa)(x, hx, lengths=lengths)
    assert max_err(fast, ref) <= TOL


@pytest.mark.parametrize("cell", CELLS)
def test_every_cell_every_kernel_set_odd_sizes(cell):
    # input 3, hidden 37 (not a multiple of any vector width), 2 layers, bidirectional
    case = dict(
        cell=cell, input_size=3, hidden=37, layers=2, bidir=True, bias=True,
        batch_first=True, B=5, T=9, hx=True, lengths=True, seed=7,
    )  # fmt: skip
    for isa in ISAS:
        assert check_case(case, isa=isa) <= TOL, isa


# LSTM proj_size (h = W_hr (o * tanh(c)), P < H wide): its own grid, since the shared one draws
# it for about one case in twelve. Batch 1 and batched steps, a hidden size that needs a team
# of two threads and K blocks (400), and a projection wider than one vector.
PROJ = [
    dict(cell="lstm", input_size=D, hidden=H, proj=P, layers=L, bidir=bi, bias=True,
         batch_first=bf, B=B, T=T, hx=hx, lengths=ln, seed=31 + i)
    for i, (D, H, P, L, bi, bf, B, T, hx, ln) in enumerate([
        (3, 5, 1, 1, False, True, 1, 7, True, False),
        (8, 37, 16, 2, True, True, 5, 12, True, True),
        (28, 64, 33, 2, False, False, 16, 9, False, True),
        (1, 100, 3, 1, True, True, 3, 31, True, False),
        (16, 400, 128, 1, False, True, 9, 5, True, True),
    ])
]  # fmt: skip


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("case", PROJ, ids=[f"p{i}" for i in range(len(PROJ))])
def test_lstm_proj_size_every_kernel_set(case, isa):
    if isa == "reference" and case["hidden"] > 100:
        pytest.skip("the scalar reference is slow at H=400; the fused sets cover it")
    for threads in (1, 2):
        err = check_case(case, isa=isa, threads=threads)
        assert err <= TOL, f"{case} threads={threads}: max abs error {err:.3g}"


@pytest.mark.parametrize("case", GRID[:12], ids=[f"t{i}" for i in range(12)])
def test_threads_give_identical_results(case):
    m = module_of(case)
    x, hx, lengths = case_inputs(case)
    nm = sn.from_module(m)
    one = flat(nm(x, hx, lengths=lengths, threads=1))
    for threads in (2, 3):
        other = flat(nm(x, hx, lengths=lengths, threads=threads))
        for a, b in zip(one, other):
            np.testing.assert_array_equal(a, b)


# Hidden sizes whose recurrent step is big enough for a team of threads to split one
# direction's panels (the grid's sizes never are): H=200 packs as an even number of uneven
# panels, H=256 as four equal ones. Eager parity, identical results at 1/2/3 threads, and
# streaming (one step per call, the layer loop without a barrier between layers).
@pytest.mark.parametrize(
    "cell,hidden,bidir,lengths",
    [("lstm", 256, False, False), ("lstm", 200, False, True), ("gru", 200, True, False)],
)
def test_team_split_large_hidden(cell, hidden, bidir, lengths):
    case = dict(
        cell=cell, input_size=8, hidden=hidden, layers=2, bidir=bidir, bias=True,
        batch_first=True, B=3, T=5, hx=True, lengths=lengths, seed=7,
    )  # fmt: skip
    m = make_rnn(cell, 8, hidden, 2, bidir, True, True, 7)
    x, hx, ln = case_inputs(case)
    want = eager_rnn(m, x, hx, ln)
    nm = sn.from_module(m)
    one = flat(nm(x, hx, lengths=ln, threads=1))
    assert max_err(nm(x, hx, lengths=ln), want) <= TOL
    for threads in (2, 3):
        for a, b in zip(one, flat(nm(x, hx, lengths=ln, threads=threads))):
            np.testing.assert_array_equal(a, b)
    if not bidir:
        with torch.no_grad():
            full = m(x[:1])[0]
        for threads in (1, 2, 3):
            s = nm.stream(batch=1, threads=threads)
            got = torch.cat([s(x[:1, t : t + 1]) for t in range(x.shape[1])], dim=1)
            assert max_err(got, full) <= TOL


# A stream's one-sequence step orders its weight reads by the session's call parity
# (engine.hpp): even calls take the input projections and lower layers last panel first, odd
# ones compute the top layer's recurrent product first and add the input projection to it
# (GRU: start its gates from it); a second pass (LSTM projection) or an embedding-table
# single layer reverses every panel instead. The layers above the first compute their input
# projections in blocks during the step below them (3 layers: the middle one both reads and
# writes blocks). H=320 packs several wide panels per pass, and a team of 2 or 3 threads
# splits each step. Every ordering matches eager, every thread count gives identical
# outputs, and a replay after reset() repeats them exactly.
STREAM_ORDERS = [(c, n, v, 0) for c in CELLS for n in (1, 2) for v in (0, 11)]
STREAM_ORDERS += [(c, 3, 0, 0) for c in CELLS]
STREAM_ORDERS.append(("lstm", 2, 0, 48))


@pytest.mark.parametrize("isa", [i for i in ISAS if i != "reference"])
@pytest.mark.parametrize("cell,layers,vocab,proj", STREAM_ORDERS)
def test_stream_weight_orders_match_eager(cell, layers, vocab, proj, isa):
    torch.manual_seed(3)
    if proj:
        m = make_rnn(cell, 8, 320, layers, False, True, True, 3, proj)
    else:
        cfg = dict(
            cell=cell, hidden_size=320, input_size=8, vocab_size=vocab, embed_dim=8 if vocab else 0,
            num_layers=layers, head="step", output_size=5,
        )  # fmt: skip
        m = build_model(cfg).eval()
    T = 12
    x = torch.randint(0, vocab, (1, T)) if vocab else torch.randn(1, T, 8)
    with torch.no_grad():
        want = m(x)[0]
    nm = sn.from_module(m, isa=isa)
    chunks = [(t, t + 1) for t in range(7)] + [(7, 10), (10, 11), (11, 12)]
    runs = []
    for threads in (1, 2, 3):
        s = nm.stream(batch=1, threads=threads)
        for _ in range(2):  # the second time after reset(): the same calls, the same parities
            runs.append(torch.cat([s(x[:, t0:t1]) for t0, t1 in chunks], dim=1))
            s.reset()
    assert max_err(runs[0], want) <= TOL
    for other in runs[1:]:
        assert torch.equal(other, runs[0])


# The batched step cuts a recurrent weight slice that exceeds half of L1 into K blocks
# (accumulators parked between blocks): H=400 is blocked on every kernel set and L1 size, and
# batch 7 with lengths makes full and partial row tiles, with and without initial states.
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("cell", CELLS)
def test_k_blocked_batched_step(cell, isa):
    m = make_rnn(cell, 6, 400, 1, False, True, True, 11)
    case = dict(
        cell=cell, input_size=6, hidden=400, layers=1, bidir=False, bias=True,
        batch_first=True, B=7, T=4, hx=True, lengths=True, seed=11,
    )  # fmt: skip
    x, hx, ln = case_inputs(case)
    nm = sn.from_module(m, isa=isa)
    assert max_err(nm(x, hx, lengths=ln), eager_rnn(m, x, hx, ln)) <= TOL
    assert max_err(nm(x), eager_rnn(m, x)) <= TOL


# Batches of 32 or more compute W_ih x inside their steps, as the first K blocks of the step's
# product (LSTM, RNN and GRU layers with inputs 16 to 4H wide; GRU keeps W_in x in an
# accumulator of its own, gru_x), instead of one GEMM over the whole
# sequence. Forced here on small batches: eager parity on every fast kernel set at 1 and 2
# threads (bidirectional, two layers, lengths, initial states, a projection), with the K
# blocks of their default size (a quarter of L2: most often one per product) and cut to 8 KiB
# of weights (both products K-blocked), and the counter of such runs shows which path ran.
FUSED = [
    dict(cell=c, input_size=D, hidden=H, proj=P, layers=L, bidir=bi, bias=bias,
         batch_first=bf, B=B, T=T, hx=hx, lengths=ln, seed=71 + i)
    for i, (c, D, H, P, L, bi, bias, bf, B, T, hx, ln) in enumerate([
        ("lstm", 20, 37, 0, 2, True, True, True, 9, 13, True, True),
        ("lstm", 16, 64, 33, 2, False, True, False, 7, 6, False, True),
        ("rnn_tanh", 28, 16, 0, 2, True, False, True, 5, 9, True, False),
        ("rnn_relu", 64, 100, 0, 1, False, True, False, 3, 7, False, False),
        ("lstm", 200, 400, 0, 1, False, True, True, 7, 4, True, True),
        ("gru", 20, 37, 0, 2, True, True, True, 9, 13, True, True),
        ("gru", 48, 16, 0, 1, False, False, False, 7, 5, False, True),
        ("gru", 200, 400, 0, 1, False, True, True, 8, 4, True, False),
    ])
]  # fmt: skip


def _grid_case(case: dict, isa: str):
    """A grid case's native model on ``isa``, its inputs (x, hx, lengths) and eager's result."""
    m = module_of(case)
    x, hx, ln = case_inputs(case)
    return sn.from_module(m, isa=isa), (x, hx, ln), eager_rnn(m, x, hx, ln)


@pytest.mark.parametrize("isa", [i for i in ISAS if i != "reference"])
@pytest.mark.parametrize("case", FUSED, ids=[f"f{i}" for i in range(len(FUSED))])
def test_steps_computing_their_input_projection(case, isa, fused_input_rows):
    nm, (x, hx, ln), want = _grid_case(case, isa)
    fused_input_rows(1 << 30)
    runs = _C.fused_input_runs()
    assert max_err(nm(x, hx, lengths=ln), want) <= TOL
    assert _C.fused_input_runs() == runs
    fused_input_rows(1)
    try:
        for kblock_bytes in (0, 8 << 10):
            _C.set_fused_kblock_bytes(kblock_bytes)
            for threads in (1, 2):
                got = nm(x, hx, lengths=ln, threads=threads)
                assert max_err(got, want) <= TOL, f"threads={threads}, K blocks {kblock_bytes}"
    finally:
        _C.set_fused_kblock_bytes(0)
    dirs = 2 if case["bidir"] else 1
    assert _C.fused_input_runs() - runs == 4 * case["layers"] * dirs


# A team whose batched step's weights fit in half of each core's L2 (here at most 128 KiB:
# any L2 of 256 KiB or more; but the bidirectional GRU's second layer, whose steps compute its
# projection, 331 KiB: rows from 704 KiB of L2, columns below) splits the row tiles instead of
# the tile columns (engine.hpp's by_rows; the counter shows it ran). A row's arithmetic is the
# same either way, so 2 and 3
# threads give one thread's result bit for bit. With lengths the active rows shrink until a
# team has fewer row tiles than threads and splits columns again. Every cell kind, an LSTM
# projection (two passes), both input projections (GRU's steps computing theirs: gru_x), both
# layouts, directions sharing threads.
TEAM_ROWS = [
    dict(cell=c, input_size=D, hidden=H, proj=P, layers=L, bidir=bi, bias=True,
         batch_first=bf, B=B, T=T, hx=hx, lengths=ln, seed=91 + i)
    for i, (c, D, H, P, L, bi, bf, B, T, hx, ln) in enumerate([
        ("lstm", 20, 64, 0, 2, False, True, 40, 9, True, True),
        ("lstm", 16, 96, 40, 1, False, False, 37, 6, False, True),
        ("gru", 10, 96, 0, 2, True, True, 33, 7, True, False),
        ("gru", 20, 80, 0, 1, False, False, 48, 5, False, True),
        ("rnn_tanh", 24, 128, 0, 1, False, False, 64, 5, True, False),
    ])
]  # fmt: skip


@pytest.mark.parametrize("isa", [i for i in ISAS if i != "reference"])
@pytest.mark.parametrize("case", TEAM_ROWS, ids=[f"t{i}" for i in range(len(TEAM_ROWS))])
def test_teams_splitting_rows(case, isa, fused_input_rows):
    nm, (x, hx, ln), want = _grid_case(case, isa)
    for rows in (1 << 30, 1):
        fused_input_rows(rows)
        one = nm(x, hx, lengths=ln, threads=1)
        assert max_err(one, want) <= TOL
        for threads in (2, 3):
            runs = _C.row_split_runs()
            got = nm(x, hx, lengths=ln, threads=threads)
            # two directions: the threads form one team per direction
            team = (threads + 1) // 2 if case["bidir"] else threads
            split = _C.row_split_runs() > runs
            assert split == (team > 1), f"threads={threads}: rows split {split}"
            for a, b in zip(tree_leaves(got), tree_leaves(one), strict=True):
                assert torch.equal(a, b), f"threads={threads} differs from one thread"


def _seq_case(name: str, seed: int, B: int, T: int, lengths: bool, hx: bool, **overrides):
    cfg = preset(name, **overrides)
    torch.manual_seed(seed)
    m = build_model(cfg).eval()
    x = example_input(cfg, batch=B, seq_len=T, seed=seed)
    ln = None
    if lengths and cfg.get("kind", "seq") == "seq":
        g = torch.Generator().manual_seed(seed)
        ln = torch.randint(1, T + 1, (B,), generator=g)
        ln[-1] = 1
    h = None
    if hx and cfg.get("kind", "seq") == "seq":
        S = cfg["num_layers"] * (2 if cfg["bidirectional"] else 1)
        h0 = torch.randn(S, B, cfg["hidden_size"])
        h = (h0, torch.randn(S, B, cfg["hidden_size"])) if cfg["cell"] == "lstm" else h0
    return m, x, h, ln


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("variant", ["plain", "lengths_hx"])
def test_presets_vs_eager(name, variant):
    extra = variant == "lengths_hx"
    m, x, h, ln = _seq_case(name, 3, B=4, T=13, lengths=extra, hx=extra)
    with torch.no_grad():
        want = m(x) if name == "linear" else m(x, h, ln)
    nm = sn.from_module(m)
    got = nm(x) if name == "linear" else nm(x, h, ln)
    assert max_err(got, want) <= TOL
    # NumPy in, NumPy out, same numbers
    if name != "linear":
        hn = (
            None
            if h is None
            else tuple(t.numpy() for t in h)
            if isinstance(h, tuple)
            else h.numpy()
        )
        got_np = nm(x.numpy(), hn, None if ln is None else ln.numpy())
        assert isinstance(got_np[0], np.ndarray)
        assert max_err(got_np, want) <= TOL
        # need_state=False: the head's output only, same values
        y_only, none = nm(x, h, ln, need_state=False)
        assert none is None
        assert max_err(y_only, want[0]) <= TOL


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("B,hidden", [(3, 64), (3, 128), (9, 128)])
def test_mnist_head_only_skips_work_but_matches(isa, B, hidden, fused_input_rows):
    # last_step head on a bidirectional top layer: one backward step of the top layer, with
    # the input projections from the GEMM and from the steps themselves (both layers fuse).
    # H=64 gives each direction a thread (a step of 64 KiB is below engine.hpp's
    # TEAM_STEP_BYTES); at H=128 (256 KiB) the whole team of 2 or 3 takes the top layer's two
    # directions in turn. Both give one thread's result bit for bit.
    m, x, h, ln = _seq_case("mnist", 11, B=B, T=28, lengths=True, hx=False, hidden_size=hidden)
    with torch.no_grad():
        want = m(x, None, ln)[0]
    nm = sn.from_module(m, isa=isa)
    for rows in (1 << 30, 1):
        fused_input_rows(rows)
        runs = _C.fused_input_runs()
        one = None
        for threads in (1, 2, 3):
            got, _ = nm(x, lengths=ln, need_state=False, threads=threads)
            assert max_err(got, want) <= TOL
            one = got if one is None else one
            assert torch.equal(got, one), f"threads={threads} differs from one thread"
        fused = _C.fused_input_runs() > runs
        assert fused == (rows == 1 and isa != "reference")  # the reference never fuses


# Where a team of two threads forms (engine.hpp's TEAM_STEP_BYTES, 256 KiB of a step's
# weights per 4 batch rows; at batch 1 only for a step of two panels or more), counted by
# testing::team_runs. Results are the same either way; this checks the choice itself.
TEAMS = [
    # cell, D, H, batch, bidirectional, whether a team forms at 2 threads
    ("lstm", 8, 128, 1, False, True),  # 256 KiB in two panels (mnist's recurrence)
    ("lstm", 8, 112, 1, False, False),  # 200 KiB: below the line
    ("lstm", 8, 64, 4, False, False),  # 64 KiB
    ("rnn_tanh", 8, 256, 2, False, True),  # 256 KiB, batched: tile columns split
    ("lstm", 8, 128, 1, True, False),  # one thread per direction instead
    # names at batch 8: H=100 padded to whole vectors, 2 x 131 KiB with 16 lanes (avx512),
    # 2 x 122 KiB with 8, 2 x 117 KiB with 4
    ("gru", 8, 100, 8, False, "avx512"),
]


def _teamed(nm, x) -> bool:
    """Whether a call of ``nm`` on ``x`` at two threads formed a team (testing::team_runs),
    after checking that one thread formed none and that both gave the same bits."""
    runs = _C.team_runs()
    one = nm(x, threads=1)
    assert _C.team_runs() == runs  # one thread is never a team
    got = nm(x, threads=2)
    for a, b in zip(tree_leaves(got), tree_leaves(one), strict=True):
        assert torch.equal(a, b)
    return _C.team_runs() > runs


@pytest.mark.parametrize("isa", [i for i in ISAS if i != "reference"])
@pytest.mark.parametrize("case", TEAMS, ids=[f"{c[0]}-H{c[2]}-b{c[3]}" for c in TEAMS])
def test_teams_form_where_a_step_is_worth_splitting(isa, case):
    cell, D, H, B, bidir, team = case
    if isinstance(team, str):
        team = isa == team
    torch.manual_seed(0)
    make = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn_tanh": torch.nn.RNN}[cell]
    nm = sn.from_module(make(D, H, bidirectional=bidir).eval(), isa=isa)
    assert _teamed(nm, torch.randn(6, B, D)) == team


@pytest.mark.skipif("avx512" not in ISAS, reason="the panel count is the avx512 set's")
def test_a_one_panel_batch1_step_stays_on_one_thread():
    # RNN H=256 on avx512: 256 KiB, but one batch-1 panel of 16 groups; batch 2 splits
    nm = sn.from_module(torch.nn.RNN(8, 256).eval(), isa="avx512")
    for B, team in ((1, False), (2, True)):
        assert _teamed(nm, torch.randn(6, B, 8)) == team, B


# A model without recurrent layers shares only its head's GEMM, from 2^20 multiply-adds
# (engine.hpp's TEAM_HEAD_MACS): the seed's linear regression stays on one thread.
@pytest.mark.parametrize("isa", [i for i in ISAS if i != "reference"])
@pytest.mark.parametrize("size, rows, team", [(1, 64, False), (64, 255, False), (64, 257, True)])
def test_a_linear_model_teams_only_for_a_large_gemm(isa, size, rows, team):
    torch.manual_seed(0)
    m = build_model(preset("linear", in_features=size, out_features=size)).eval()
    nm = sn.from_module(m, isa=isa)
    x = torch.randn(rows, size)
    assert _teamed(nm, x) == team
    with torch.no_grad():
        assert max_err(nm(x, threads=2), m(x)) <= TOL


def test_trained_checkpoint(tmp_path):
    # A briefly trained names GRU saved as a training checkpoint, reloaded, run natively.
    from seqfuse.train.checkpoint import model_from_checkpoint, save_checkpoint

    cfg = preset("names")
    torch.manual_seed(0)
    m = build_model(cfg)
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    x = example_input(cfg, batch=8, seq_len=6, seed=1)
    target = torch.randint(0, cfg["output_size"], (8,))
    for _ in range(5):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(m(x)[0], target)
        loss.backward()
        opt.step()
    path = save_checkpoint(
        tmp_path / "checkpoint.pt",
        {"task": "names", "config": cfg, "model_state": m.state_dict(), "epoch": 1},
    )
    m2, _ = model_from_checkpoint(path)
    m2.eval()
    xt = example_input(cfg, batch=5, seq_len=9, seed=2)
    with torch.no_grad():
        want = m2(xt)
    assert max_err(sn.from_module(m2)(xt), want) <= TOL


@pytest.mark.parametrize("task", ["hihell"])
def test_checkpoint_from_the_training_cli(trained_checkpoint, task):
    # Checkpoints written by seqfuse's own training loop (conftest trains them once).
    from seqfuse.train.checkpoint import model_from_checkpoint

    path, _ = trained_checkpoint(task)
    m, _ = model_from_checkpoint(path)
    m.eval()
    x = example_input(m.config.to_dict(), batch=3, seq_len=15, seed=5)
    with torch.no_grad():
        want = m(x)
    assert max_err(sn.from_module(m)(x), want) <= TOL
