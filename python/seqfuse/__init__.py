"""seqfuse: train, export and run recurrent sequence models (LSTM, GRU, RNN) fast.

Submodules: seqfuse.models, seqfuse.data, seqfuse.train, seqfuse.native, seqfuse.export,
seqfuse.bench. Checked by the pytest suite in tests/.
"""

from __future__ import annotations

__version__ = "0.1.0"


class SeqfuseError(Exception):
    """A user-facing error: bad input, a missing file, an unsupported option.

    The CLI prints its message on one line and exits non-zero, without a traceback.
    """


def build_info() -> dict:
    """Compiler, SIMD level and CUDA availability of the compiled core."""
    from seqfuse import _C

    return dict(_C.build_info())


__all__ = ["SeqfuseError", "__version__", "build_info"]
