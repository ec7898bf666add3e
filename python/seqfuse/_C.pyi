# Type stubs for seqfuse._C, the private pybind11 module (use seqfuse.native instead).
# Checked by tests/test_native*.py, which call every entry point.
from typing import Any

import numpy as np

from seqfuse import SeqfuseError

class WeightFileError(SeqfuseError): ...
class InvalidArgumentError(SeqfuseError, ValueError): ...

def build_info() -> dict[str, Any]: ...
def rnn_tanh_step_reference(
    x: np.ndarray,
    h: np.ndarray,
    w_ih: np.ndarray,
    w_hh: np.ndarray,
    b_ih: np.ndarray | None = None,
    b_hh: np.ndarray | None = None,
) -> np.ndarray: ...
def activation(kernel_set: str, kind: int, x: np.ndarray) -> np.ndarray: ...
def kernel_sets() -> list[tuple[str, bool]]: ...
def cpu_supports(kernel_set: str) -> bool: ...

# Pointer arguments: None, an int address (torch data_ptr()) or a C-contiguous NumPy array.
def run(
    model_addr: int,
    B: int,
    T: int,
    batch_first: int | bool,
    x: Any,
    tokens: Any,
    lengths: Any,
    h0: Any,
    c0: Any,
    y: Any,
    h_n: Any,
    c_n: Any,
    threads: int,
    head_only: int | bool,
) -> None: ...
def stream_step(session_addr: int, x: Any, tokens: Any, k: int, y: Any, threads: int) -> None: ...

class Session:
    @property
    def batch(self) -> int: ...
    @property
    def address(self) -> int: ...
    def step_ptr(self, x: int, tokens: int, k: int, y: int, threads: int = 1) -> None: ...
    def reset(self) -> None: ...
    def get_state_ptr(self, h: int, c: int) -> None: ...
    def set_state_ptr(self, h: int, c: int) -> None: ...

class Model:
    def __init__(
        self, config_json: str, weights: dict[str, np.ndarray], isa: str = "auto"
    ) -> None: ...
    @staticmethod
    def load(path: str, isa: str = "auto") -> Model: ...
    @property
    def config_json(self) -> str: ...
    @property
    def isa(self) -> str: ...
    @property
    def address(self) -> int: ...
    def weights(self) -> dict[str, np.ndarray]: ...
    def forward_ptr(
        self,
        B: int,
        T: int,
        batch_first: bool,
        x: int,
        tokens: int,
        lengths: int,
        h0: int,
        c0: int,
        y: int,
        h_n: int,
        c_n: int,
        threads: int,
        head_only: bool,
    ) -> None: ...
    def stream(self, batch: int = 1) -> Session: ...
