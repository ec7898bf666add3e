"""seqfuse.train: tasks, the training loop and checkpoints.

Checked by tests/test_train.py.
"""

from seqfuse.train.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint

__all__ = ["load_checkpoint", "model_from_checkpoint", "save_checkpoint"]
