"""mfh: multi-task ranking models for recommender systems (MFH, MMoE, PLE…), with the
Rust core underneath.

    import mfh
    cfg = mfh.Config("data/kuairand.toml", overrides={"train.epochs": 1})
    model = mfh.train(cfg, model="mfh", out="models/mfh", seed=42)
    scores = model.predict(df)                 # one column per behaviour + cell
    report = model.evaluate(cfg, split="test") # behaviour, cell, auc, gauc, logloss, n…
    table = mfh.compare(cfg, models=["mmoe", "mfh"], seeds=3, out="cmp")

Inputs may be pandas DataFrames, pyarrow Tables or RecordBatches (or anything with
``__arrow_c_stream__``), or dicts of numpy arrays; they reach the Rust core through
Arrow's C stream interface. Training and scoring release the GIL. Ctrl-C during
``train`` stops at the next step, saves a checkpoint and raises ``KeyboardInterrupt``;
``train(..., resume=True)`` continues the run. docs/python.md walks through it.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Union

import numpy as np
import pandas as pd
import pyarrow as pa

from . import _mfh
from ._mfh import (
    Config,
    ConfigError,
    DataError,
    MfhError,
    ModelError,
    StopRequested,
    hash_id,
    kernel_path,
)

__version__ = _mfh.__version__

__all__ = [
    "Config",
    "Model",
    "train",
    "load",
    "compare",
    "prepare_kuairand",
    "hash_id",
    "kernel_path",
    "MfhError",
    "ConfigError",
    "DataError",
    "ModelError",
    "Interrupted",
]

TableLike = Union["pd.DataFrame", "pa.Table", "pa.RecordBatch", Mapping[str, Any]]
PathLike = Union[str, "os.PathLike[str]"]


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C (or ``KeyboardInterrupt``): ``step`` it stopped at and the
    ``checkpoint`` it saved (None with ``train.keep_last = 0``). ``train(...,
    resume=True)`` with the same config and ``out`` continues it."""

    def __init__(self, message: str, step: Optional[int], checkpoint: Optional[str]):
        super().__init__(message)
        self.step = step
        self.checkpoint = checkpoint


def _to_arrow(data: TableLike) -> Any:
    """An object with ``__arrow_c_stream__`` holding ``data``'s rows."""
    if isinstance(data, pd.DataFrame):
        # NaN in float columns becomes null (missing), as pandas means it.
        try:
            return pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # A column of mixed Python values: each value as its text, as a CSV holds it.
            return pa.table({str(c): _pandas_column(data[c]) for c in data.columns})
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, (pa.Table, pa.RecordBatchReader)):
        return data
    if isinstance(data, Mapping):
        return pa.table({str(k): _column(v) for k, v in data.items()})
    if hasattr(data, "__arrow_c_stream__"):
        return data
    raise TypeError(
        f"expected a pandas DataFrame, a pyarrow Table or RecordBatch, or a dict of "
        f"arrays; got {type(data).__name__}"
    )


def _pandas_column(col: "pd.Series") -> "pa.Array":
    try:
        return pa.Array.from_pandas(col)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if pd.isna(x) else str(x) for x in col], type=pa.string())


def _column(v: Any) -> "pa.Array":
    if isinstance(v, (pa.Array, pa.ChunkedArray)):
        return v
    # NaN is missing, as for DataFrames.
    return pa.array(np.asarray(v) if not isinstance(v, list) else v, from_pandas=True)


def _tables(data: Optional[Mapping[str, TableLike]]) -> Optional[Dict[str, Any]]:
    if data is None:
        return None
    return {str(split): _to_arrow(t) for split, t in data.items()}


def _records_frame(records: list) -> "pd.DataFrame":
    """Metric records (split, behaviour, cell, metric, value, n…) as one row per
    behaviour × cell with a column per metric."""
    cols = ["split", "behaviour", "cell", "auc", "gauc", "logloss", "n", "positives"]
    if not records:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame.from_records(records)
    df["value"] = pd.to_numeric(df["value"], errors="coerce")  # None (undefined) → NaN
    keys = ["split", "behaviour", "cell"]
    wide = df.pivot_table(index=keys, columns="metric", values="value", aggfunc="first", dropna=False)
    counts = df.groupby(keys, sort=False)[["n", "positives"]].max()
    out = wide.join(counts).reset_index()
    order = {k: i for i, k in enumerate(dict.fromkeys(zip(df.split, df.behaviour, df.cell)))}
    out["_o"] = [order[k] for k in zip(out.split, out.behaviour, out.cell)]
    out = out.sort_values("_o").drop(columns="_o").reset_index(drop=True)
    out.columns.name = None
    front = [c for c in cols if c in out.columns]
    return out[front + [c for c in out.columns if c not in front]]


