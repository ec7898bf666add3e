"""Character sampling from a language model (the shakespeare seed).

Feeds the prompt once, then one character per step, carrying the recurrent state, exactly
as a streaming session does. Checked by tests/test_train.py (generation from a trained model).
"""

from __future__ import annotations

import torch
from torch import nn


@torch.inference_mode()
def sample_text(
    model: nn.Module,
    vocab: str,
    prompt: str,
    length: int = 200,
    temperature: float = 0.8,
    seed: int = 0,
) -> str:
    """Continue ``prompt`` by ``length`` characters sampled at ``temperature`` (0 = greedy)."""
    lut = {c: i for i, c in enumerate(vocab)}
    unknown = sorted({c for c in prompt if c not in lut})
    if unknown:
        raise ValueError(f"prompt has characters outside the model's vocabulary: {unknown!r}")
    if not prompt:
        raise ValueError("prompt must not be empty")
    g = torch.Generator().manual_seed(seed)
    model.eval()
    x = torch.tensor([[lut[c] for c in prompt]])
    logits, state = model(x)
    out = []
    for _ in range(length):
        last = logits[0, -1]
        if temperature <= 0:
            nxt = int(last.argmax())
        else:
            probs = torch.softmax(last / temperature, dim=-1)
            nxt = int(torch.multinomial(probs, 1, generator=g))
        out.append(vocab[nxt])
        logits, state = model(torch.tensor([[nxt]]), state)
    return prompt + "".join(out)
