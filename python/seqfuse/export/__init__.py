"""seqfuse.export: verified TorchScript, ONNX, AOTInductor (.pt2) and native artifacts.

Every artifact is reloaded in the runtime that will run it and compared with eager PyTorch
on inputs of other batch sizes and sequence lengths than the export shape; the results go
into ``manifest.json``. See docs/EXPORT.md. Checked by tests/test_export*.py.

- :func:`to_torchscript`, :func:`to_onnx`, :func:`to_aoti`, :func:`to_native`: one format;
- :func:`export_checkpoint` / :func:`export_model`: several formats + verification + manifest.
"""

from seqfuse.export.formats import (
    TORCHSCRIPT_NOTE,
    FormatUnavailable,
    to_aoti,
    to_native,
    to_onnx,
    to_torchscript,
)
from seqfuse.export.manifest import (
    FILES,
    FORMATS,
    ExportError,
    export_checkpoint,
    export_model,
    format_table,
    parse_formats,
)

__all__ = [
    "FILES",
    "FORMATS",
    "TORCHSCRIPT_NOTE",
    "ExportError",
    "FormatUnavailable",
    "export_checkpoint",
    "export_model",
    "format_table",
    "parse_formats",
    "to_aoti",
    "to_native",
    "to_onnx",
    "to_torchscript",
]
