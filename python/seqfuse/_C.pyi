# Type stubs for seqfuse._C, the private pybind11 module (use seqfuse.native and
# seqfuse.native_cuda instead). Checked by tests/test_native*.py and tests/test_cuda_tiling.py,
# which call these entry points (the CUDA ones on a GPU: tests/test_native_cuda.py).
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

MAX_THREADS: int

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
    def stream(self, batch: int = 1) -> Session: ...

# ---- CUDA (csrc/python/cuda_bindings.cpp) -------------------------------------------------
cuda_built: bool
cuda_max_batch_tile: int
cuda_kernel_variants: list[tuple[int, int, bool]]

def cuda_device_count() -> int: ...
def cuda_plan(
    H: int,
    G: int,
    B: int,
    dirs: int = 1,
    max_cluster: int = 16,
    smem_limit: int = 232448,
    bf16: bool = False,
) -> dict[str, Any]: ...
def cuda_fused_plan(
    H: int, G: int, L: int, D: int, B: int, max_cluster: int = 16, smem_limit: int = 232448
) -> dict[str, Any]: ...
def cuda_pack_bf16(w: np.ndarray) -> np.ndarray: ...
def cuda_run(
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
    workspace: Any,
    workspace_bytes: int,
    stream: int,
    path: int,
) -> None: ...

class CudaModel:  # only in CUDA builds
    def __init__(
        self,
        config_json: str,
        weights: dict[str, np.ndarray],
        device: int = -1,
        precision: str = "fp32",
    ) -> None: ...
    @property
    def device(self) -> int: ...
    @property
    def precision(self) -> str: ...
    @property
    def address(self) -> int: ...
    def workspace_bytes(self, batch: int, steps: int) -> int: ...
    def describe(self, batch: int = 1, path: str = "auto") -> str: ...
