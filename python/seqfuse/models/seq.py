"""The configurable recurrent sequence model and the linear-regression seed.

Both are plain compositions of torch's own nn.RNN/GRU/LSTM/Embedding/Linear so every torch
tool (torch.compile, torch.jit, torch.onnx, torch.export) sees standard modules.
Checked by tests/test_models.py.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


@dataclass(frozen=True)
class CellInfo:
    """One cell kind: seqfuse's name for it (the C++ core's Cell, csrc/core/cell.hpp) and how
    torch builds it. The one Python table of cell facts."""

    gates: int  # PyTorch's gate order: LSTM i,f,g,o; GRU r,z,n; RNN one
    module: type  # nn.RNN / nn.GRU / nn.LSTM
    nonlinearity: str | None = None  # nn.RNN's nonlinearity


CELL_TABLE: dict[str, CellInfo] = {
    "rnn_tanh": CellInfo(1, nn.RNN, "tanh"),
    "rnn_relu": CellInfo(1, nn.RNN, "relu"),
    "gru": CellInfo(3, nn.GRU),
    "lstm": CellInfo(4, nn.LSTM),
}
CELLS = tuple(CELL_TABLE)
GATES = {name: info.gates for name, info in CELL_TABLE.items()}
HEADS = ("none", "step", "last_step", "last_hidden")


def make_rnn(cell: str, **kwargs: Any) -> nn.RNNBase:
    """The torch module of a cell kind (kwargs as nn.RNN/GRU/LSTM take them)."""
    info = CELL_TABLE[cell]
    if info.nonlinearity is not None:
        kwargs["nonlinearity"] = info.nonlinearity
    return info.module(**kwargs)


def cell_of(rnn: nn.Module) -> str | None:
    """seqfuse's name for a torch recurrent module's cell, or None if it has none."""
    for name, info in CELL_TABLE.items():
        if isinstance(rnn, info.module) and getattr(rnn, "nonlinearity", None) == info.nonlinearity:
            return name
    return None


# Size bounds of a config, the native engine's own (csrc/core/config.cpp): a config read
# from a file is checked against them before any tensor is allocated.
LIMITS = {
    "hidden_size": (1, 1 << 14),
    "num_layers": (1, 64),
    "input_size": (1, 1 << 20),
    "vocab_size": (0, 1 << 24),
    "embed_dim": (1, 1 << 16),
    "output_size": (1, 1 << 20),
    "in_features": (1, 1 << 20),
    "out_features": (1, 1 << 20),
}
MAX_TENSOR_NUMEL = 1 << 31


def _check_field(obj: Any, name: str, typ: type | tuple[type, ...]) -> None:
    v = getattr(obj, name)
    # bool is an int subclass: True is not a size, and 1 is not a flag
    if isinstance(v, bool) != (typ is bool) or not isinstance(v, typ):
        want = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise ValueError(f"{name} must be {want}, got {type(v).__name__} {v!r}"[:200])


def _check_size(obj: Any, name: str, used: bool = True) -> None:
    _check_field(obj, name, int)
    lo, hi = LIMITS[name]
    v = getattr(obj, name)
    if used and not lo <= v <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {v}")


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
        """Check types and sizes (a config may come from a file): ValueError naming the field."""
        for name in ("cell", "head", "kind"):
            _check_field(self, name, str)
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}; expected one of {', '.join(CELLS)}")
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}; expected one of {', '.join(HEADS)}")
        for name in ("bidirectional", "bias"):
            _check_field(self, name, bool)
        _check_field(self, "dropout", (float, int))
        if not 0 <= self.dropout < 1:  # also rejects nan
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("hidden_size", "num_layers", "vocab_size"):
            _check_size(self, name)
        if self.vocab_size > 0 and self.embed_dim < 1:
            raise ValueError("embed_dim must be >= 1 when vocab_size > 0")
        if self.vocab_size == 0 and self.input_size < 1:
            raise ValueError("input_size must be >= 1 for feature inputs")
        if self.head != "none" and self.output_size < 1:
            raise ValueError("output_size must be >= 1 when a head is used")
        _check_size(self, "embed_dim", used=self.vocab_size > 0)
        _check_size(self, "input_size", used=self.vocab_size == 0)
        _check_size(self, "output_size", used=self.head != "none")
        _check_numel(state_shapes(self))

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
        self.rnn: nn.RNNBase = make_rnn(c.cell, **rnn_kwargs)
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

    def __post_init__(self) -> None:
        _check_field(self, "kind", str)
        _check_size(self, "in_features")
        _check_size(self, "out_features")

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


def parse_config(config: dict[str, Any]) -> SeqConfig | LinearConfig:
    """The checked config object of a config dict; ValueError (naming why) if it is bad.

    Types and size bounds are checked here, before any tensor is allocated.
    """
    if not isinstance(config, dict):
        raise ValueError(f"model config must be a dict, got {type(config).__name__}")
    cfg = dict(config)
    kind = cfg.get("kind", "seq")
    try:
        if kind == "seq":
            return SeqConfig(**cfg)
        if kind == "linear":
            return LinearConfig(**cfg)
    except TypeError as e:  # unknown or missing keys
        raise ValueError(f"invalid model config: {e}") from None
    raise ValueError(f"unknown model kind {str(kind)[:50]!r}")


def build_model(config: dict[str, Any]) -> nn.Module:
    """Rebuild a model from the config dict a checkpoint carries."""
    c = parse_config(config)
    return SeqModel(c) if isinstance(c, SeqConfig) else LinearRegression(c)


def state_shapes(config: SeqConfig | LinearConfig | dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The ``state_dict`` tensor shapes of the model a config builds, without building it."""
    c = parse_config(config) if isinstance(config, dict) else config
    if isinstance(c, LinearConfig):
        return {
            "linear.weight": (c.out_features, c.in_features),
            "linear.bias": (c.out_features,),
        }
    shapes: dict[str, tuple[int, ...]] = {}
    if c.vocab_size > 0:
        shapes["embedding.weight"] = (c.vocab_size, c.embed_dim)
    gh, h = GATES[c.cell] * c.hidden_size, c.hidden_size
    for layer in range(c.num_layers):
        inp = c.rnn_input_size if layer == 0 else c.num_directions * h
        for sfx in ("", "_reverse")[: c.num_directions]:
            shapes[f"rnn.weight_ih_l{layer}{sfx}"] = (gh, inp)
            shapes[f"rnn.weight_hh_l{layer}{sfx}"] = (gh, h)
            if c.bias:
                shapes[f"rnn.bias_ih_l{layer}{sfx}"] = (gh,)
                shapes[f"rnn.bias_hh_l{layer}{sfx}"] = (gh,)
    if c.head != "none":
        shapes["head.weight"] = (c.output_size, c.num_directions * h)
        shapes["head.bias"] = (c.output_size,)
    return shapes


