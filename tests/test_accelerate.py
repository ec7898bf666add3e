"""seqfuse.accelerate / seqfuse.restore on models built here: each accelerated output equals
eager PyTorch's within 1e-5 (max abs), the fallback cases warn once and give eager's result
(gradients included), and restore / refresh / inplace do what the docs say. The oracle is
the same model run eagerly by torch.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from seqfuse import accelerate, restore
from seqfuse.accel import Accelerated, AccelerateFallbackWarning
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence
from torch.utils._pytree import tree_leaves

TOL = 1e-5


def _close(a, b) -> None:
    if isinstance(a, PackedSequence):
        assert isinstance(b, PackedSequence)
        assert torch.equal(a.batch_sizes, b.batch_sizes)
        for ia, ib in ((a.sorted_indices, b.sorted_indices), (a.unsorted_indices, b.unsorted_indices)):  # fmt: skip
            assert (ia is None and ib is None) or torch.equal(ia, ib)
        a, b = a.data, b.data
    la, lb = tree_leaves(a), tree_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        assert x.shape == y.shape
        assert (x - y).abs().max().item() <= TOL


def _no_fallback(model, *args):
    """Run under no_grad and fail on any fallback warning (the engine must have run)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", AccelerateFallbackWarning)
        with torch.no_grad():
            return model(*args)


