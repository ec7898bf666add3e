"""seqfuse.accelerate / seqfuse.restore: run the nn.RNN, nn.GRU and nn.LSTM layers inside a
user's own model on the native engine, with one line and no change to the model's code.

Each recurrent submodule is swapped for an :class:`Accelerated` module that keeps the
original as its child and calls it whenever the engine would not give torch's exact result
(gradients needed, dropout in training, an input the engine does not serve, an option it
lacks), with a one-time warning per reason. The module is named ``accel`` and not
``accelerate`` because importing a submodule sets it as an attribute of the package, which
would shadow the function ``seqfuse.accelerate``.

Checked by tests/test_accelerate.py (models built in the test, compared with eager at 1e-5)
and tests/test_layering.py (it imports only seqfuse.native and seqfuse.errors).
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from seqfuse import native
from seqfuse.errors import SeqfuseError
from seqfuse.native.contract import int_in

# Exact types only: a subclass may override forward, and the engine would then compute
# something other than what the user's module computes.
_SEQUENCE_TYPES = (nn.RNN, nn.GRU, nn.LSTM)
_ENGINE_ERRORS = (native.InvalidArgumentError, native.NativeTypeError, SeqfuseError)


class AccelerateFallbackWarning(UserWarning):
    """An accelerated module ran its torch module for a call (the reason is in the message)."""


class Accelerated(nn.Module):
    """A native-backed stand-in for an nn.RNN / nn.GRU / nn.LSTM.

    Same forward as the wrapped module: ``(x, hx=None)`` -> ``(output, h_n)`` or
    ``(output, (h_n, c_n))``, batch-first or not, unbatched 2-D input, ``PackedSequence``
    in and out. The original module is the child ``module``; ``state_dict`` keys are the
    original module's own (no ``module.`` in them), so checkpoints load either way.

    The weights are copied into the engine at construction. After changing them in place,
    call :meth:`refresh` (``load_state_dict`` refreshes by itself).
    """

    def __init__(self, module: nn.Module, threads: int = 1) -> None:
        super().__init__()
        self.module = module
        self.threads = threads
        self._native: Any = None
        self._unsupported: str | None = None  # why the engine cannot run this module at all
        self._warned: set[str] = set()
        self.register_load_state_dict_post_hook(_refresh_after_load)
        self.refresh()

    # -- weights
    def refresh(self) -> Accelerated:
        """Copy the module's current weights into the engine again (after an in-place
        change, an optimizer step, ...). Returns self."""
        try:
            self._native = native.from_module(self.module, threads=self.threads)
            self._unsupported = None
        except native.InvalidArgumentError as e:
            self._native = None
            self._unsupported = f"unsupported option: {e}"
            self._warn_once(self._unsupported, self._unsupported)
        self._params = list(self.module.parameters())
        return self

    @property
    def isa(self) -> str | None:
        """The engine's kernel set, or None when every call runs the torch module."""
        return None if self._native is None else self._native.isa

    # -- forward
    def forward(self, x: Any, hx: Any = None) -> Any:
        reason = self._fallback_reason(x, hx)
        if reason is not None:
            self._warn_once(reason, reason, stacklevel=5)  # the caller of model(x)
            return self.module(x, hx)
        try:
            if isinstance(x, PackedSequence):
                return self._packed(x, hx)
            return self._native(x, hx)
        except _ENGINE_ERRORS as e:
            # The engine refused the call (e.g. a wrong feature size): torch then raises its
            # own error for it, or serves a case the engine does not.
            self._warn_once("refused", f"the native engine refused the call ({e})", 5)
            return self.module(x, hx)

    def _fallback_reason(self, x: Any, hx: Any) -> str | None:
        if self._native is None:
            return self._unsupported
        data = x.data if isinstance(x, PackedSequence) else x
        states = () if hx is None else (hx if isinstance(hx, tuple) else (hx,))
        for t in (data, *states):
            if type(t) is not torch.Tensor or t.dtype is not torch.float32 or not t.is_cpu:
                return "the input is not a CPU float32 tensor"
        if torch.compiler.is_compiling():
            return "inside torch.compile (use seqfuse.compile for a fused op)"
        if torch.is_grad_enabled() and (
            any(t.requires_grad for t in (data, *states))
            or any(p.requires_grad for p in self._params)
        ):
            return (
                "gradients are needed (run inference under torch.no_grad() or "
                "torch.inference_mode(), or call model.requires_grad_(False))"
            )
        m = self.module
        if m.training and m.dropout > 0 and m.num_layers > 1:
            return "training mode with dropout > 0 (call model.eval() for inference)"
        if data.numel() == 0:
            return "an empty input"
        return None

    def _packed(self, x: PackedSequence, hx: Any) -> Any:
        """PackedSequence in and out, equal to torch's: unpack to padded (in the caller's
        batch order, as hx and h_n are), run with lengths, and pack again in the input's own
        sorted order, so ties between equal lengths are ordered as torch orders them."""
        bf = self.module.batch_first
        padded, lengths = pad_packed_sequence(x, batch_first=bf)
        out, state = self._native(padded, hx, lengths)
        if x.sorted_indices is not None:
            idx = x.sorted_indices.to(out.device)
            out = out.index_select(0 if bf else 1, idx)
            lengths = lengths.index_select(0, x.sorted_indices.cpu())
        y = pack_padded_sequence(out, lengths, batch_first=bf, enforce_sorted=True)
        return PackedSequence(y.data, y.batch_sizes, x.sorted_indices, x.unsorted_indices), state

    def _warn_once(self, key: str, reason: str, stacklevel: int = 3) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        warnings.warn(
            f"seqfuse.accelerate: {type(self.module).__name__} runs on torch: {reason}",
            AccelerateFallbackWarning,
            stacklevel=stacklevel,
        )

    # -- state_dict with the original module's keys
    def state_dict(self, *args: Any, destination: Any = None, prefix: str = "", keep_vars=False):
        return self.module.state_dict(
            *args, destination=destination, prefix=prefix, keep_vars=keep_vars
        )

    def _load_from_state_dict(self, state_dict, prefix, *args: Any) -> None:
        # Keys come as the original module's (prefix + "weight_ih_l0"); the child loads them
        # from prefix + "module.", so move them there before torch descends into it.
        child = prefix + "module."
        for k in [k for k in state_dict if k.startswith(prefix) and not k.startswith(child)]:
            state_dict[child + k[len(prefix) :]] = state_dict.pop(k)
        super()._load_from_state_dict(state_dict, prefix, *args)

    # -- copies and pickles: the engine model is rebuilt from the copied weights
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_native"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if self._unsupported is None:
            self._native = native.from_module(self.module, threads=self.threads)

    # -- repr
    def _get_name(self) -> str:
        return "Accelerated" + type(self.module).__name__

    def extra_repr(self) -> str:
        if self._native is None:
            return f"torch fallback: {self._unsupported}"
        return f"seqfuse.native, kernels={self.isa}, threads={self.threads}"


