"""seqfuse: train, export and run recurrent sequence models (LSTM, GRU, RNN) fast.

Submodules: seqfuse.models, seqfuse.data, seqfuse.train, seqfuse.native, seqfuse.export,
seqfuse.bench; ``accelerate`` / ``restore`` (seqfuse.accel) put a user's own model's
recurrent layers on the native engine. Checked by the pytest suite in tests/.
"""

from __future__ import annotations

from seqfuse.errors import SeqfuseError
from seqfuse.version import __version__


def build_info() -> dict:
    """Compiler, SIMD level and CUDA availability of the compiled core."""
    from seqfuse import _C

    return dict(_C.build_info())


def compile(model, mode: str = "native", **torch_compile_kwargs):  # noqa: A001
    """torch.compile for recurrent models, with the whole RNN as one fused custom op.

    ``mode="native"`` (default) runs seqfuse's fused loop inside the compiled graph with no
    graph break; ``"reference"`` runs the eager module inside the same op; ``"torch"`` is
    plain ``torch.compile`` (which graph-breaks on nn.RNN/GRU/LSTM). See docs/EXPORT.md.
    """
    from seqfuse.compiler import compile as _compile

    return _compile(model, mode=mode, **torch_compile_kwargs)


def accelerate(model, *, threads: int = 1, inplace: bool = False):
    """Run every nn.RNN / nn.GRU / nn.LSTM inside ``model`` on the native engine (a deep
    copy unless ``inplace``); falls back to torch, with a one-time warning, where the engine
    would not give torch's result. See seqfuse.accel and README "Accelerate your own model".
    """
    from seqfuse.accel import accelerate as _accelerate

    return _accelerate(model, threads=threads, inplace=inplace)


def restore(model):
    """Give back the torch modules that :func:`accelerate` replaced (in place; returns it)."""
    from seqfuse.accel import restore as _restore

    return _restore(model)


__all__ = ["SeqfuseError", "__version__", "accelerate", "build_info", "compile", "restore"]