class CRNN(nn.Module):
    """Conv1d front-end, a 2-layer BiLSTM, a CTC-style head (log_softmax over classes)."""

    def __init__(self, feats=20, hidden=32, classes=11):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(feats, 24, 3, padding=1), nn.ReLU())
        self.rnn = nn.LSTM(24, hidden, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(2 * hidden, classes)

    def forward(self, x):  # x: [B, T, feats]
        z = self.conv(x.transpose(1, 2)).transpose(1, 2)
        y, _ = self.rnn(z)
        return self.head(y).log_softmax(-1)


class GRUClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(8, 16, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(32, 3)

    def forward(self, packed):
        y, h = self.gru(packed)
        return y, h, self.head(torch.cat([h[-2], h[-1]], -1))


class TimeMajorRNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(6, 10, num_layers=2, nonlinearity="relu")  # batch_first=False

    def forward(self, x, h0):
        return self.rnn(x, h0)


def test_crnn_bilstm_ctc_head():
    torch.manual_seed(0)
    model = CRNN().eval()
    x = torch.randn(3, 17, 20)
    fast = accelerate(model)
    assert isinstance(fast.rnn, Accelerated) and type(fast.rnn.module) is nn.LSTM
    assert "AcceleratedLSTM" in repr(fast) and "kernels=" in repr(fast)
    with torch.no_grad():
        want = model(x)
    _close(_no_fallback(fast, x), want)
    # the same keys as the original model, so checkpoints load both ways
    assert list(fast.state_dict()) == list(model.state_dict())
    fast.load_state_dict(model.state_dict())


def test_gru_packed_sequence_unsorted_lengths():
    torch.manual_seed(1)
    model = GRUClassifier().eval()
    x = torch.randn(5, 9, 8)
    lengths = torch.tensor([4, 9, 2, 9, 6])  # unsorted, with a tie
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    h0 = torch.randn(4, 5, 16)
    fast = accelerate(model)
    with torch.no_grad():
        want = model(packed)
        want_h0 = model.gru(packed, h0)
    got = _no_fallback(fast, packed)
    _close(got[0], want[0])
    _close(got[1:], want[1:])
    got_h0 = _no_fallback(fast.gru, packed, h0)
    _close(got_h0[0], want_h0[0])
    _close(got_h0[1], want_h0[1])
    # sorted input (enforce_sorted=True: no indices) too
    order = lengths.argsort(descending=True)
    sp = pack_padded_sequence(x[order], lengths[order], batch_first=True)
    with torch.no_grad():
        want_s = model.gru(sp)
    got_s = _no_fallback(fast.gru, sp)
    _close(got_s[0], want_s[0])
    _close(got_s[1], want_s[1])


def test_time_major_rnn_with_hx_and_unbatched():
    torch.manual_seed(2)
    model = TimeMajorRNN().eval()
    x, h0 = torch.randn(7, 4, 6), torch.randn(2, 4, 10)
    fast = accelerate(model)
    with torch.no_grad():
        want = model(x, h0)
    _close(_no_fallback(fast, x, h0), want)
    # unbatched [T, D] input, with and without a state [L, H]
    lstm = nn.LSTM(6, 5, num_layers=2).eval()
    fl = accelerate(lstm)  # the model itself is a recurrent module
    assert isinstance(fl, Accelerated)
    u, s = torch.randn(7, 6), (torch.randn(2, 5), torch.randn(2, 5))
    with torch.no_grad():
        _close(_no_fallback(fl, u), lstm(u))
        _close(_no_fallback(fl, u, s), lstm(u, s))


def test_projected_lstm_falls_back_once():
    torch.manual_seed(3)
    model = nn.Sequential(nn.LSTM(6, 12, proj_size=4, batch_first=True)).eval()
    with pytest.warns(AccelerateFallbackWarning, match="proj_size"):
        fast = accelerate(model)
    assert "torch fallback" in repr(fast)
    x = torch.randn(2, 5, 6)
    with warnings.catch_warnings():
        # warned once, at accelerate time, not per call (torch's own oneDNN notice is allowed)
        warnings.simplefilter("error", AccelerateFallbackWarning)
        with torch.no_grad():
            _close(fast(x), model(x))
            _close(fast(x), model(x))


def test_training_falls_back_and_gradients_flow():
    torch.manual_seed(4)
    model = CRNN()
    fast = accelerate(model, inplace=False).train()
    x = torch.randn(2, 6, 20)
    with pytest.warns(AccelerateFallbackWarning, match="gradients") as rec:
        fast(x).sum().backward()
        fast(x).sum().backward()
    assert len([w for w in rec if issubclass(w.category, AccelerateFallbackWarning)]) == 1
    model(x).sum().backward()
    model(x).sum().backward()
    for (name, p), q in zip(model.named_parameters(), fast.parameters()):
        assert q.grad is not None, name
        assert (p.grad - q.grad).abs().max().item() <= TOL, name
    # dropout in training mode falls back even without gradients
    d = accelerate(nn.LSTM(4, 4, num_layers=2, dropout=0.5)).train()
    with pytest.warns(AccelerateFallbackWarning, match="dropout"), torch.no_grad():
        d(torch.randn(2, 3, 4))


def test_restore_gives_torch_modules_back():
    torch.manual_seed(5)
    model = CRNN().eval()
    x = torch.randn(2, 8, 20)
    with torch.no_grad():
        want = model(x)
    fast = accelerate(model)
    back = restore(fast)
    assert back is fast and type(back.rnn) is nn.LSTM
    assert not any(isinstance(m, Accelerated) for m in back.modules())
    with torch.no_grad():
        _close(back(x), want)
    assert type(restore(accelerate(nn.GRU(3, 3)))) is nn.GRU


def test_refresh_after_in_place_weight_change():
    torch.manual_seed(6)
    model = CRNN().eval()
    fast = accelerate(model, inplace=True)
    assert fast is model  # in place: the model is the accelerated one
    x = torch.randn(2, 8, 20)
    with torch.no_grad():
        fast.rnn.module.weight_hh_l0.mul_(1.5)
        want = restore(copy.deepcopy(fast))(x)  # eager on the changed weights
    stale = _no_fallback(fast, x)
    assert (stale - want).abs().max().item() > 1e-3  # the engine still has the old weights
    fast.rnn.refresh()
    _close(_no_fallback(fast, x), want)


def test_inplace_false_leaves_the_model_untouched():
    torch.manual_seed(7)
    model = CRNN().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = accelerate(model)
    assert fast is not model and type(model.rnn) is nn.LSTM
    assert not any(isinstance(m, Accelerated) for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # a deep copy of an accelerated model runs on the engine too
    x = torch.randn(1, 5, 20)
    with torch.no_grad():
        _close(_no_fallback(copy.deepcopy(fast), x), model(x))
