"""Shared helpers for the native-engine tests: eager PyTorch oracles and comparisons.

Imported by tests/test_native*.py (not a test module itself).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from seqfuse import _C
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

TOL = 1e-5  # fp32 native vs eager: max abs error
ISAS = [i for i in ("reference", "portable", "avx2", "avx512") if _C.cpu_supports(i)]


def make_rnn(
    cell: str,
    input_size: int,
    hidden: int,
    layers: int,
    bidir: bool,
    bias: bool,
    batch_first: bool,
    seed: int,
) -> nn.RNNBase:
    torch.manual_seed(seed)
    kw: dict[str, Any] = dict(
        num_layers=layers, bias=bias, batch_first=batch_first, bidirectional=bidir
    )
    if cell == "lstm":
        m: nn.RNNBase = nn.LSTM(input_size, hidden, **kw)
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
