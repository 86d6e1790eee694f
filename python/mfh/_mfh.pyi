"""Type stubs of the native module under the `mfh` package (the Rust core)."""

from os import PathLike
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

_Path = Union[str, PathLike]

__version__: str

class MfhError(Exception):
    """Any error mfh reports (the CLI's message)."""

class ConfigError(MfhError):
    """A config that cannot be used."""
    file: Optional[str]
    key: Optional[str]

class DataError(MfhError):
    """Data that cannot be read: a file (or ``data["SPLIT"]``), its 1-based line or row,
    the column; or the 0-based ``row`` of a scored table."""
    file: Optional[str]
    line: Optional[int]
    column: Optional[str]
    row: Optional[int]

class ModelError(MfhError):
    """A model folder that cannot be loaded or used."""

class StopRequested(MfhError):
    """A run stopped on request (the Python side raises ``mfh.Interrupted``)."""
    step: int
    checkpoint: Optional[str]

class Config:
    def __init__(self, path: _Path, overrides: Optional[Mapping[str, Any]] = None) -> None: ...
    @property
    def path(self) -> Any: ...
    @property
    def behaviours(self) -> List[str]: ...
    @property
    def cells(self) -> List[str]: ...
    @property
    def models(self) -> List[str]: ...
    @property
    def splits(self) -> List[str]: ...
    def to_toml(self) -> str: ...
    def check(self, count: bool = False) -> str: ...

class RunHandle:
    def __init__(self) -> None: ...
    def stop(self) -> None: ...
    def progress(self) -> Tuple[int, int, int, int, int, Optional[float], int]: ...

class Model:
    @property
    def dir(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def behaviours(self) -> List[str]: ...
    @property
    def cells(self) -> List[str]: ...
    @property
    def config(self) -> Config: ...
    def columns_read(self, columns: List[str]) -> List[str]: ...
    def predict(self, data: Any) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.uint32]]: ...
    def evaluate(
        self,
        config: Optional[Config] = None,
        split: Optional[str] = None,
        data: Optional[Dict[str, Any]] = None,
        batch_size: int = 4096,
    ) -> str: ...
    def weights(self) -> Dict[str, npt.NDArray[np.float32]]: ...
    def embeddings(self, feature: str) -> Tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]: ...
    def save_safetensors(self, path: _Path, embeddings: bool = False) -> None: ...
    def export_onnx(self, path: _Path) -> None: ...
    def onnx_feed(self, data: Any) -> Dict[str, np.ndarray]: ...
    def time_request_path(self, data: Any, reps: int = 5) -> float: ...

def hash_id(value: Union[str, int, float, bool, bytes]) -> int: ...
def kernel_path() -> str: ...
def prepare_kuairand(raw: _Path, out: _Path) -> str: ...
def load(dir: _Path) -> Model: ...
def train(
    config: Config,
    model: Optional[str],
    out: _Path,
    seed: Optional[int] = None,
    data: Optional[Dict[str, Any]] = None,
    resume: bool = False,
    init_from: Optional[_Path] = None,
    keep_checkpoints: bool = False,
    threads: Optional[int] = None,
    tensorboard: Optional[_Path] = None,
    handle: Optional[RunHandle] = None,
) -> Model: ...
def compare(
    config: Config,
    models: List[str],
    seeds: int,
    out: _Path,
    bootstrap: int = 1000,
    tensorboard: bool = False,
    threads: Optional[int] = None,
) -> str: ...
