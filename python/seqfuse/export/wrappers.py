"""Model facts and the thin nn.Module wrappers each export format needs.

- :class:`ModelSpec` (defined in seqfuse.models.spec, re-exported here) says what a
  seqfuse model takes and returns.
- ``_ScriptSeqRNN`` / ``_ScriptSeqLSTM`` re-state :meth:`SeqModel.forward` in the subset of
  Python TorchScript compiles (the model keeps a dataclass config, which TorchScript cannot
  hold); they share the model's own submodules, so no weights are copied.
- :class:`FlatIO` gives ONNX / torch.export a flat signature ``(x, h0[, c0]) -> (y, h_n[,
  c_n])``.

Checked by tests/test_export.py: every wrapper is compared against the eager model.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqfuse.models import LinearRegression, SeqModel
from seqfuse.models.spec import ModelSpec, flat_outputs

__all__ = [
    "FlatIO",
    "FlatIOLengthsLSTM",
    "FlatIOLengthsRNN",
    "FlatIOStates",
    "ModelSpec",
    "flat_outputs",
    "scriptable",
]


class _ScriptSeqBase(nn.Module):
    """Shared parts of the TorchScript re-statements of SeqModel.forward."""

    def __init__(self, model: SeqModel) -> None:
        super().__init__()
        c = model.config
        self.has_embedding = model.embedding is not None
        self.embedding = model.embedding if model.embedding is not None else nn.Identity()
        self.rnn = model.rnn
        self.head = model.head if model.head is not None else nn.Identity()
        self.head_kind: str = c.head
        self.bidirectional: bool = c.bidirectional

    def _head(self, out: Tensor, h_top: Tensor, lengths: Optional[Tensor]) -> Tensor:  # noqa: UP045 (TorchScript)
        if self.head_kind == "none":
            return out
        if self.head_kind == "step":
            return self.head(out)
        if self.head_kind == "last_step":
            if lengths is None:
                last = out[:, -1]
            else:
                idx = (lengths.to(out.device, torch.int64) - 1).clamp(min=0)
                last = out[torch.arange(out.shape[0], device=out.device), idx]
            return self.head(last)
        top = torch.cat([h_top[-2], h_top[-1]], dim=-1) if self.bidirectional else h_top[-1]
        return self.head(top)


class _ScriptSeqRNN(_ScriptSeqBase):
    """SeqModel.forward for rnn_tanh / rnn_relu / gru, in scriptable form."""

    def forward(
        self,
        x: Tensor,
        hx: Optional[Tensor] = None,  # noqa: UP045 (TorchScript)
        lengths: Optional[Tensor] = None,  # noqa: UP045
    ) -> tuple[Tensor, Tensor]:
        inp = self.embedding(x)
        T = inp.shape[1]
        if lengths is not None:
            packed = pack_padded_sequence(
                inp, lengths.to(torch.int64).cpu(), batch_first=True, enforce_sorted=False
            )
            out_p, h_n = self.rnn(packed, hx)
            out, _ = pad_packed_sequence(out_p, batch_first=True, total_length=T)
        else:
            out, h_n = self.rnn(inp, hx)
        return self._head(out, h_n, lengths), h_n


class _ScriptSeqLSTM(_ScriptSeqBase):
    """SeqModel.forward for lstm, in scriptable form (``hx`` is ``(h0, c0)``)."""

    def forward(
        self,
        x: Tensor,
        hx: Optional[tuple[Tensor, Tensor]] = None,  # noqa: UP045 (TorchScript)
        lengths: Optional[Tensor] = None,  # noqa: UP045
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        inp = self.embedding(x)
        T = inp.shape[1]
        if lengths is not None:
            packed = pack_padded_sequence(
                inp, lengths.to(torch.int64).cpu(), batch_first=True, enforce_sorted=False
            )
            out_p, h_n = self.rnn(packed, hx)
            out, _ = pad_packed_sequence(out_p, batch_first=True, total_length=T)
        else:
            out, h_n = self.rnn(inp, hx)
        return self._head(out, h_n[0], lengths), h_n


def scriptable(model: nn.Module) -> nn.Module:
    """A module with the same forward semantics that torch.jit.script can compile."""
    if isinstance(model, SeqModel):
        cls = _ScriptSeqLSTM if model.config.cell == "lstm" else _ScriptSeqRNN
        return cls(model).eval()
    if isinstance(model, LinearRegression):
        return model.linear  # forward(x [N, in]) -> [N, out], already scriptable
    return model


class FlatIO(nn.Module):
    """``forward(x, *states) -> flat outputs``: the signature ONNX and torch.export get."""

    def __init__(self, model: nn.Module, spec: ModelSpec) -> None:
        super().__init__()
        self.model = model
        self.spec = spec

    def forward(self, x: Tensor, *states: Tensor) -> tuple[Tensor, ...]:
        if not self.spec.is_seq:
            return (self.model(x),)
        return flat_outputs(self.model(x, self.spec.hx(list(states))))


class FlatIOStates(FlatIO):
    """FlatIO with named state arguments, so exporters name the graph inputs h0 / c0."""

    def forward(self, x: Tensor, h0: Tensor, c0: Optional[Tensor] = None):  # noqa: UP045
        states = [h0] if c0 is None else [h0, c0]
        return super().forward(x, *states)


class FlatIOLengthsRNN(FlatIO):
    """``(x, h0, lengths)`` for rnn/gru models: the ONNX signature with variable lengths."""

    def forward(self, x: Tensor, h0: Tensor, lengths: Tensor):
        return flat_outputs(self.model(x, h0, lengths))


class FlatIOLengthsLSTM(FlatIO):
    """``(x, h0, c0, lengths)`` for lstm models: the ONNX signature with variable lengths."""

    def forward(self, x: Tensor, h0: Tensor, c0: Tensor, lengths: Tensor):
        return flat_outputs(self.model(x, (h0, c0), lengths))
