"""Presets: the model config of each seed tutorial, by task name.

Checked by tests/test_models.py (shapes) and tests/test_train.py (each trains to its bar).
"""

from __future__ import annotations

from typing import Any

from seqfuse.models.seq import LinearConfig, SeqConfig

# Characters the names classifier reads after Unicode -> ASCII folding; id 0 is padding.
NAMES_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ .,;'-"
NAMES_CLASSES = 18
HIHELL_CHARS = "hielo"
SHAKESPEARE_VOCAB = 65  # distinct characters of Tiny Shakespeare

PRESETS: dict[str, Any] = {
    # linear regression y = w x + b on ten points
    "linear": lambda: LinearConfig(in_features=1, out_features=1),
    # one-hot "hihell" -> "ihello", an RNN of hidden 5 with a per-step classifier
    "hihell": lambda: SeqConfig(
        cell="rnn_tanh",
        input_size=len(HIHELL_CHARS),
        hidden_size=5,
        head="step",
        output_size=len(HIHELL_CHARS),
    ),
    # character GRU name classifier: Embedding 128 -> 2-layer GRU 100 -> 18 languages
    "names": lambda: SeqConfig(
        cell="gru",
        vocab_size=len(NAMES_ALPHABET) + 1,
        embed_dim=128,
        hidden_size=100,
        num_layers=2,
        head="last_hidden",
        output_size=NAMES_CLASSES,
    ),
    # MNIST rows as a 28-step sequence: 2-layer bidirectional LSTM 128, head on the last step
    "mnist": lambda: SeqConfig(
        cell="lstm",
        input_size=28,
        hidden_size=128,
        num_layers=2,
        bidirectional=True,
        head="last_step",
        output_size=10,
    ),
    # sine next-value regression: RNN 32, per-step linear head, state carried across batches
    "sine": lambda: SeqConfig(
        cell="rnn_tanh", input_size=1, hidden_size=32, head="step", output_size=1
    ),
    # character LSTM language model: Embedding 64 -> 2-layer LSTM 256 -> next-char logits
    "shakespeare": lambda: SeqConfig(
        cell="lstm",
        vocab_size=SHAKESPEARE_VOCAB,
        embed_dim=64,
        hidden_size=256,
        num_layers=2,
        head="step",
        output_size=SHAKESPEARE_VOCAB,
    ),
}


def preset(name: str, **overrides: Any) -> dict[str, Any]:
    """The config dict of a seed model, with optional field overrides."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
    cfg = PRESETS[name]().to_dict()
    cfg.update(overrides)
    return cfg
