"""seqfuse.models: each preset's shapes, and SeqModel against hand-written torch code."""

from __future__ import annotations

import pytest
import torch
from seqfuse.models import (
    PRESETS,
    SeqModel,
    build_model,
    check_state_dict,
    config_of,
    example_input,
    parse_config,
    preset,
    state_shapes,
)
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


@pytest.mark.parametrize(
    "over",
    [
        {},
        dict(bidirectional=True, num_layers=3, bias=False),
        dict(head="none"),
        dict(cell="gru", head="last_hidden"),
        dict(cell="rnn_relu", vocab_size=7, embed_dim=3),
    ],
)
@pytest.mark.parametrize("name", list(PRESETS))
def test_state_shapes_without_building(name, over):
    cfg = preset(name) if name == "linear" else preset(name, **over)
    sd = build_model(cfg).state_dict()
    assert state_shapes(cfg) == {k: tuple(v.shape) for k, v in sd.items()}
    check_state_dict(cfg, sd)


def test_check_state_dict_names_the_mismatch():
    cfg = preset("sine")
    sd = build_model(cfg).state_dict()
    with pytest.raises(ValueError, match=r"head.weight has shape \[1, 32\], the config needs"):
        check_state_dict(preset("sine", output_size=2), sd)
    with pytest.raises(ValueError, match="missing rnn.weight_ih_l1"):
        check_state_dict(preset("sine", num_layers=2), sd)
    with pytest.raises(ValueError, match="unexpected extra"):
        check_state_dict(cfg, {**sd, "extra": torch.zeros(1)})
    with pytest.raises(ValueError, match="floating-point tensor"):
        check_state_dict(cfg, {**sd, "head.bias": torch.zeros(1, dtype=torch.int64)})
    with pytest.raises(ValueError, match="not backed by its data"):
        check_state_dict(cfg, {**sd, "rnn.weight_hh_l0": torch.zeros(1).expand(32, 32)})


@pytest.mark.parametrize(
    "bad,pattern",
    [
        (dict(hidden_size=20000), r"hidden_size must be in \[1, 16384\], got 20000"),
        (dict(hidden_size="32"), "hidden_size must be int, got str"),
        (dict(num_layers=True), "num_layers must be int, got bool"),
        (dict(num_layers=65), r"num_layers must be in \[1, 64\]"),
        (dict(bidirectional=1), "bidirectional must be bool"),
        (dict(dropout=float("nan")), r"dropout must be in \[0, 1\)"),
        (dict(cell=["lstm"]), "cell must be str"),
        (dict(vocab_size=1 << 25, embed_dim=4), "vocab_size must be in"),
        (dict(input_size=1 << 21), "input_size must be in"),
        (dict(vocab_size=1 << 24, embed_dim=1 << 16), "embedding.weight .* would be too large"),
    ],
)
def test_config_types_and_bounds_checked_before_building(bad, pattern):
    # checked when the config is read: no tensor (of any size) is allocated first
    with pytest.raises(ValueError, match=pattern):
        parse_config(preset("sine", **bad))
    with pytest.raises(ValueError, match=pattern):
        state_shapes(preset("sine", **bad))
    with pytest.raises(ValueError, match="in_features must be in"):
        parse_config(dict(kind="linear", in_features=0, out_features=1))
