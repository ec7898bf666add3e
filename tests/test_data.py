"""seqfuse.data: generated data, real-data readers, and missing-file messages."""

from __future__ import annotations

import pytest
import torch
from seqfuse import SeqfuseError
from seqfuse import data as D
from torch.utils.data import DataLoader


def test_sine_windows_continue_row_by_row():
    ds = D.sine_streams(n_streams=4, n_windows=3, seq_len=5)
    batches = list(DataLoader(ds, batch_size=4, shuffle=False))
    assert len(batches) == 3
    x0, y0 = batches[0]
    x1, _ = batches[1]
    # y is x shifted by one step; batch 1 continues batch 0 for each stream
    torch.testing.assert_close(y0[:, :-1], x0[:, 1:])
    torch.testing.assert_close(x1[:, 0], y0[:, -1])


def test_hihell_and_linear():
    x, y = D.hihell_tensors().tensors
    assert x.shape == (1, 6, 5) and x.sum() == 6
    xl, yl = D.linear_tensors().tensors
    torch.testing.assert_close(yl, 0.5 * xl + 1)


def test_names(data_dir):
    train, test = D.load_names(data_dir)
    assert len(train.classes) == 18
    assert len(train) > 13000 and len(test) > 6000
    ids, lengths, labels = D.collate_padded([train[0], train[1], train[2]])
    assert ids.shape[0] == 3 and int(lengths.max()) == ids.shape[1]
    assert D.datasets.ascii_fold("Ślusàrski") == "Slusarski"


def test_mnist_offline_split_is_reproducible(data_dir):
    a, b, split = D.load_mnist(data_dir, n_train=8000, seed=0)
    a2, _, _ = D.load_mnist(data_dir, n_train=8000, seed=0)
    assert len(a) == 8000 and len(b) == 2000 and "offline" in split
    torch.testing.assert_close(a.tensors[0][:50], a2.tensors[0][:50])
    assert a.tensors[0].shape[1:] == (28, 28) and float(a.tensors[0].max()) <= 1.0


def test_shakespeare(data_dir):
    train, val, vocab = D.load_shakespeare(data_dir, seq_len=50)
    assert len(vocab) == 65
    x, y = train[3]
    assert x.shape == (50,) and torch.equal(x[1:], y[:-1])


def test_missing_data_dir_and_file(tmp_path, monkeypatch):
    monkeypatch.delenv(D.datasets.ENV_VAR, raising=False)
    with pytest.raises(SeqfuseError, match="no data dir"):
        D.resolve_data_dir(None)
    with pytest.raises(SeqfuseError, match="data dir not found"):
        D.load_names(tmp_path / "nope")
    with pytest.raises(SeqfuseError, match=r"missing data file .*names_train\.csv\.gz; get it"):
        D.load_names(tmp_path)
    monkeypatch.setenv(D.datasets.ENV_VAR, str(tmp_path))
    with pytest.raises(SeqfuseError, match="t10k-images-idx3-ubyte"):
        D.load_mnist(None)
