"""Native weight files: a safetensors file with the engine config and the module
description in its metadata (docs/FORMAT.md). The C++ reader (csrc/core/safetensors.cpp)
validates the whole file; this module writes it atomically and reads the module description
that decides the Python call's output shapes.

Checked by tests/test_native_format.py (round trips, tampered and foreign files) and
tests/fuzz/fuzz_native_load.py.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

from seqfuse import _C
from seqfuse.native.contract import WeightFileError

FORMAT = "seqfuse-native"
VERSION = 2  # docs/FORMAT.md; the C++ reader takes 1 and 2


def save(model: Any, path: str | os.PathLike) -> Path:
    """Write ``model`` (a NativeModel) as a seqfuse safetensors weight file."""
    return write(path, model._core.config_json, model.weights(), model.module_info)


def write(
    path: str | os.PathLike, config_json: str, weights: dict[str, Any], module: dict[str, Any]
) -> Path:
    """Write a weight file from its parts: the engine config (as the C++ core validated and
    wrote it), the weights by file name and the module description."""
    from safetensors.numpy import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format": FORMAT,
        "version": str(VERSION),
        "config": config_json,
        "module": json.dumps(module),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_file(weights, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _read_module_info(path: Path) -> dict[str, Any]:
    # The C++ reader has validated the whole file already; only the metadata is read here.
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        text = header.get("__metadata__", {}).get("module")
        if text is None:  # written by another tool: a bare engine config
            return {"kind": "engine"}
        info = json.loads(text)
    except (ValueError, OSError, struct.error, RecursionError) as e:
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise WeightFileError(f"{path}: metadata 'module' is unreadable ({reason})") from None
    if not isinstance(info, dict) or info.get("kind") not in ("seq", "linear", "rnn", "engine"):
        raise WeightFileError(f"{path}: metadata 'module' has an unknown kind")
    return info


def read(path: str | os.PathLike, isa: str) -> tuple[Any, dict[str, Any]]:
    """(the loaded C++ model, its module description), both validated."""
    path = Path(path)
    if path.is_dir():
        raise WeightFileError(f"{path} is a directory, not a weight file")
    if not path.is_file():
        raise WeightFileError(f"weight file not found: {path}")
    core = _C.Model.load(str(path), isa)
    info = _read_module_info(path)
    cfg = json.loads(core.config_json)
    if info["kind"] == "engine":
        info = {"kind": "rnn" if cfg["head"] == "none" else "seq"}
    # The module description decides the output shapes Python allocates, so it must agree
    # with the engine config the C++ reader validated (a tampered kind must not mis-size them).
    layers, head = cfg["num_layers"], cfg["head"]
    fits = {
        "linear": layers == 0 and head == "step",
        "rnn": layers >= 1 and head == "none",
        "seq": layers >= 1,
    }[info["kind"]]
    if not fits:
        raise WeightFileError(
            f"{path}: metadata 'module' kind {info['kind']!r} does not match the engine config "
            f"(num_layers={layers}, head={head})"
        )
    return core, info
