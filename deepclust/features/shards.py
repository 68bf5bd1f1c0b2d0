"""Feature shards: many utterances' features in one file, written atomically, read as a stream.

Two formats:

- Parquet (default): one row per utterance with columns `mixture_id` (string), `num_frames` (int32),
  `n_freq` (int32) and `log_mag` / `target` / `weight` as raw little-endian bytes (binary columns).
  Raw bytes decode with one `np.frombuffer` per array, which is faster than Arrow list columns
  (no per-element offsets, no list flattening). `weight` is stored as uint8 (it is 0/1) and returned
  as float32. Rows are grouped into small row groups (`rows_per_group` utterances), so `iter_shard`
  holds one row group in memory at a time.
- NPZ: the utterances' arrays concatenated along frames plus `offsets` (num_utterances + 1,);
  `iter_shard` loads each array of the shard whole (the shard size bounds memory).

Every item is `dict(mixture_id, log_mag (frames, freq) float32, target (frames, freq) uint8,
weight (frames, freq) float32)`.
"""

from __future__ import annotations

import hashlib
import io
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from deepclust import storage
from deepclust.storage.manifests import read_manifest

__all__ = ["SHARD_FORMATS", "shard_extension", "write_shard", "iter_shard", "iter_features"]

SHARD_FORMATS = ("parquet", "npz")
_EXTENSIONS = {"parquet": ".parquet", "npz": ".npz"}
_SCHEMA = pa.schema(
    [
        ("mixture_id", pa.string()),
        ("num_frames", pa.int32()),
        ("n_freq", pa.int32()),
        ("log_mag", pa.binary()),
        ("target", pa.binary()),
        ("weight", pa.binary()),
    ],
    metadata={b"deepclust.shard": b"1", b"log_mag": b"<f4", b"target": b"u1", b"weight": b"u1"},
)


def shard_extension(fmt: str) -> str:
    """File suffix for a shard format: ".parquet" or ".npz"."""
    if fmt not in _EXTENSIONS:
        raise ValueError(f"unknown shard format {fmt!r}; expected one of {SHARD_FORMATS}")
    return _EXTENSIONS[fmt]


def _format_of(url: str) -> str:
    for fmt, ext in _EXTENSIONS.items():
        if str(url).lower().endswith(ext):
            return fmt
    raise ValueError(f"{url}: cannot tell the shard format from the suffix (expected .parquet or .npz)")


def _checked(item: dict) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    log_mag = np.ascontiguousarray(item["log_mag"], dtype="<f4")
    target = np.ascontiguousarray(item["target"], dtype=np.uint8)
    weight = np.asarray(item["weight"])
    if log_mag.ndim != 2 or target.shape != log_mag.shape or weight.shape != log_mag.shape:
        raise ValueError(
            f"{item.get('mixture_id')}: log_mag/target/weight must share one (frames, freq) shape, got "
            f"{log_mag.shape}, {target.shape}, {weight.shape}"
        )
    if not np.all((weight == 0) | (weight == 1)):
        # Stored as uint8 to save space; fractional weights would be silently rounded.
        raise ValueError(f"{item.get('mixture_id')}: weight must be 0/1")
    return str(item["mixture_id"]), log_mag, target, np.ascontiguousarray(weight, dtype=np.uint8)


def _parquet_bytes(items: list[dict], rows_per_group: int) -> bytes:
    columns = {name: [] for name in _SCHEMA.names}
    for item in items:
        mixture_id, log_mag, target, weight = _checked(item)
        columns["mixture_id"].append(mixture_id)
        columns["num_frames"].append(log_mag.shape[0])
        columns["n_freq"].append(log_mag.shape[1])
        columns["log_mag"].append(log_mag.tobytes())
        columns["target"].append(target.tobytes())
        columns["weight"].append(weight.tobytes())
    table = pa.table(columns, schema=_SCHEMA)
    buffer = pa.BufferOutputStream()
    # Snappy decodes fastest; target/weight are mostly runs and shrink a lot, log_mag barely does.
    pq.write_table(table, buffer, row_group_size=max(1, rows_per_group), compression="snappy")
    return buffer.getvalue().to_pybytes()


def _npz_bytes(items: list[dict]) -> bytes:
    checked = [_checked(item) for item in items]
    n_freq = checked[0][1].shape[1] if checked else 0
    if any(c[1].shape[1] != n_freq for c in checked):
        raise ValueError("all utterances in an NPZ shard must have the same number of bins")
    lengths = [c[1].shape[0] for c in checked]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)

    def cat(index: int, dtype) -> np.ndarray:
        if not checked:
            return np.zeros((0, n_freq), dtype=dtype)
        return np.concatenate([c[index] for c in checked], axis=0).astype(dtype, copy=False)

    buffer = io.BytesIO()
    np.savez(
        buffer,
        mixture_id=np.array([c[0] for c in checked], dtype=str),
        offsets=offsets,
        log_mag=cat(1, np.float32),
        target=cat(2, np.uint8),
        weight=cat(3, np.uint8),
    )
    return buffer.getvalue()


