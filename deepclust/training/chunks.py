"""Fixed-length chunks of utterance features, and a streaming, memory-bounded batch sampler.

An item is a dict ``mixture_id, log_mag (frames, freq) float32, target (frames, freq) uint8,
weight (frames, freq) float32`` as yielded by ``deepclust.features.shards.iter_features``. A chunk has the
same keys with ``frames == chunk_frames``; utterances shorter than a chunk are padded with weight 0, so
padding never enters the loss. Chunks whose weights are all zero carry no information and are dropped.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

import numpy as np
import torch

# A training set: either a re-iterable (list of items) or a function seed -> items, which lets a
# streaming reader shuffle its shard order differently in every epoch.
ItemSource = Iterable[dict] | Callable[[int], Iterable[dict]]


def iterate_source(source: ItemSource, seed: int) -> Iterable[dict]:
    """The items of one pass over a training set: ``source(seed)`` for a function, else ``source`` itself."""
    return source(seed) if callable(source) else source


def _pad_frames(array: np.ndarray, frames: int) -> np.ndarray:
    missing = frames - array.shape[0]
    if missing <= 0:
        return array
    return np.concatenate([array, np.zeros((missing, *array.shape[1:]), dtype=array.dtype)])


def _chunk(item: dict, start: int, chunk_frames: int) -> dict | None:
    stop = start + chunk_frames
    weight = _pad_frames(item["weight"][start:stop], chunk_frames)
    if not weight.any():
        return None
    return {
        "mixture_id": item.get("mixture_id"),
        "log_mag": _pad_frames(item["log_mag"][start:stop], chunk_frames),
        "target": _pad_frames(item["target"][start:stop], chunk_frames),
        "weight": weight,
    }


def random_chunks(item: dict, chunk_frames: int, rng: np.random.Generator) -> list[dict]:
    """Cut one utterance into ``frames // chunk_frames`` non-overlapping chunks at a random offset.

    The random offset moves the chunk boundaries every epoch, so every frame is seen at many positions
    within a chunk; an utterance shorter than a chunk gives one zero-weight-padded chunk.
    """
    frames = item["log_mag"].shape[0]
    count = max(1, frames // chunk_frames)
    offset = int(rng.integers(0, max(0, frames - count * chunk_frames) + 1))
    chunks = (_chunk(item, offset + k * chunk_frames, chunk_frames) for k in range(count))
    return [c for c in chunks if c is not None]


def sequential_chunks(item: dict, chunk_frames: int) -> list[dict]:
    """Deterministic chunks covering the whole utterance (the last one padded): for validation."""
    frames = item["log_mag"].shape[0]
    chunks = (_chunk(item, start, chunk_frames) for start in range(0, max(frames, 1), chunk_frames))
    return [c for c in chunks if c is not None]


def shuffle_buffered(items: Iterable, buffer_size: int, rng: np.random.Generator) -> Iterator:
    """Approximate shuffle of a stream holding at most ``buffer_size`` elements (exact when it all fits)."""
    buffer = []
    for element in items:
        if len(buffer) < buffer_size:
            buffer.append(element)
            continue
        index = int(rng.integers(0, buffer_size))
        yield buffer[index]
        buffer[index] = element
    for index in rng.permutation(len(buffer)):
        yield buffer[index]


def collate(chunks: list[dict]) -> dict[str, torch.Tensor]:
    """Chunks -> ``log_mag (batch, frames, freq)`` float32, ``target`` int64, ``weight`` float32."""
    return {
        "log_mag": torch.from_numpy(np.stack([c["log_mag"] for c in chunks]).astype(np.float32, copy=False)),
        "target": torch.from_numpy(np.stack([c["target"] for c in chunks]).astype(np.int64)),
        "weight": torch.from_numpy(np.stack([c["weight"] for c in chunks]).astype(np.float32, copy=False)),
    }


def _batched(chunks: Iterable[dict], batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    batch = []
    for chunk in chunks:
        batch.append(chunk)
        if len(batch) == batch_size:
            yield collate(batch)
            batch = []
    if batch:
        yield collate(batch)


def normalised(items: Iterable[dict], feature_stats) -> Iterator[dict]:
    """Apply the training set's per-bin mean/std (``FeatureStats.apply``) to each item's log_mag."""
    for item in items:
        log_mag = item["log_mag"] if feature_stats is None else feature_stats.apply(item["log_mag"])
        yield {**item, "log_mag": log_mag}


def training_batches(
    source: ItemSource,
    feature_stats,
    chunk_frames: int,
    batch_size: int,
    seed_sequence: list[int],
    steps: int | None = None,
    shuffle_buffer: int = 1024,
) -> Iterator[dict[str, torch.Tensor]]:
    """Shuffled batches of random chunks for one epoch.

    All randomness comes from ``seed_sequence`` (e.g. ``[seed, epoch]``), so an epoch is reproducible
    from its number alone and resuming needs no sampler state. ``steps=None`` makes one pass over the
    source; otherwise passes are repeated (each with fresh randomness) until ``steps`` batches were made.
    """
    made = 0
    for pass_index in range(1 << 30):
        rng = np.random.default_rng([*seed_sequence, pass_index])
        items = normalised(iterate_source(source, int(rng.integers(0, 2**31 - 1))), feature_stats)
        chunks = (chunk for item in items for chunk in random_chunks(item, chunk_frames, rng))
        made_this_pass = 0
        for batch in _batched(shuffle_buffered(chunks, shuffle_buffer, rng), batch_size):
            yield batch
            made += 1
            made_this_pass += 1
            if steps is not None and made >= steps:
                return
        if steps is None:
            return
        if made_this_pass == 0:
            raise ValueError("the training set yields no chunk with a non-zero weight")


def validation_batches(items: Iterable[dict], feature_stats, chunk_frames: int, batch_size: int) -> Iterator[dict]:
    """The same batches every time: sequential chunks in the source's order."""
    chunks = (chunk for item in normalised(items, feature_stats) for chunk in sequential_chunks(item, chunk_frames))
    return _batched(chunks, batch_size)
