"""seqfuse.accelerate / seqfuse.restore: run the nn.RNN, nn.GRU and nn.LSTM layers, and the
nn.RNNCell, nn.GRUCell and nn.LSTMCell, inside a user's own model on the native engine, with
one line and no change to the model's code.

Each recurrent submodule is swapped for an :class:`Accelerated` module that keeps the
original as its child and calls it whenever the engine would not give torch's exact result
(gradients needed, dropout in training, an input the engine does not serve, an option it
lacks), with a one-time warning per reason. The module is named ``accel`` and not
``accelerate`` because importing a submodule sets it as an attribute of the package, which
would shadow the function ``seqfuse.accelerate``.

Checked by tests/test_accelerate.py (models built in the test and seqfuse.models.architectures,
compared with eager at 1e-5; torch.compile with fullgraph=True)
and tests/test_layering.py (it imports only seqfuse.native and seqfuse.errors).
"""

from __future__ import annotations

import copy
import warnings
import weakref
from typing import Any, Optional

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from seqfuse import native
from seqfuse.errors import SeqfuseError
from seqfuse.native.contract import int_in
from seqfuse.native.handles import HandleTable

# Exact types only: a subclass may override forward, and the engine would then compute
# something other than what the user's module computes.
_SEQUENCE_TYPES = (nn.RNN, nn.GRU, nn.LSTM)
_CELL_TYPES = (nn.RNNCell, nn.GRUCell, nn.LSTMCell)
_AS_SEQUENCE = {nn.RNNCell: nn.RNN, nn.GRUCell: nn.GRU, nn.LSTMCell: nn.LSTM}
_grad_enabled = torch.is_grad_enabled
_compiling = torch.compiler.is_compiling
_ENGINE_ERRORS = (native.InvalidArgumentError, native.NativeTypeError, SeqfuseError)


class AccelerateFallbackWarning(UserWarning):
    """An accelerated module ran its torch module for a call (the reason is in the message)."""


