"""Datasets of the seed tasks: generated (sine, hihell, linear) and read (names, MNIST,
Tiny Shakespeare). MNIST is read with torchvision's IDX readers.

Checked by tests/test_data.py (shapes, splits, vocabularies, missing-file messages).
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import shutil
import tempfile
import unicodedata
from pathlib import Path

import torch
from torch.utils.data import Dataset, TensorDataset

from seqfuse.errors import SeqfuseError
from seqfuse.models.presets import HIHELL_CHARS, NAMES_ALPHABET

ENV_VAR = "SEQFUSE_DATA_DIR"

# Where each file comes from, for the missing-file message.
SOURCES = {
    "names": "the PyTorch char-RNN tutorial's names data "
    '(https://download.pytorch.org/tutorial/data.zip), as gzip CSV rows "Name","Language"',
    "mnist": "http://yann.lecun.com/exdb/mnist/ (or torchvision.datasets.MNIST(download=True))",
    "text": "Tiny Shakespeare (https://raw.githubusercontent.com/karpathy/char-rnn/master/"
    "data/tinyshakespeare/input.txt), gzipped",
}


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """The data dir from the argument, else ``$SEQFUSE_DATA_DIR``; it must exist."""
    chosen = data_dir if data_dir else os.environ.get(ENV_VAR)
    if not chosen:
        raise SeqfuseError(
            f"no data dir: pass --data-dir DIR or set {ENV_VAR} "
            "(it holds names/, mnist/ and text/; see README 'Data')"
        )
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise SeqfuseError(f"data dir not found: {path}")
    return path


def _require(path: Path, kind: str) -> Path:
    if not path.is_file():
        raise SeqfuseError(f"missing data file {path}; get it from {SOURCES[kind]}")
    return path


# ---------------------------------------------------------------------------- generated


def linear_tensors() -> TensorDataset:
    """The 10-point linear-regression data: y = 0.5 x + 1 at x = 1..10."""
    x = torch.arange(1.0, 11.0).unsqueeze(1)
    return TensorDataset(x, 0.5 * x + 1.0)


def hihell_tensors() -> TensorDataset:
    """One-hot "hihell" -> class ids of "ihello" (one sequence, T=6, 5 chars)."""
    idx = {c: i for i, c in enumerate(HIHELL_CHARS)}
    x_ids = torch.tensor([idx[c] for c in "hihell"])
    y_ids = torch.tensor([idx[c] for c in "ihello"])
    x = torch.nn.functional.one_hot(x_ids, len(HIHELL_CHARS)).float()
    return TensorDataset(x.unsqueeze(0), y_ids.unsqueeze(0))


def sine_streams(
    n_streams: int = 16, n_windows: int = 40, seq_len: int = 20, dt: float = 0.1, seed: int = 0
) -> TensorDataset:
    """Next-value prediction on sine waves, laid out so the hidden state can be carried.

    Stream s is sin(f_s * t + phase_s) sampled every ``dt``; it is cut into ``n_windows``
    consecutive windows of ``seq_len`` steps. Item ``w * n_streams + s`` is window w of
    stream s, so a DataLoader with ``batch_size=n_streams, shuffle=False`` yields window w
    of every stream in batch w: batch w continues batch w-1 row by row, as in the tutorial
    that carries the RNN state across batches. x: [seq_len, 1], y: [seq_len, 1] (x shifted
    by one step).
    """
    g = torch.Generator().manual_seed(seed)
    freq = 0.5 + torch.rand(n_streams, 1, generator=g)
    phase = 2 * math.pi * torch.rand(n_streams, 1, generator=g)
    steps = n_windows * seq_len + 1
    t = torch.arange(steps, dtype=torch.float32).unsqueeze(0) * dt
    wave = torch.sin(freq * t + phase)  # [S, steps]
    x = wave[:, :-1].reshape(n_streams, n_windows, seq_len).transpose(0, 1)
    y = wave[:, 1:].reshape(n_streams, n_windows, seq_len).transpose(0, 1)
    x = x.reshape(-1, seq_len, 1).contiguous()
    y = y.reshape(-1, seq_len, 1).contiguous()
    return TensorDataset(x, y)


# ---------------------------------------------------------------------------- names


def ascii_fold(s: str) -> str:
    """Unicode -> ASCII letters of the names alphabet (as the tutorial's unicodeToAscii)."""
    return "".join(
        c
        for c in unicodedata.normalize("NFD", s)
        if unicodedata.category(c) != "Mn" and c in NAMES_ALPHABET
    )


NAMES_CHAR_ID = {c: i + 1 for i, c in enumerate(NAMES_ALPHABET)}  # 0 is padding


def encode_name(name: str) -> torch.Tensor:
    ids = [NAMES_CHAR_ID[c] for c in ascii_fold(name)]
    if not ids:
        raise SeqfuseError(f"name {name!r} has no letters seqfuse can read")
    return torch.tensor(ids, dtype=torch.int64)


class NamesDataset(Dataset):
    """Surnames as char-id sequences with a language label."""

    def __init__(self, rows: list[tuple[str, str]], classes: list[str]) -> None:
        index = {c: i for i, c in enumerate(classes)}
        self.classes = classes
        self.items = []
        for name, lang in rows:
            if lang in index and ascii_fold(name):
                self.items.append((encode_name(name), index[lang]))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def _read_names_csv(path: Path) -> list[tuple[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        return [(r[0], r[1]) for r in csv.reader(f) if len(r) == 2 and r[0] and r[1]]


def load_names(data_dir: str | os.PathLike | None) -> tuple[NamesDataset, NamesDataset]:
    """names_train / names_test; classes are the sorted languages of the train split."""
    root = resolve_data_dir(data_dir) / "names"
    train_rows = _read_names_csv(_require(root / "names_train.csv.gz", "names"))
    test_rows = _read_names_csv(_require(root / "names_test.csv.gz", "names"))
    classes = sorted({lang for _, lang in train_rows})
    return NamesDataset(train_rows, classes), NamesDataset(test_rows, classes)


def collate_padded(batch):
    """Pad variable-length id sequences: -> (ids [B, T] int64, lengths [B], labels [B])."""
    seqs, labels = zip(*batch)
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.int64)
    ids = torch.nn.utils.rnn.pad_sequence(list(seqs), batch_first=True)
    return ids, lengths, torch.tensor(labels, dtype=torch.int64)


# ---------------------------------------------------------------------------- MNIST


def _read_idx(path: Path, reader) -> torch.Tensor:
    """torchvision's IDX readers take plain files; un-gzip to a temp file first."""
    if path.suffix != ".gz":
        return reader(str(path))
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / path.stem
        with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
            shutil.copyfileobj(src, dst)
        return reader(str(plain))


def _find(root: Path, stem: str) -> Path:
    for p in (root / stem, root / f"{stem}.gz"):
        if p.is_file():
            return p
    return _require(root / f"{stem}.gz", "mnist")


def load_mnist(
    data_dir: str | os.PathLike | None, n_train: int = 8000, seed: int = 0
) -> tuple[TensorDataset, TensorDataset, str]:
    """MNIST as (rows [28, 28] float in [0, 1], label) datasets.

    With the full training split in ``DATA/mnist`` it is used, tested on t10k. Offline, only
    the t10k files are needed: they are split reproducibly (by ``seed``) into ``n_train``
    training images and the rest for testing. Returns (train, test, split description).
    """
    from torchvision.datasets.mnist import read_image_file, read_label_file

    root = resolve_data_dir(data_dir) / "mnist"
    test_x = _read_idx(_find(root, "t10k-images-idx3-ubyte"), read_image_file)
    test_y = _read_idx(_find(root, "t10k-labels-idx1-ubyte"), read_label_file)
    full = [
        root / f"train-{k}-idx{n}-ubyte{z}"
        for k, n in (("images", 3), ("labels", 1))
        for z in ("", ".gz")
    ]
    if any(p.is_file() for p in full[:2]) and any(p.is_file() for p in full[2:]):
        train_x = _read_idx(_find(root, "train-images-idx3-ubyte"), read_image_file)
        train_y = _read_idx(_find(root, "train-labels-idx1-ubyte"), read_label_file)
        split = "train 60k / test t10k"
    else:
        if not 0 < n_train < len(test_x):
            raise SeqfuseError(f"n_train must be in 1..{len(test_x) - 1}, got {n_train}")
        perm = torch.randperm(len(test_x), generator=torch.Generator().manual_seed(seed))
        tr, te = perm[:n_train], perm[n_train:]
        train_x, train_y = test_x[tr], test_y[tr]
        test_x, test_y = test_x[te], test_y[te]
        split = f"offline: t10k split {n_train} train / {len(te)} test (seed {seed})"

    def to_ds(x, y):
        return TensorDataset(x.float().div_(255.0), y.long())

    return to_ds(train_x, train_y), to_ds(test_x, test_y), split


# ---------------------------------------------------------------------------- Shakespeare


class CharTextDataset(Dataset):
    """Windows of ``seq_len + 1`` characters of a text: (ids[:-1], ids[1:]).

    Windows start every ``stride`` characters, so an epoch sees the text once.
    """

    def __init__(self, ids: torch.Tensor, seq_len: int = 100, stride: int | None = None):
        self.ids = ids
        self.seq_len = seq_len
        self.stride = stride or seq_len
        self.n = max(0, (len(ids) - seq_len - 1) // self.stride + 1)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        s = i * self.stride
        w = self.ids[s : s + self.seq_len + 1]
        return w[:-1], w[1:]


def load_shakespeare(
    data_dir: str | os.PathLike | None, seq_len: int = 100, val_fraction: float = 0.1
) -> tuple[CharTextDataset, CharTextDataset, str]:
    """Tiny Shakespeare: (train, validation, vocabulary string); vocab = sorted chars."""
    path = _require(resolve_data_dir(data_dir) / "text" / "shakespeare.txt.gz", "text")
    with gzip.open(path, "rb") as f:
        text = io.TextIOWrapper(f, encoding="utf-8").read()
    vocab = "".join(sorted(set(text)))
    lut = {c: i for i, c in enumerate(vocab)}
    ids = torch.tensor([lut[c] for c in text], dtype=torch.int64)
    cut = int(len(ids) * (1 - val_fraction))
    return CharTextDataset(ids[:cut], seq_len), CharTextDataset(ids[cut:], seq_len), vocab