def write_shard(items: Iterable[dict], url: str, format: str = "parquet", rows_per_group: int = 8) -> dict:
    """Write utterances' features to one shard file, atomically (readers never see half a shard).

    Args:
        items: dicts with `mixture_id`, `log_mag` (frames, freq) float32, `target` (frames, freq)
            uint8, `weight` (frames, freq) in {0, 1}.
        url: local path or fsspec URL; its suffix should match `format`.
        format: "parquet" or "npz".
        rows_per_group: utterances per Parquet row group (the unit `iter_shard` reads at once).

    Returns:
        `dict(shard_url, format, num_utterances, num_bytes, sha256)` describing the written file.
    """
    items = list(items)
    shard_extension(format)
    data = _parquet_bytes(items, rows_per_group) if format == "parquet" else _npz_bytes(items)
    storage.write_bytes_atomic(url, data)
    return {
        "shard_url": str(url),
        "format": format,
        "num_utterances": len(items),
        "num_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def _item(mixture_id, log_mag, target, weight) -> dict:
    return {"mixture_id": mixture_id, "log_mag": log_mag, "target": target, "weight": weight}


def _binary_views(column: pa.ChunkedArray) -> list[np.ndarray]:
    """Zero-copy uint8 views of each value of a binary column (valid while the table lives)."""
    array = column.combine_chunks()
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[array.offset : array.offset + len(array) + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    return [data[offsets[i] : offsets[i + 1]] for i in range(len(array))]


def _iter_parquet(url: str) -> Iterator[dict]:
    with storage.open_url(url, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        for group in range(parquet.num_row_groups):
            # One row group (a few utterances) in memory at a time.
            table = parquet.read_row_group(group)
            ids = table.column("mixture_id").to_pylist()
            frames = table.column("num_frames").to_pylist()
            bins = table.column("n_freq").to_pylist()
            log_mags = _binary_views(table.column("log_mag"))
            targets = _binary_views(table.column("target"))
            weights = _binary_views(table.column("weight"))
            for i, mixture_id in enumerate(ids):
                shape = (frames[i], bins[i])
                # Exactly one copy per array, so callers own writable arrays and the row group can go.
                yield _item(
                    mixture_id,
                    log_mags[i].view("<f4").reshape(shape).astype(np.float32, copy=True),
                    targets[i].reshape(shape).copy(),
                    weights[i].reshape(shape).astype(np.float32),
                )
            del table, log_mags, targets, weights


def _iter_npz(url: str) -> Iterator[dict]:
    with storage.open_url(url, "rb") as handle:
        with np.load(handle, allow_pickle=False) as data:
            ids = data["mixture_id"].tolist()
            offsets = data["offsets"]
            log_mag, target, weight = data["log_mag"], data["target"], data["weight"]
    for i, mixture_id in enumerate(ids):
        lo, hi = int(offsets[i]), int(offsets[i + 1])
        yield _item(mixture_id, log_mag[lo:hi].copy(), target[lo:hi].copy(), weight[lo:hi].astype(np.float32))


def iter_shard(url: str) -> Iterator[dict]:
    """Yield the utterances of one shard in the order they were written.

    Yields:
        `dict(mixture_id: str, log_mag (frames, freq) float32, target (frames, freq) uint8,
        weight (frames, freq) float32)`. Parquet shards are read one row group at a time.
    """
    fmt = _format_of(url)
    return _iter_parquet(url) if fmt == "parquet" else _iter_npz(url)


def iter_features(feature_manifest_url: str, split: str, shuffle: bool = False, seed: int = 0) -> Iterator[dict]:
    """Yield every utterance of a split from a feature manifest (as written by `extract_features`).

    Args:
        feature_manifest_url: `{out}/manifest.parquet` of a feature extraction.
        split: "tr", "cv" or "tt".
        shuffle: visit the split's shards in a random order (utterance order within a shard is kept;
            shards are the unit read from storage, so this keeps reads sequential).
        seed: seed for the shard order.
    """
    manifest = read_manifest(feature_manifest_url, "features")
    rows = manifest[(manifest["split"] == split) & (manifest["status"] == "done")]
    shard_urls = list(dict.fromkeys(rows["shard_url"].tolist()))  # unique, in manifest order
    if shuffle:
        order = np.random.default_rng(seed).permutation(len(shard_urls))
        shard_urls = [shard_urls[i] for i in order]
    for shard_url in shard_urls:
        yield from iter_shard(shard_url)
