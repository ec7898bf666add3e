"""`seqfuse predict-batch MODEL --input FILE --output FILE`: batch inference over Ray Data.

The input (.npy: one array, batch first; .parquet: a column "inputs" of equal-shaped nested
lists, and an optional integer column "lengths") becomes a Ray Dataset; map_batches runs it
through a pool of actors that each hold a native model, with order preserved, and the
outputs are written in input order (.npy, or .parquet with a column "outputs"). Checked by
tests/test_serve.py (10k sequences equal eager).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seqfuse.errors import SeqfuseError
from seqfuse.serve.model import BadRequest, Predictor, load_bytes


class NativeBatchPredictor:
    """A Ray Data actor: one native model, loaded once, applied to every batch it gets."""

    def __init__(self, weights: bytes, name: str, threads: int) -> None:
        self.predictor = Predictor(load_bytes(weights, threads=threads), name)
        self.threads = threads

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = _dense(batch["inputs"])
        lengths = batch.get("lengths")
        x, n = self.predictor.check(x, None if lengths is None else _dense(lengths))
        y = self.predictor.run(x, n, self.threads)
        return {"outputs": np.ascontiguousarray(y)}


def _dense(col: np.ndarray) -> np.ndarray:
    """A column Arrow gave as object arrays of arrays (nested lists) -> one ndarray."""
    if col.dtype != object:
        return col
    rows = [_dense(r) if isinstance(r, np.ndarray) else np.asarray(r) for r in col]
    if len({r.shape for r in rows}) > 1:
        raise BadRequest("inputs rows have different shapes; pad them and give lengths")
    return np.stack(rows)


def _read(path: Path, limit: int | None = None):
    import ray.data

    suffix = path.suffix.lower()
    if not path.is_file():
        raise SeqfuseError(f"--input not found: {path}")
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False, mmap_mode="r")
        except (ValueError, OSError) as e:
            raise SeqfuseError(f"{path}: not a readable .npy array ({e})") from None
        if arr.ndim < 2 or arr.shape[0] == 0:
            raise SeqfuseError(f"{path}: expected a batch-first array, got shape {arr.shape}")
        return ray.data.from_numpy(np.ascontiguousarray(arr)).rename_columns(
            {"data": "inputs"}
        ), arr.shape[0]
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            meta = pq.ParquetFile(path)
        except Exception as e:
            raise SeqfuseError(f"{path}: not a readable parquet file ({e})") from None
        names = meta.schema_arrow.names
        if "inputs" not in names:
            raise SeqfuseError(f"{path}: needs a column 'inputs' (has {', '.join(names)})")
        cols = ["inputs"] + (["lengths"] if "lengths" in names else [])
        return ray.data.read_parquet(str(path), columns=cols), meta.metadata.num_rows
    raise SeqfuseError(f"--input must be .npy or .parquet, got {path.name}")


def _write(path: Path, chunks: list[np.ndarray]) -> None:
    y = np.concatenate(chunks) if chunks else np.zeros((0,), np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if path.suffix.lower() == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, y)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table({"outputs": [row.tolist() for row in y]}), tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def predict_batch(
    model: str,
    input_path: str,
    output_path: str,
    *,
    workers: int = 2,
    threads: int = 1,
    batch_size: int = 256,
    address: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    from seqfuse.serve.app import init_ray, require_ray

    require_ray()
    from seqfuse.serve.model import model_bytes

    out = Path(output_path)
    if out.suffix.lower() not in (".npy", ".parquet"):
        raise SeqfuseError(f"--output must be .npy or .parquet, got {out.name}")
    if out.is_dir():
        raise SeqfuseError(f"--output {out} is a directory")
    src = Path(input_path)
    if not src.is_file():
        raise SeqfuseError(f"--input not found: {src}")
    if src.suffix.lower() not in (".npy", ".parquet"):
        raise SeqfuseError(f"--input must be .npy or .parquet, got {src.name}")
    weights, name = model_bytes(model)  # bad files: one line before Ray starts
    init_ray(address)
    import ray
    from ray.data import DataContext
    from tqdm import tqdm

    try:
        ctx = DataContext.get_current()
        ctx.execution_options.preserve_order = True  # outputs in input order
        ctx.enable_progress_bars = False  # one bar: ours, over sequences written
        ds, total = _read(src)
        ds = ds.map_batches(
            NativeBatchPredictor,
            fn_constructor_kwargs={"weights": weights, "name": name, "threads": threads},
            batch_size=batch_size,
            batch_format="numpy",
            concurrency=workers,
            num_cpus=threads,
        )
        chunks: list[np.ndarray] = []
        with tqdm(total=total, desc="predict-batch", unit="seq", disable=not progress) as bar:
            for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
                chunks.append(_dense(b["outputs"]))
                bar.update(len(chunks[-1]))
        _write(out, chunks)
    except ray.exceptions.RayTaskError as e:
        cause = e.cause if isinstance(getattr(e, "cause", None), SeqfuseError) else None
        if cause is None:
            raise
        raise SeqfuseError(str(cause)) from None
    finally:
        ray.shutdown()
    return {"rows": sum(len(c) for c in chunks), "output": out}
