"""The native weight file (docs/FORMAT.md): round trip through the `safetensors` library and a
validating C++ reader that turns every truncated, tampered or foreign file into a clean
WeightFileError (a SeqfuseError), never a crash.
"""

from __future__ import annotations

import json
import random
import struct

import numpy as np
import pytest
import seqfuse.native as sn
import torch
from safetensors.numpy import save_file
from seqfuse import SeqfuseError
from seqfuse.models.presets import preset
from seqfuse.models.seq import build_model, example_input


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    torch.manual_seed(0)
    m = build_model(preset("names", hidden_size=6, embed_dim=4)).eval()
    path = tmp_path_factory.mktemp("w") / "names.safetensors"
    sn.from_module(m).save(path)
    return m, path


def split(path):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def join(header, body):
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + body


def test_file_maps_to_state_dict(good):
    m, path = good
    header, _ = split(path)
    meta = header["__metadata__"]
    assert meta["format"] == "seqfuse-native" and meta["version"] == "2"
    names = {k for k in header if k != "__metadata__"}
    assert names == set(m.state_dict())
    from safetensors.numpy import load_file

    for k, v in load_file(str(path)).items():
        np.testing.assert_array_equal(v, m.state_dict()[k].numpy())


def test_loaded_model_runs(good):
    m, path = good
    x = example_input(m.config.to_dict(), batch=2, seq_len=5)
    with torch.no_grad():
        want = m(x)[0].numpy()
    np.testing.assert_allclose(sn.load(path)(x)[0].numpy(), want, atol=1e-5, rtol=0)


def expect_bad(tmp_path, blob, match=None):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(blob)
    with pytest.raises(SeqfuseError, match=match):
        sn.load(p)


def test_truncated_everywhere(good, tmp_path):
    data = good[1].read_bytes()
    for cut in sorted({0, 1, 7, 8, 9, 20, len(data) // 2, len(data) - 4, len(data) - 1}):
        expect_bad(tmp_path, data[:cut])


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(SeqfuseError, match="not found"):
        sn.load(tmp_path / "nope.safetensors")
    expect_bad(tmp_path, b"\x00" * 64)
    expect_bad(tmp_path, bytes(random.Random(0).randrange(256) for _ in range(4096)))
    # a valid safetensors file without seqfuse metadata
    p = tmp_path / "plain.safetensors"
    save_file({"a": np.zeros(3, np.float32)}, str(p))
    with pytest.raises(SeqfuseError, match="metadata"):
        sn.load(p)


@pytest.mark.parametrize(
    "tamper, match",
    [
        (lambda h, b: (h["__metadata__"].update(format="other"), b), "format"),
        (lambda h, b: (h["__metadata__"].update(version="99"), b), "version"),
        (lambda h, b: (h["__metadata__"].update(config="{not json"), b), "JSON"),
        (
            lambda h, b: (h["__metadata__"].update(config=json.dumps({"cell": "lstm"})), b),
            "missing",
        ),
        (lambda h, b: (h["head.bias"].update(dtype="F16"), b), "F16"),
        (lambda h, b: (h["head.bias"].update(shape=[999]), b), "bytes"),
        (lambda h, b: (h["head.bias"].update(data_offsets=[0, 10**12]), b), "outside"),
        (lambda h, b: (h["head.bias"].update(data_offsets=[0, 72]), b), None),
        (lambda h, b: (h.pop("head.bias"), b), None),
        (lambda h, b: None, "trailing"),  # the body gets 8 extra bytes below
        (lambda h, b: (h["__metadata__"].pop("config"), b), "config"),
    ],
)
def test_tampered_headers(good, tmp_path, tamper, match):
    h, b = split(good[1])
    tamper(h, b)
    if match == "trailing":
        b = b + b"\x00" * 8
    expect_bad(tmp_path, join(h, b), match)


def test_shape_mismatch_and_nan(good, tmp_path):
    h, b = split(good[1])
    cfg = json.loads(h["__metadata__"]["config"])
    cfg["hidden_size"] = 7  # the tensors say 6
    h["__metadata__"]["config"] = json.dumps(cfg)
    expect_bad(tmp_path, join(h, b), "shape")
    h, b = split(good[1])
    begin = h["head.bias"]["data_offsets"][0]
    b = b[:begin] + struct.pack("<f", float("nan")) + b[begin + 4 :]
    expect_bad(tmp_path, join(h, b), "NaN")
    h, b = split(good[1])
    raw = json.dumps(h).encode()
    expect_bad(tmp_path, struct.pack("<Q", 10**15) + raw + b, "header size")


def test_random_byte_flips_never_crash(good, tmp_path):
    """A tampered header is rejected with a SeqfuseError, or (a flip the reader may ignore,
    e.g. in whitespace or unused metadata) loads a model that still computes what eager
    PyTorch computes (max abs error <= 1e-5), or fails cleanly when called."""
    m, path = good
    data = bytearray(path.read_bytes())
    rng = random.Random(1)
    (n,) = struct.unpack("<Q", bytes(data[:8]))
    x = example_input(preset("names", hidden_size=6, embed_dim=4), batch=2, seq_len=5, seed=0)
    with torch.no_grad():
        want = [t.numpy() for t in m(x)]
    loaded = rejected = 0
    for _ in range(150):
        d = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(0, 8 + n)  # the header is where structure lives
            d[i] = rng.randrange(256)
        p = tmp_path / "flip.safetensors"
        p.write_bytes(bytes(d))
        try:
            nm = sn.load(p)
        except SeqfuseError:
            rejected += 1
            continue
        loaded += 1
        try:
            got = nm(x)
        except SeqfuseError:
            continue
        for w, g in zip(want, got, strict=True):
            g = g.numpy() if isinstance(g, torch.Tensor) else np.asarray(g)
            assert g.shape == w.shape and np.abs(g - w).max() <= 1e-5, bytes(d[: 8 + n])
    assert rejected > 0
