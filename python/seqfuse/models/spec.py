"""ModelSpec: what a seqfuse model takes and returns (states, lengths, token ids, output
names), read from its config, so exporters, verifiers and the compiler build inputs and name
outputs without guessing. A models-layer fact: the export package and seqfuse.compile both
read it, and neither depends on the other for it.

Checked by tests/test_export.py (every format's inputs and outputs) and tests/test_compile.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from seqfuse.models.seq import LinearRegression, SeqModel, config_of, example_input

__all__ = ["ModelSpec", "flat_outputs"]


@dataclass(frozen=True)
class ModelSpec:
    """What a model takes and returns, from its config."""

    kind: str  # "seq" or "linear"
    config: dict[str, Any]

    @classmethod
    def of(cls, model: nn.Module) -> ModelSpec:
        if not isinstance(model, (SeqModel, LinearRegression)):
            raise ValueError(
                f"seqfuse.export exports seqfuse models (SeqModel, LinearRegression), "
                f"got {type(model).__name__}"
            )
        cfg = config_of(model)
        return cls(kind=cfg.get("kind", "seq"), config=cfg)

    @property
    def is_seq(self) -> bool:
        return self.kind == "seq"

    @property
    def is_lstm(self) -> bool:
        return self.is_seq and self.config["cell"] == "lstm"

    @property
    def tokens(self) -> bool:
        return self.is_seq and self.config.get("vocab_size", 0) > 0

    @property
    def state_layers(self) -> int:
        """First dim of h0/c0: num_layers * num_directions."""
        return self.config["num_layers"] * (2 if self.config["bidirectional"] else 1)

    @property
    def state_names(self) -> list[str]:
        if not self.is_seq:
            return []
        return ["h0", "c0"] if self.is_lstm else ["h0"]

    @property
    def output_names(self) -> list[str]:
        if not self.is_seq:
            return ["y"]
        return ["y", "h_n", "c_n"] if self.is_lstm else ["y", "h_n"]

    def zero_states(self, batch: int) -> list[Tensor]:
        if not self.is_seq:
            return []
        shape = (self.state_layers, batch, self.config["hidden_size"])
        return [torch.zeros(shape) for _ in self.state_names]

    def random_states(self, batch: int, seed: int) -> list[Tensor]:
        if not self.is_seq:
            return []
        g = torch.Generator().manual_seed(seed)
        shape = (self.state_layers, batch, self.config["hidden_size"])
        return [0.5 * torch.randn(shape, generator=g) for _ in self.state_names]

    def hx(self, states: list[Tensor] | None) -> Any:
        """States as the model's ``hx`` argument (tuple for LSTM, tensor otherwise)."""
        if not states:
            return None
        return (states[0], states[1]) if self.is_lstm else states[0]

    def example(self, batch: int, seq_len: int, seed: int = 0) -> Tensor:
        return example_input(self.config, batch, seq_len, seed)


def flat_outputs(out: Any) -> tuple[Tensor, ...]:
    """``(y, h_n)`` / ``(y, (h_n, c_n))`` / ``y`` -> a flat tuple of tensors."""
    if isinstance(out, Tensor):
        return (out,)
    flat: list[Tensor] = []
    for item in out:
        flat.extend(flat_outputs(item))
    return tuple(flat)
