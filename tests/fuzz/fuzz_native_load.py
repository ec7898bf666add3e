"""atheris harness: ``seqfuse.native.load`` on arbitrary bytes, then a call (with lengths,
2 threads) and a stream step on whatever loads. A stranger's file may only ever raise
seqfuse's own errors (WeightFileError, InvalidArgumentError, NativeTypeError: all
SeqfuseError); any other exception, or a crash, is a finding.

Run by .ci/fuzz for a bounded time, seeded with tests/fuzz/make_seeds.py's files:
    python tests/fuzz/fuzz_native_load.py -max_total_time=60 CORPUS_DIR
Longer runs: raise -max_total_time (or drop it to run until a finding).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

import atheris
import numpy as np

# Only seqfuse's own modules get coverage instrumentation: instrumenting NumPy's too took
# over a minute at every start and steers the fuzzer by code that is not ours.
with atheris.instrument_imports(include=["seqfuse"]):
    import seqfuse.native as sn
    from seqfuse import SeqfuseError

_DIR = tempfile.mkdtemp(prefix="seqfuse-atheris-")
_PATH = os.path.join(_DIR, "input.safetensors")


def _exercise(nm: sn.NativeModel) -> None:
    c = nm.config
    if nm.module_info["kind"] == "linear":
        nm(np.linspace(-1, 1, 2 * c["input_size"], dtype=np.float32).reshape(2, -1))
        return
    if c["vocab_size"] > 0:
        x = (np.arange(6, dtype=np.int64) % c["vocab_size"]).reshape(2, 3)
    else:
        x = np.linspace(-2, 2, 6 * c["input_size"], dtype=np.float32).reshape(2, 3, -1)
    if not nm._batch_first:
        x = np.ascontiguousarray(np.swapaxes(x, 0, 1))
    nm(x, lengths=np.array([3, 1], np.int64), threads=2)
    if not c["bidirectional"] and nm._batch_first:
        s = nm.stream(2)
        s(x[:, :1])
        s.state = s.state


def test_one_input(data: bytes) -> None:
    with open(_PATH, "wb") as f:
        f.write(data)
    try:
        nm = sn.load(_PATH)
    except SeqfuseError:
        return
    with contextlib.suppress(SeqfuseError):
        _exercise(nm)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
