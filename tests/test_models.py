"""seqfuse.models: each preset's shapes, and SeqModel against hand-written torch code."""

from __future__ import annotations

import pytest
import torch
from seqfuse.models import PRESETS, SeqModel, build_model, config_of, example_input, preset
from torch import nn


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_shapes_and_rebuild(name):
    cfg = preset(name)
    m = build_model(cfg).eval()
    x = example_input(cfg, batch=3, seq_len=5)
    out = m(x)
    y = out[0] if isinstance(out, tuple) else out
    head = cfg.get("head")
    expect = {
        None: (3, 1),
        "step": (3, 5, cfg.get("output_size")),
        "last_step": (3, cfg.get("output_size")),
        "last_hidden": (3, cfg.get("output_size")),
    }[head]
    assert tuple(y.shape) == expect
    # the config alone rebuilds an identical model
    m2 = build_model(config_of(m))
    m2.load_state_dict(m.state_dict())
    out2 = m2.eval()(x)
    y2 = out2[0] if isinstance(out2, tuple) else out2
    torch.testing.assert_close(y, y2, rtol=0, atol=0)


def test_heads_match_manual_torch():
    torch.manual_seed(0)
    cfg = dict(
        cell="lstm",
        input_size=4,
        hidden_size=6,
        num_layers=2,
        bidirectional=True,
        head="last_step",
        output_size=3,
    )
    m = SeqModel(cfg).eval()
    x = torch.randn(5, 7, 4)
    lengths = torch.tensor([7, 1, 4, 3, 7])
    y, (h, c) = m(x, lengths=lengths)
    # oracle: run each sequence alone at its own length
    for b in range(5):
        L = int(lengths[b])
        out_b, (h_b, c_b) = m.rnn(x[b : b + 1, :L])
        torch.testing.assert_close(y[b], m.head(out_b[0, L - 1]), atol=1e-6, rtol=0)
        torch.testing.assert_close(h[:, b], h_b[:, 0], atol=1e-6, rtol=0)
    # last_hidden concatenates the top layer's two directions
    m.config.head = "last_hidden"
    y2, _ = m(x)
    _, (h_ref, _) = m.rnn(x)  # the oracle: torch's own LSTM, top layer fwd then bwd
    torch.testing.assert_close(y2, m.head(torch.cat([h_ref[-2], h_ref[-1]], -1)))


@pytest.mark.parametrize("cell,cls", [("gru", nn.GRU), ("rnn_relu", nn.RNN), ("lstm", nn.LSTM)])
def test_cells_are_torch_modules(cell, cls):
    m = SeqModel(dict(cell=cell, input_size=2, hidden_size=3, head="none"))
    assert isinstance(m.rnn, cls)
    if cell == "rnn_relu":
        assert m.rnn.nonlinearity == "relu"


@pytest.mark.parametrize(
    "bad",
    [dict(cell="cnn"), dict(head="middle"), dict(hidden_size=0), dict(vocab_size=5, embed_dim=0)],
)
def test_bad_config_is_rejected(bad):
    with pytest.raises(ValueError):
        SeqModel(bad)


def test_build_model_rejects_unknown_keys_and_kinds():
    with pytest.raises(ValueError, match="invalid model config"):
        build_model({"kind": "seq", "hidden": 3})
    with pytest.raises(ValueError, match="unknown model kind"):
        build_model({"kind": "transformer"})
