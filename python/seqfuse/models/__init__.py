"""seqfuse.models: the seed tutorial models as ordinary torch nn.Modules.

One configurable :class:`SeqModel` (features or Embedding in; rnn_tanh / rnn_relu / gru /
lstm; layers; bidirectional; a head per step, on the last step or on the last hidden state)
covers every recurrent seed; :class:`LinearRegression` covers the linear one. A model is
rebuilt from its config dict alone (:func:`build_model`), which is what checkpoints carry.
Checked by tests/test_models.py against hand-written torch code.
"""

from seqfuse.models.presets import PRESETS, preset
from seqfuse.models.seq import (
    CELL_TABLE,
    CELLS,
    HEADS,
    CellInfo,
    LinearRegression,
    SeqConfig,
    SeqModel,
    build_model,
    cell_of,
    check_state_dict,
    config_of,
    example_input,
    make_rnn,
    parse_config,
    state_shapes,
)

__all__ = [
    "CELL_TABLE",
    "CELLS",
    "CellInfo",
    "HEADS",
    "PRESETS",
    "LinearRegression",
    "SeqConfig",
    "SeqModel",
    "build_model",
    "check_state_dict",
    "config_of",
    "cell_of",
    "example_input",
    "make_rnn",
    "parse_config",
    "preset",
    "state_shapes",
]