class Accelerated(nn.Module):
    """A native-backed stand-in for an nn.RNN / nn.GRU / nn.LSTM or an nn.RNNCell /
    nn.GRUCell / nn.LSTMCell.

    Same forward as the wrapped module. Sequence modules: ``(x, hx=None)`` -> ``(output,
    h_n)`` or ``(output, (h_n, c_n))``, batch-first or not, unbatched 2-D input,
    ``PackedSequence`` in and out. Cells: ``(input, hx=None)`` -> ``h`` or ``(h, c)``, input
    ``[B, D]`` or unbatched ``[D]``. The original module is the child ``module``;
    ``state_dict`` keys are the original module's own (no ``module.`` in them), so
    checkpoints load either way.

    The weights are copied into the engine at construction. After changing them in place,
    call :meth:`refresh` (``load_state_dict`` refreshes by itself).
    """

    def __init__(self, module: nn.Module, threads: int = 1) -> None:
        super().__init__()
        self.module = module
        self.threads = threads
        self.is_cell = type(module) in _CELL_TYPES
        self._lstm = isinstance(module, (nn.LSTM, nn.LSTMCell))
        # Facts a call reads, bound here: under torch.compile, touching an nn.LSTM/GRU/RNN
        # attribute makes Dynamo try to wrap the module, which it refuses (a graph break).
        self._dropout = not self.is_cell and module.dropout > 0 and module.num_layers > 1
        self._batch_first = not self.is_cell and module.batch_first
        self.train(module.training)
        self._native: Any = None
        self._step: Any = None  # cells: NativeModel.cell_step's function
        self._unsupported: str | None = None  # why the engine cannot run this module at all
        self._warned: set[str] = set()
        self._register()
        self.register_load_state_dict_post_hook(_refresh_after_load)
        self.refresh()

    def _register(self) -> None:
        """A handle for the custom ops (seqfuse.native.handles), released when this module
        is garbage-collected."""
        self._handle = _REGISTRY.add(self, weakref.ref(self))

    # -- weights
    def refresh(self) -> Accelerated:
        """Copy the module's current weights into the engine again (after an in-place
        change, an optimizer step, ...). Returns self."""
        try:
            self._native = native.from_module(_engine_module(self.module), threads=self.threads)
            self._step = self._native.cell_step() if self.is_cell else None
            self._unsupported = None
        except native.InvalidArgumentError as e:
            self._native = self._step = None
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
        step = self._step
        if step is not None and not _grad_enabled() and not _compiling():
            # A Cell's hot path (a decoder or streaming loop at batch 1): one engine call;
            # the step function checks types and shapes and returns None for anything else.
            if hx is None:
                r = step(x, None, None)
            elif type(hx) is tuple:
                r = step(x, hx[0], hx[1]) if len(hx) == 2 else None
            else:
                r = step(x, hx, None)
            if r is not None:
                return r if self._lstm else r[0]
        reason = self._fallback_reason(x, hx)
        if reason is not None:
            self._warn_once(reason, reason, stacklevel=5)  # the caller of model(x)
            return self.module(x, hx)
        compiling = _compiling()
        if self.is_cell:
            if compiling:
                return self._cell_op(x, hx)
            r = self._cell(x, hx)
            if r is not None:
                return r
            # not a shape the engine call serves: torch raises its own error or serves it
            self._warn_once("refused", "an input the native cell call does not take", 5)
            return self.module(x, hx)
        try:
            if isinstance(x, PackedSequence):
                return self._packed(x, hx, compiling)
            if compiling:
                return self._seq_op(x, hx, None)
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
        if torch.is_grad_enabled() and (
            any(t.requires_grad for t in (data, *states))
            or any(p.requires_grad for p in self._params)
        ):
            return (
                "gradients are needed (run inference under torch.no_grad() or "
                "torch.inference_mode(), or call model.requires_grad_(False))"
            )
        if self.training and self._dropout:
            return "training mode with dropout > 0 (call model.eval() for inference)"
        if data.numel() == 0:
            return "an empty input"
        return None

    def _cell(self, x: Tensor, hx: Any) -> Any:
        """The engine's one-step call; None for an input it does not take."""
        lstm = self._lstm
        if hx is None:
            h0 = c0 = None
        elif lstm:
            if not isinstance(hx, tuple) or len(hx) != 2:
                return None
            h0, c0 = hx
        else:
            h0, c0 = hx, None
        unbatched = x.dim() == 1  # [D], state [H]
        if unbatched:
            x = x.unsqueeze(0)
            h0 = None if h0 is None else h0.unsqueeze(0)
            c0 = None if c0 is None else c0.unsqueeze(0)
        h0 = None if h0 is None else h0.contiguous()
        c0 = None if c0 is None else c0.contiguous()
        r = self._step(x.contiguous(), h0, c0)
        if r is None:
            return None
        if unbatched:
            r = (r[0].squeeze(0), None if r[1] is None else r[1].squeeze(0))
        return r if lstm else r[0]

    def _packed(self, x: PackedSequence, hx: Any, compiling: bool = False) -> Any:
        """PackedSequence in and out, equal to torch's: unpack to padded (in the caller's
        batch order, as hx and h_n are), run with lengths, and pack again in the input's own
        sorted order, so ties between equal lengths are ordered as torch orders them."""
        bf = self._batch_first
        padded, lengths = pad_packed_sequence(x, batch_first=bf)
        run = self._seq_op if compiling else self._native
        out, state = run(padded, hx, lengths)
        if x.sorted_indices is not None:
            idx = x.sorted_indices.to(out.device)
            out = out.index_select(0 if bf else 1, idx)
            lengths = lengths.index_select(0, x.sorted_indices.cpu())
        y = pack_padded_sequence(out, lengths, batch_first=bf, enforce_sorted=True)
        return PackedSequence(y.data, y.batch_sizes, x.sorted_indices, x.unsorted_indices), state

    # -- the custom-op calls (torch.compile)
    def _seq_op(self, x: Tensor, hx: Any, lengths: Tensor | None) -> Any:
        lstm = self._lstm
        h0, c0 = (None, None) if hx is None else (hx if lstm else (hx, None))
        y, h_n, c_n = torch.ops.seqfuse.accel_seq(x, h0, c0, lengths, self._handle)
        return (y, (h_n, c_n)) if lstm else (y, h_n)

    def _cell_op(self, x: Tensor, hx: Any) -> Any:
        lstm = self._lstm
        h0, c0 = (None, None) if hx is None else (hx if lstm else (hx, None))
        h, c = torch.ops.seqfuse.accel_cell(x, h0, c0, self._handle)
        return (h, c) if lstm else h

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
        state["_native"] = state["_step"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._register()  # a copy is another module: its own handle
        if self._unsupported is None:
            self._native = native.from_module(_engine_module(self.module), threads=self.threads)
            self._step = self._native.cell_step() if self.is_cell else None

    # -- repr
    def _get_name(self) -> str:
        return "Accelerated" + type(self.module).__name__

    def extra_repr(self) -> str:
        if self._native is None:
            return f"torch fallback: {self._unsupported}"
        return f"seqfuse.native, kernels={self.isa}, threads={self.threads}"


def _engine_module(m: nn.Module) -> nn.Module:
    """What the engine converts: a sequence module as is; a Cell as the one-layer,
    batch-first sequence module with the same weights (one step of it is the Cell)."""
    if type(m) not in _CELL_TYPES:
        return m
    kw: dict[str, Any] = {"bias": m.bias, "batch_first": True}
    if isinstance(m, nn.RNNCell):
        kw["nonlinearity"] = m.nonlinearity
    seq = _AS_SEQUENCE[type(m)](m.input_size, m.hidden_size, **kw)
    seq.load_state_dict({k + "_l0": v.detach() for k, v in m.state_dict().items()})
    return seq


# -- the custom ops: what torch.compile sees of an accelerated module ---------------------
_REGISTRY = HandleTable("seqfuse accelerated module")  # handle -> weakref to the module


def _module_of(handle: int) -> Accelerated:
    return _REGISTRY.get(handle)


def _fresh(t: Tensor) -> Tensor:
    # a custom op may not return its inputs or views of them
    return t.clone() if t._base is not None else t.contiguous()


@torch.library.custom_op("seqfuse::accel_seq", mutates_args=())
def accel_seq(
    x: Tensor,
    h0: Optional[Tensor],  # noqa: UP045 (torch.library infers the schema from these)
    c0: Optional[Tensor],  # noqa: UP045
    lengths: Optional[Tensor],  # noqa: UP045
    handle: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """An accelerated nn.RNN/GRU/LSTM's call: ``(y, h_n, c_n)`` (c_n empty unless LSTM)."""
    m = _module_of(handle)
    lstm = m._lstm
    hx = None if h0 is None else ((h0, c0) if lstm else h0)
    with torch.no_grad():
        y, state = m._native(x, hx, lengths)
    h_n, c_n = state if lstm else (state, x.new_empty((0,)))
    return _fresh(y), _fresh(h_n), _fresh(c_n)


@accel_seq.register_fake
def _accel_seq_fake(x, h0, c0, lengths, handle):
    m = _module_of(handle)
    r = m.module
    dirs = 2 if r.bidirectional else 1
    # h is proj_size wide for a projected LSTM; c stays hidden_size wide
    S, H, Hs = r.num_layers * dirs, r.hidden_size, getattr(r, "proj_size", 0) or r.hidden_size
    if x.dim() == 2:  # unbatched [T, D]
        y_shape: tuple[Any, ...] = (x.shape[0], dirs * Hs)
        lead: tuple[Any, ...] = (S,)
    else:
        B, T = (x.shape[0], x.shape[1]) if r.batch_first else (x.shape[1], x.shape[0])
        y_shape = (B, T, dirs * Hs) if r.batch_first else (T, B, dirs * Hs)
        lead = (S, B)
    c_shape = (*lead, H) if isinstance(r, nn.LSTM) else (0,)
    return x.new_empty(y_shape), x.new_empty((*lead, Hs)), x.new_empty(c_shape)


@torch.library.custom_op("seqfuse::accel_cell", mutates_args=())
def accel_cell(
    x: Tensor,
    h0: Optional[Tensor],  # noqa: UP045
    c0: Optional[Tensor],  # noqa: UP045
    handle: int,
) -> tuple[Tensor, Tensor]:
    """An accelerated nn.RNNCell/GRUCell/LSTMCell's call: ``(h, c)`` (c empty unless LSTM)."""
    m = _module_of(handle)
    hx = None if h0 is None else ((h0, c0) if m._lstm else h0)
    with torch.no_grad():
        r = m._cell(x, hx)
        if r is None:  # an input the engine call does not take: torch's own result
            r = m.module(x, hx)
    h, c = r if m._lstm else (r, x.new_empty((0,)))
    return _fresh(h), _fresh(c)


@accel_cell.register_fake
def _accel_cell_fake(x, h0, c0, handle):
    m = _module_of(handle)
    shape = (*x.shape[:-1], m.module.hidden_size)
    c_shape = shape if isinstance(m.module, nn.LSTMCell) else (0,)
    return x.new_empty(shape), x.new_empty(c_shape)


def _refresh_after_load(module: Accelerated, incompatible_keys: Any) -> None:
    module.refresh()


def accelerate(model: nn.Module, *, threads: int = 1, inplace: bool = False) -> nn.Module:
    """Return ``model`` with every nn.RNN / nn.GRU / nn.LSTM and nn.RNNCell / nn.GRUCell /
    nn.LSTMCell in it (the model itself too, if it is one) replaced by an
    :class:`Accelerated` module on the native engine.

    A deep copy is changed unless ``inplace``. ``threads`` is each layer's engine thread
    count. A module whose options the engine lacks is wrapped too but always runs on torch,
    with a warning now. Subclasses of the six are left alone.
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
        if type(m) in _SEQUENCE_TYPES or type(m) in _CELL_TYPES:
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
