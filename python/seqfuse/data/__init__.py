"""seqfuse.data: Datasets for each seed task.

sine, hihell and linear are generated; names, mnist and shakespeare are read from a data
dir given by ``--data-dir`` or ``SEQFUSE_DATA_DIR``. A missing file raises
:class:`seqfuse.SeqfuseError` naming the file and where to get it.
Checked by tests/test_data.py.
"""

from seqfuse.data.datasets import (
    CharTextDataset,
    NamesDataset,
    collate_padded,
    hihell_tensors,
    linear_tensors,
    load_mnist,
    load_names,
    load_shakespeare,
    resolve_data_dir,
    sine_streams,
)

__all__ = [
    "CharTextDataset",
    "NamesDataset",
    "collate_padded",
    "hihell_tensors",
    "linear_tensors",
    "load_mnist",
    "load_names",
    "load_shakespeare",
    "resolve_data_dir",
    "sine_streams",
]