class Model:
    """A trained model folder (``mfh.load`` or ``mfh.train``). Thread-safe: several
    Python threads may score at once."""

    def __init__(self, inner: "_mfh.Model"):
        self._m = inner
        self._behaviours = list(inner.behaviours)
        self._cell_dtype = pd.CategoricalDtype(list(inner.cells))

    @property
    def dir(self) -> Path:
        return Path(self._m.dir)

    @property
    def name(self) -> str:
        """The model section it was trained from."""
        return self._m.name

    @property
    def behaviours(self) -> list:
        return list(self._m.behaviours)

    @property
    def cells(self) -> list:
        return list(self._m.cells)

    @property
    def config(self) -> Config:
        """The config it was trained with."""
        return self._m.config

    def predict(self, data: TableLike) -> "pd.DataFrame":
        """Scores rows of raw columns (the model's inputs, by name; side tables joined
        as the server joins them; other columns ignored). Returns one float32 column per
        behaviour (each row scored by its own cell's heads) and ``cell``."""
        scores, cells = self._m.predict(self._arrow(data))
        out = pd.DataFrame(scores, columns=self._behaviours, copy=False)
        out["cell"] = pd.Categorical.from_codes(cells.astype(np.int32), dtype=self._cell_dtype)
        return out

    def _arrow(self, data: TableLike) -> Any:
        """``data`` as Arrow; of a DataFrame only the columns scoring reads are converted
        (column by column: cheaper than selecting a sub-frame first)."""
        if isinstance(data, pd.DataFrame) and data.columns.is_unique:
            names = [str(c) for c in data.columns]
            keep = set(self._m.columns_read(names))
            return pa.table({n: _pandas_column(data[c]) for n, c in zip(names, data.columns) if n in keep})
        return _to_arrow(data)

    def evaluate(
        self,
        config: Optional[Config] = None,
        split: Optional[str] = None,
        data: Optional[Mapping[str, TableLike]] = None,
        batch_size: int = 4096,
    ) -> "pd.DataFrame":
        """Per-cell metrics of ``split`` (default: the config's valid split) of
        ``config`` (default: the model's own), as ``mfh eval`` computes them; ``data``
        gives splits as in-memory tables. Columns: split, behaviour, cell, auc, gauc,
        logloss, n, positives."""
        text = self._m.evaluate(config, split, _tables(data), batch_size)
        return _records_frame(json.loads(text))

    def weights(self) -> Dict[str, np.ndarray]:
        """The dense network's parameters and buffers by name (flat float32 arrays)."""
        return dict(self._m.weights())

    def embeddings(self, feature: str):
        """``(keys, rows)`` of ``feature``'s table: uint64 keys (``mfh.hash_id`` of a
        raw value) and float32 rows ``[n, dim]``, in row order."""
        return self._m.embeddings(feature)

    def save_safetensors(self, path: PathLike, embeddings: bool = False) -> None:
        """Writes ``weights()`` (and with ``embeddings``, every table's keys and rows) to
        a safetensors file, atomically."""
        self._m.save_safetensors(os.fspath(path), embeddings)

    def export_onnx(self, path: PathLike) -> None:
        """Writes the model as ONNX (row indices in, scores out) to ``path``, with the
        key → row maps in ``path.rows/`` and the inputs described in ``path.io.json``, as
        ``mfh export --onnx`` does (the three replaced as one bundle: a failed export
        leaves the previous one); ``onnx_feed`` computes the inputs."""
        self._m.export_onnx(os.fspath(path))

    def onnx_feed(self, data: TableLike) -> Dict[str, np.ndarray]:
        """The inputs of the graph ``mfh export --onnx`` writes for this model, for these
        rows: row indices per embedded feature, ``dense``, ``cell``."""
        return dict(self._m.onnx_feed(self._arrow(data)))

    def time_request_path(self, data: TableLike, reps: int = 5) -> float:
        """Median seconds to decode and score ``data`` through the server's request
        path in process (the yardstick of ``predict``'s speed)."""
        return self._m.time_request_path(_to_arrow(data), reps)

    def __repr__(self) -> str:
        return f"mfh.Model({str(self.dir)!r}, model={self.name!r})"


def prepare_kuairand(raw: PathLike, out: PathLike) -> Path:
    """Prepares KuaiRand-Pure's raw files (``raw``: the log, user and video features; the
    repository bundles a slice in data/kuairand-pure) into ``out`` as ``mfh prepare
    kuairand`` does: the training table, side tables and ``kuairand.toml``, whose path it
    returns."""
    return Path(_mfh.prepare_kuairand(os.fspath(raw), os.fspath(out)))


def load(path: PathLike) -> Model:
    """Loads a trained model folder."""
    return Model(_mfh.load(os.fspath(path)))


def _bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm  # a notebook widget in Jupyter, a terminal bar elsewhere
    except ImportError:
        return _TextBar(total, desc)
    return tqdm(total=total, desc=desc, unit="rows", unit_scale=True, leave=False)


class _TextBar:
    """A minimal terminal bar when tqdm is not installed."""

    def __init__(self, total: int, desc: str):
        self.total, self.n, self.desc, self._last = total, 0, desc, 0.0

    def update(self, k: int) -> None:
        self.n += k
        now = time.monotonic()
        if now - self._last > 0.5 or self.n >= self.total:
            self._last = now
            pct = 100.0 * self.n / max(self.total, 1)
            print(f"\r{self.desc}: {pct:5.1f}% ({self.n}/{self.total} rows)", end="", file=sys.stderr)

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def set_postfix_str(self, s: str) -> None:
        pass

    def reset(self, total: int) -> None:
        self.total, self.n = total, 0

    def close(self) -> None:
        print(file=sys.stderr)


