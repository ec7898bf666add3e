"""The configurable recurrent sequence model and the linear-regression seed.

Both are plain compositions of torch's own nn.RNN/GRU/LSTM/Embedding/Linear so every torch
tool (torch.compile, torch.jit, torch.onnx, torch.export) sees standard modules.
Checked by tests/test_models.py.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

CELLS = ("rnn_tanh", "rnn_relu", "gru", "lstm")
HEADS = ("none", "step", "last_step", "last_hidden")


@dataclass
class SeqConfig:
    """Everything needed to rebuild a :class:`SeqModel`.

    Inputs are batch-first: features ``[B, T, input_size]`` float, or token ids ``[B, T]``
    int64 when ``vocab_size > 0`` (then an Embedding of ``embed_dim`` feeds layer 1).
    """

    cell: str = "lstm"
    hidden_size: int = 32
    input_size: int = 1
    vocab_size: int = 0
    embed_dim: int = 0
    num_layers: int = 1
    bidirectional: bool = False
    bias: bool = True
    dropout: float = 0.0
    head: str = "step"
    output_size: int = 1
    kind: str = "seq"

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}; expected one of {', '.join(CELLS)}")
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}; expected one of {', '.join(HEADS)}")
        for name in ("hidden_size", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.vocab_size > 0 and self.embed_dim < 1:
            raise ValueError("embed_dim must be >= 1 when vocab_size > 0")
        if self.vocab_size == 0 and self.input_size < 1:
            raise ValueError("input_size must be >= 1 for feature inputs")
        if self.head != "none" and self.output_size < 1:
            raise ValueError("output_size must be >= 1 when a head is used")

    @property
    def rnn_input_size(self) -> int:
        return self.embed_dim if self.vocab_size > 0 else self.input_size

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class SeqModel(nn.Module):
    """Recurrent sequence model: [Embedding] -> RNN/GRU/LSTM -> [Linear head].

    ``forward(x, hx=None, lengths=None)`` returns ``(y, h_n)``:

    - ``x``: ``[B, T, input_size]`` float, or ``[B, T]`` int64 token ids;
    - ``hx``: initial state as torch's RNN takes it (``h0`` or ``(h0, c0)`` for LSTM), each
      ``[num_layers * num_directions, B, H]``;
    - ``lengths``: ``[B]`` int64 valid lengths (any order), run through
      ``pack_padded_sequence``; padded outputs are zero and ``h_n`` is taken at each
      sequence's own last step;
    - ``y`` by head: ``none`` -> RNN output ``[B, T, D*H]``; ``step`` -> ``[B, T, O]``;
      ``last_step`` -> head of the output at each sequence's last valid step ``[B, O]``;
      ``last_hidden`` -> head of the top layer's final hidden state(s) ``[B, O]``.
    """

    def __init__(self, config: SeqConfig | dict[str, Any]) -> None:
        super().__init__()
        if isinstance(config, dict):
            config = SeqConfig(**config)
        self.config = config
        c = config
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim) if c.vocab_size > 0 else None
        rnn_kwargs = dict(
            input_size=c.rnn_input_size,
            hidden_size=c.hidden_size,
            num_layers=c.num_layers,
            bias=c.bias,
            batch_first=True,
            dropout=c.dropout if c.num_layers > 1 else 0.0,
            bidirectional=c.bidirectional,
        )
        if c.cell == "lstm":
            self.rnn: nn.RNNBase = nn.LSTM(**rnn_kwargs)
        elif c.cell == "gru":
            self.rnn = nn.GRU(**rnn_kwargs)
        else:
            self.rnn = nn.RNN(nonlinearity=c.cell.split("_")[1], **rnn_kwargs)
        feat = c.hidden_size * c.num_directions
        self.head = nn.Linear(feat, c.output_size) if c.head != "none" else None

    def forward(self, x: torch.Tensor, hx: Any = None, lengths: torch.Tensor | None = None):
        c = self.config
        inp = self.embedding(x) if self.embedding is not None else x
        T = inp.shape[1]
        if lengths is not None:
            packed = pack_padded_sequence(
                inp, lengths.to("cpu", torch.int64), batch_first=True, enforce_sorted=False
            )
            out_p, h_n = self.rnn(packed, hx)
            out, _ = pad_packed_sequence(out_p, batch_first=True, total_length=T)
        else:
            out, h_n = self.rnn(inp, hx)
        if self.head is None:
            return out, h_n
        if c.head == "step":
            y = self.head(out)
        elif c.head == "last_step":
            if lengths is None:
                last = out[:, -1]
            else:
                idx = (lengths.to(out.device, torch.int64) - 1).clamp(min=0)
                last = out[torch.arange(out.shape[0], device=out.device), idx]
            y = self.head(last)
        else:  # last_hidden
            h = h_n[0] if isinstance(h_n, tuple) else h_n
            top = h[-1] if c.num_directions == 1 else torch.cat([h[-2], h[-1]], dim=-1)
            y = self.head(top)
        return y, h_n


@dataclass
class LinearConfig:
    in_features: int = 1
    out_features: int = 1
    kind: str = "linear"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class LinearRegression(nn.Module):
    """y = x W^T + b: the linear-regression seed. ``forward(x [N, in]) -> [N, out]``."""

    def __init__(self, config: LinearConfig | dict[str, Any] | None = None) -> None:
        super().__init__()
        if config is None:
            config = LinearConfig()
        if isinstance(config, dict):
            config = LinearConfig(**config)
        self.config = config
        self.linear = nn.Linear(config.in_features, config.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def build_model(config: dict[str, Any]) -> nn.Module:
    """Rebuild a model from the config dict a checkpoint carries."""
    if not isinstance(config, dict):
        raise ValueError(f"model config must be a dict, got {type(config).__name__}")
    cfg = dict(config)
    kind = cfg.get("kind", "seq")
    try:
        if kind == "seq":
            return SeqModel(SeqConfig(**cfg))
        if kind == "linear":
            return LinearRegression(LinearConfig(**cfg))
    except TypeError as e:  # unknown or missing keys
        raise ValueError(f"invalid model config: {e}") from None
    raise ValueError(f"unknown model kind {kind!r}")


def config_of(model: nn.Module) -> dict[str, Any]:
    """The config dict of a seqfuse model (inverse of :func:`build_model`)."""
    cfg = getattr(model, "config", None)
    if cfg is None or not hasattr(cfg, "to_dict"):
        raise ValueError(f"{type(model).__name__} is not a seqfuse model")
    return cfg.to_dict()


def example_input(
    config: dict[str, Any], batch: int = 2, seq_len: int = 7, seed: int = 0
) -> torch.Tensor:
    """A deterministic input of the right kind for a model config.

    Token ids ``[batch, seq_len]`` int64 for Embedding models, features
    ``[batch, seq_len, input_size]`` float32 otherwise, ``[batch, in_features]`` for linear.
    """
    g = torch.Generator().manual_seed(seed)
    if config.get("kind", "seq") == "linear":
        return torch.randn(batch, config["in_features"], generator=g)
    if config.get("vocab_size", 0) > 0:
        return torch.randint(0, config["vocab_size"], (batch, seq_len), generator=g)
    return torch.randn(batch, seq_len, config["input_size"], generator=g)