def _refresh_after_load(module: Accelerated, incompatible_keys: Any) -> None:
    module.refresh()


def accelerate(model: nn.Module, *, threads: int = 1, inplace: bool = False) -> nn.Module:
    """Return ``model`` with every nn.RNN / nn.GRU / nn.LSTM in it (the model itself too, if
    it is one) replaced by an :class:`Accelerated` module on the native engine.

    A deep copy is changed unless ``inplace``. ``threads`` is each layer's engine thread
    count. A module whose options the engine lacks (LSTM proj_size, ...) is wrapped too but
    always runs on torch, with a warning now. Subclasses of the three are left alone.
    """
    if not isinstance(model, nn.Module):
        raise native.NativeTypeError(f"accelerate expects an nn.Module, got {type(model).__name__}")
    threads = int_in(threads, "threads", 1, native.MAX_THREADS)
    if not inplace:
        model = copy.deepcopy(model)
    done: dict[int, nn.Module] = {}  # a module used twice becomes one Accelerated

    def swap(m: nn.Module) -> nn.Module:
        if isinstance(m, Accelerated):
            return m
        if type(m) in _SEQUENCE_TYPES:
            if id(m) not in done:
                done[id(m)] = Accelerated(m, threads=threads)
            return done[id(m)]
        for name, child in list(m._modules.items()):
            if child is not None:
                m._modules[name] = swap(child)
        return m

    return swap(model)


def restore(model: nn.Module) -> nn.Module:
    """Put the torch modules back, in place, and return the model (the torch module itself
    when ``model`` is an :class:`Accelerated`). Their weights are the current ones."""
    if isinstance(model, Accelerated):
        return model.module
    for m in list(model.modules()):
        for name, child in list(m._modules.items()):
            if isinstance(child, Accelerated):
                m._modules[name] = child.module
    return model