def _watch(done: threading.Event, handle: "_mfh.RunHandle", progress: bool) -> None:
    """Shows the run's progress until ``done`` is set; Ctrl-C asks the run to stop (it
    stops at its next step, after a checkpoint) and waits for it."""
    bar, epoch = None, -1
    try:
        while not done.wait(0.1):
            e, epochs, rows, per_epoch, step, loss, _ = handle.progress()
            if not progress or epochs == 0:
                continue
            if bar is None:
                bar = _bar(per_epoch, f"epoch {e + 1}/{epochs}", progress)
            if e != epoch:
                epoch = e
                bar.reset(total=per_epoch)
                bar.set_description(f"epoch {e + 1}/{epochs}")
            if rows > bar.n:
                bar.update(rows - bar.n)
            if loss is not None:
                bar.set_postfix_str(f"step {step}, loss {loss:.4f}")
    except KeyboardInterrupt:
        handle.stop()
        while not done.wait(0.1):
            pass
        raise
    finally:
        if bar is not None:
            bar.close()


def _run(fn, *args, handle=None, progress=False, **kwargs):
    """Runs ``fn`` on a worker thread (it releases the GIL) while this thread shows
    progress and turns Ctrl-C into a stop request."""
    result: Dict[str, Any] = {}
    done = threading.Event()

    def work():
        try:
            result["value"] = fn(*args, handle=handle, **kwargs) if handle is not None else fn(*args, **kwargs)
        except BaseException as e:  # re-raised on the calling thread
            result["error"] = e
        finally:
            done.set()

    # Waiting on an Event (not Thread.join, whose state an interrupt can leave wrong).
    worker = threading.Thread(target=work, name="mfh-run", daemon=True)
    worker.start()
    try:
        if handle is not None:
            _watch(done, handle, progress)
        else:
            while not done.wait(0.1):
                pass
    except KeyboardInterrupt:
        err = result.get("error")
        if isinstance(err, StopRequested):
            raise Interrupted(str(err), getattr(err, "step", None), getattr(err, "checkpoint", None)) from None
        raise
    if "error" in result:
        raise result["error"]
    return result.get("value")


def train(
    config: Config,
    model: Optional[str] = None,
    out: PathLike = "model",
    seed: Optional[int] = None,
    data: Optional[Mapping[str, TableLike]] = None,
    resume: bool = False,
    init_from: Optional[PathLike] = None,
    keep_checkpoints: bool = False,
    threads: Optional[int] = None,
    progress: bool = True,
    tensorboard: Union[bool, PathLike] = False,
) -> Model:
    """Trains model section ``model`` of ``config`` into the folder ``out`` and returns
    the saved model (the best on the valid split). ``data`` maps split names to
    in-memory tables, read instead of the config's files for those splits (each holds
    exactly its split's rows). ``resume`` continues an interrupted run in ``out``;
    ``init_from`` warm-starts from a model folder. Ctrl-C stops at the next step with a
    checkpoint and raises ``mfh.Interrupted`` (a ``KeyboardInterrupt``). ``tensorboard``
    (True: ``out``/tensorboard, or a folder) writes TensorBoard scalars as it trains."""
    handle = _mfh.RunHandle()
    if tensorboard is True:
        tensorboard = Path(os.fspath(out)) / "tensorboard"
    tb = os.fspath(tensorboard) if tensorboard not in (False, None) else None
    inner = _run(
        _mfh.train,
        config,
        model,
        os.fspath(out),
        seed,
        _tables(data),
        resume,
        os.fspath(init_from) if init_from is not None else None,
        keep_checkpoints,
        threads,
        tb,
        handle=handle,
        progress=progress,
    )
    return Model(inner)


def compare(
    config: Config,
    models: Optional[Iterable[str]] = None,
    seeds: int = 3,
    out: PathLike = "compare",
    bootstrap: int = 1000,
    tensorboard: bool = False,
    threads: Optional[int] = None,
) -> "pd.DataFrame":
    """Trains each model section on ``seeds`` seeds and scores it as ``mfh compare``
    does (``out``/table.md, results.json, plots); returns one row per model × seed ×
    behaviour × cell with the report split's metrics. An interrupted comparison
    continues where it stopped when called again with the same ``out``."""
    results = _run(
        _mfh.compare,
        config,
        list(models or []),
        seeds,
        os.fspath(out),
        bootstrap,
        tensorboard,
        threads,
    )
    with open(results, encoding="utf-8") as f:
        records = json.load(f)
    frames = []
    runs = dict.fromkeys((r["model"], r["seed"]) for r in records)
    for model, seed in runs:
        frame = _records_frame([r for r in records if r["model"] == model and r["seed"] == seed])
        frame.insert(0, "seed", seed)
        frame.insert(0, "model", model)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