def _check_numel(shapes: dict[str, tuple[int, ...]]) -> None:
    for name, shape in shapes.items():
        if math.prod(shape) > MAX_TENSOR_NUMEL:
            raise ValueError(f"tensor {name} {list(shape)} would be too large")


def check_state_dict(config: SeqConfig | LinearConfig | dict[str, Any], state: Any) -> None:
    """Check that ``state`` (e.g. a checkpoint's model_state) is exactly the floating-point
    state_dict of ``config``'s model, without building it: ValueError naming the first
    mismatch. Run before :func:`build_model` so a config that disagrees with its tensors (e.g.
    asks for a huge model) is rejected before anything is allocated.
    """
    want = state_shapes(config)
    if not isinstance(state, dict):
        raise ValueError(f"model state must be a dict, got {type(state).__name__}")
    missing = [k for k in want if k not in state]
    unexpected = [str(k)[:60] for k in state if k not in want]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
        if unexpected:
            more = " ..." if len(unexpected) > 4 else ""
            parts.append(f"unexpected {', '.join(unexpected[:4])}{more}")
        raise ValueError(f"model state does not match the config: {'; '.join(parts)}")
    for k, shape in want.items():
        t = state[k]
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            what = f"a {t.dtype} tensor" if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"model state {k} must be a floating-point tensor, got {what}")
        if tuple(t.shape) != shape:
            raise ValueError(
                f"model state {k} has shape {list(t.shape)}, the config needs {list(shape)}"
            )
        if t.untyped_storage().nbytes() < t.numel() * t.element_size():
            raise ValueError(f"model state {k} is not backed by its data (a broadcast view)")


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
