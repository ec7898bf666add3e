"""Shared helpers for the native-engine tests: eager PyTorch oracles and comparisons.

Imported by tests/test_native*.py (not a test module itself).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from seqfuse import _C
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

TOL = 1e-5  # fp32 native vs eager: max abs error
# Every kernel set this build has and this CPU runs, from the engine's own registry.
ISAS = [name for name, supported in _C.kernel_sets() if supported]


def make_rnn(
    cell: str,
    input_size: int,
    hidden: int,
    layers: int,
    bidir: bool,
    bias: bool,
    batch_first: bool,
    seed: int,
    proj: int = 0,
) -> nn.RNNBase:
    torch.manual_seed(seed)
    kw: dict[str, Any] = dict(
        num_layers=layers, bias=bias, batch_first=batch_first, bidirectional=bidir
    )
    if cell == "lstm":
        m: nn.RNNBase = nn.LSTM(input_size, hidden, proj_size=proj, **kw)
    elif cell == "gru":
        m = nn.GRU(input_size, hidden, **kw)
    else:
        m = nn.RNN(input_size, hidden, nonlinearity=cell.split("_")[1], **kw)
    # Larger-than-default weights exercise the activations' saturated ranges too (not for
    # relu, whose unbounded outputs would grow until fp32 rounding exceeds the absolute bar).
    if cell != "rnn_relu":
        with torch.no_grad():
            for p in m.parameters():
                p.mul_(1.5)
    return m.eval()


def eager_rnn(m: nn.RNNBase, x: torch.Tensor, hx: Any = None, lengths: Any = None) -> Any:
    """The oracle: the module itself, through pack_padded_sequence when lengths are given."""
    with torch.no_grad():
        if lengths is None:
            return m(x, hx)
        T = x.shape[1] if m.batch_first else x.shape[0]
        packed = pack_padded_sequence(
            x, torch.as_tensor(lengths), batch_first=m.batch_first, enforce_sorted=False
        )
        out, h = m(packed, hx)
        out, _ = pad_packed_sequence(out, batch_first=m.batch_first, total_length=T)
        return out, h


def flat(obj: Any) -> list[np.ndarray]:
    """Every array in a nested (tuple/list/None) structure, as float64 NumPy."""
    if obj is None:
        return []
    if isinstance(obj, (tuple, list)):
        return [a for o in obj for a in flat(o)]
    if isinstance(obj, torch.Tensor):
        return [obj.detach().double().numpy()]
    return [np.asarray(obj, dtype=np.float64)]


def max_err(got: Any, want: Any) -> float:
    g, w = flat(got), flat(want)
    assert len(g) == len(w), f"structure differs: {len(g)} vs {len(w)} arrays"
    err = 0.0
    for a, b in zip(g, w):
        assert a.shape == b.shape, f"shape {a.shape} != {b.shape}"
        if a.size:
            err = max(err, float(np.max(np.abs(a - b))))
    return err


CELLS = ("rnn_tanh", "rnn_relu", "gru", "lstm")


def random_case(
    rng: random.Random,
    hiddens: tuple[int, ...] = (5, 16, 37, 64, 100),
    batches: tuple[int, ...] = (1, 1, 2, 3, 7, 16, 65),
    projections: bool = True,
) -> dict:
    """One point of the randomized parity grid (CPU and CUDA tests draw from the same; the
    CUDA engine has no LSTM proj_size, so its grid draws none)."""
    big_t = rng.random() < 0.15
    case = dict(
        cell=rng.choice(CELLS),
        input_size=rng.choice([1, 3, 8, 28]),
        hidden=rng.choice([1, 5, 16, 37, 64]) if big_t else rng.choice(list(hiddens)),
        layers=rng.randint(1, 3),
        bidir=rng.random() < 0.5,
        bias=rng.random() < 0.8,
        batch_first=rng.random() < 0.5,
        B=rng.choice(list(batches)) if not big_t else rng.choice([1, 3]),
        T=rng.randint(150, 200) if big_t else rng.choice([1, 2, 5, 12, 31]),
        hx=rng.random() < 0.5,
        lengths=rng.random() < 0.5,
        seed=rng.randrange(1 << 30),
    )
    # Drawn last, so that the cases above are the same with or without projections.
    proj = rng.choice([1, 3, 16]) if rng.random() < 0.35 else 0
    case["proj"] = min(proj, case["hidden"] - 1) if projections and case["cell"] == "lstm" else 0
    return case


def case_inputs(case: dict):
    """(x, hx, lengths) for a grid case: unsorted lengths with a T and a length-1 sequence."""
    g = torch.Generator().manual_seed(case["seed"])
    B, T, D, H = case["B"], case["T"], case["input_size"], case["hidden"]
    shape = (B, T, D) if case["batch_first"] else (T, B, D)
    x = torch.randn(shape, generator=g) * (1 if case["cell"] == "rnn_relu" else 2)
    S = case["layers"] * (2 if case["bidir"] else 1)
    hx = None
    if case["hx"]:
        h0 = torch.randn(S, B, case.get("proj") or H, generator=g)
        hx = (h0, torch.randn(S, B, H, generator=g)) if case["cell"] == "lstm" else h0
    lengths = None
    if case["lengths"]:
        lengths = torch.randint(1, T + 1, (B,), generator=g)
        lengths[0] = T  # pad_packed_sequence needs the longest to be T for total_length
        if B > 2:
            lengths[-1] = 1
    return x, hx, lengths


def module_of(case: dict) -> nn.RNNBase:
    return make_rnn(
        case["cell"], case["input_size"], case["hidden"], case["layers"], case["bidir"],
        case["bias"], case["batch_first"], case["seed"], case.get("proj", 0),
    )  # fmt: skip


def nan_inf_case(cell: str) -> tuple[nn.RNNBase, torch.Tensor]:
    """A 2-layer bidirectional module and an input holding NaN, +Inf and -Inf in three of its
    four sequences (the fourth stays finite): the CPU and CUDA NaN/Inf parity tests' case."""
    m = make_rnn(cell, 4, 20, 2, True, True, True, seed=5)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 6, 4, generator=g)
    x[0, 2, 1] = float("nan")  # sequence 0 turns NaN from step 2 on (forward) / all (backward)
    x[1, 4, :] = float("inf")
    x[2, 1, 3] = float("-inf")
    return m, x
