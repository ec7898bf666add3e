"""seqfuse.compiler: what ``seqfuse.compile()`` runs: torch.compile for recurrent models,
with the RNN as one fused op.

Plain ``torch.compile`` does not compile nn.RNN/GRU/LSTM: with torch's default
``torch._dynamo.config.allow_rnn=False`` Dynamo stops at the RNN call ("Attempted to wrap
RNN, GRU, or LSTM"), runs it eagerly, and ``fullgraph=True`` raises. seqfuse registers its
fused native sequence loop as the custom op ``seqfuse::seq_forward``
(``torch.library.custom_op`` with a ``register_fake`` shape function), so the compiled
graph holds one opaque call and no graph break.

Modes of :func:`compile`:

- ``"native"`` (default): the op runs seqfuse.native's fused loop (CPU).
- ``"reference"``: the same graph, but the op runs the eager PyTorch module; it checks the
  torch integration (schema, fake shapes, dynamic shapes) without the native engine.
- ``"torch"``: plain ``torch.compile(model)``, for comparison: graph-breaks on the RNN.

The compiled model is for inference: the weights are captured when :func:`compile` is
called (later training does not reach it) and the op has no autograd formula.
Checked by tests/test_compile.py: ``torch._dynamo.explain`` reports 0 graph breaks, and
outputs match eager within 1e-5 on several shapes, with states and lengths.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor, nn

from seqfuse.errors import SeqfuseError
from seqfuse.models.spec import ModelSpec

MODES = ("native", "reference", "torch")
OP_NAME = "seqfuse::seq_forward"


@dataclass
class _Entry:
    run: Callable[..., Any]  # (x, hx, lengths) -> the model's forward result
    spec: Any  # seqfuse.export.wrappers.ModelSpec


_TABLE: Any = None  # handle -> _Entry, a seqfuse.native.handles.HandleTable


def _registry() -> Any:
    """The handle table, made on first use: this module imports no compiled code (its
    reference mode runs without seqfuse.native)."""
    global _TABLE
    if _TABLE is None:
        from seqfuse.native.handles import HandleTable

        _TABLE = HandleTable(f"{OP_NAME}: model")
    return _TABLE


@torch.library.custom_op(OP_NAME, mutates_args=())
def seq_forward(
    x: Tensor,
    h0: Optional[Tensor],  # noqa: UP045 (torch.library infers the schema from these)
    c0: Optional[Tensor],  # noqa: UP045
    lengths: Optional[Tensor],  # noqa: UP045
    handle: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Whole-model forward of a registered model: ``(y, h_n, c_n)`` (c_n empty unless LSTM).

    ``handle`` names the model in this process's registry (a compile-time constant).
    """
    entry = _registry().get(handle)
    hx = None if h0 is None else ((h0, c0) if entry.spec.is_lstm else h0)
    with torch.no_grad():
        y, h_n = entry.run(x, hx, lengths)
    if entry.spec.is_lstm:
        h_n, c_n = h_n
    else:
        c_n = x.new_empty((0,), dtype=torch.float32)
    # custom ops may not return views of their inputs; the engines return fresh tensors
    return y.contiguous(), h_n.contiguous(), c_n.contiguous()


@seq_forward.register_fake
def _seq_forward_fake(x, h0, c0, lengths, handle):
    entry = _registry().get(handle)
    c = entry.spec.config
    B, T = x.shape[0], x.shape[1]
    H = c["hidden_size"]
    S = entry.spec.state_layers
    feat = H * (2 if c["bidirectional"] else 1)
    head = c["head"]
    if head == "none":
        y_shape: tuple[Any, ...] = (B, T, feat)
    elif head == "step":
        y_shape = (B, T, c["output_size"])
    else:
        y_shape = (B, c["output_size"])
    f32 = torch.float32
    y = x.new_empty(y_shape, dtype=f32)
    h_n = x.new_empty((S, B, H), dtype=f32)
    c_n = x.new_empty((S, B, H) if entry.spec.is_lstm else (0,), dtype=f32)
    return y, h_n, c_n


class FusedSeq(nn.Module):
    """``forward(x, hx=None, lengths=None) -> (y, h_n)`` through ``seqfuse::seq_forward``.

    Same arguments and results as the SeqModel it wraps; the handle is released when this
    module is garbage-collected.
    """

    def __init__(self, model: nn.Module, mode: str = "native") -> None:
        super().__init__()
        try:
            spec = ModelSpec.of(model)
        except ValueError as e:
            raise SeqfuseError(str(e)) from None
        if not spec.is_seq:
            raise SeqfuseError("FusedSeq wraps recurrent SeqModels; LinearRegression has no RNN")
        model = model.eval()
        if mode == "native":
            try:
                import seqfuse.native as native
            except ImportError as e:
                raise SeqfuseError(
                    f"seqfuse.compile(mode='native') needs seqfuse.native: {e}"
                ) from None
            nm = native.from_module(model)
            run: Callable[..., Any] = nm
        elif mode == "reference":
            run = model
        else:
            raise SeqfuseError(f"FusedSeq mode must be native or reference, got {mode!r}")
        self.handle = _registry().add(self, _Entry(run=run, spec=spec))
        self.is_lstm = spec.is_lstm
        self.mode = mode

    def forward(self, x: Tensor, hx: Any = None, lengths: Optional[Tensor] = None):  # noqa: UP045
        if hx is None:
            h0 = c0 = None
        elif self.is_lstm:
            h0, c0 = hx
        else:
            h0, c0 = hx, None
        y, h_n, c_n = torch.ops.seqfuse.seq_forward(x, h0, c0, lengths, self.handle)
        return (y, (h_n, c_n)) if self.is_lstm else (y, h_n)


def compile(model: nn.Module, mode: str = "native", **torch_compile_kwargs: Any) -> Any:
    """Compile a seqfuse model for inference (see the module doc for the three modes).

    ``torch_compile_kwargs`` go to ``torch.compile`` (e.g. ``dynamic=True``,
    ``mode="max-autotune"`` through ``torch_mode=``). In the fused modes ``fullgraph=True``
    is the default: a graph break is an error, not a silent slowdown. A LinearRegression
    has no RNN; it is compiled with plain torch.compile in every mode.
    """
    if mode not in MODES:
        raise SeqfuseError(f"unknown compile mode {mode!r}; choose from {', '.join(MODES)}")
    if not isinstance(model, nn.Module):
        raise SeqfuseError(f"seqfuse.compile expects an nn.Module, got {type(model).__name__}")
    torch_mode = torch_compile_kwargs.pop("torch_mode", None)
    if torch_mode is not None:
        torch_compile_kwargs["mode"] = torch_mode
    from seqfuse.models import LinearRegression

    if mode == "torch" or isinstance(model, LinearRegression):
        return torch.compile(model, **torch_compile_kwargs)
    torch_compile_kwargs.setdefault("fullgraph", True)
    return torch.compile(FusedSeq(model, mode), **torch_compile_kwargs)


__all__ = ["MODES", "OP_NAME", "FusedSeq", "compile", "seq_forward"]
