"""What a separation job separates, as an input manifest (the lhotse way: list first, then process).

Every way into separation (one audio file, a folder, an ``s3://`` prefix, a mixture manifest of the
recipe) becomes the same table first, one row per input (``INPUT_COLUMNS``):

- ``relative_path``: the input's key within the job, unique: its path below the input root (folders,
  prefixes), its file name (one file), or ``<split>/<mixture_id>.wav`` (mixture manifests). Its output
  folder is ``out/<output_stem(relative_path)>/``.
- ``input``: the URL that is read; ``input_size``: its size in bytes when listed (a replaced file
  usually changes size; None when unknown).
- ``n_speakers``: how many sources to separate it into; ``mixture_id``: the recipe's id ("" otherwise),
  so that the separation manifest can be passed to evaluation.

The separation loop (``deepclust.separation.batch``) and the job (``deepclust.archive``) never look at
where the rows came from.
"""

from __future__ import annotations

import os
import re
from pathlib import PurePosixPath

import pandas as pd

from deepclust import storage
from deepclust.audio import AUDIO_EXTENSIONS

INPUT_COLUMNS = ["relative_path", "input", "input_size", "n_speakers", "mixture_id"]
# A mixture manifest's splits separated unless asked otherwise: the test sets, what one evaluates.
MIXTURE_SPLITS = ("tt",)
# Output stems that would collide with a job's own bookkeeping in ``out``.
RESERVED_STEMS = {"manifest.parquet", "lock", "partial"}


def safe_relative_stem(input_url: str, input_root: str) -> str:
    """The input's path relative to the root, without extension, made safe to use below ``out``.

    ``..``, absolute parts and odd characters can never make an output land outside ``out``.
    """
    root = str(input_root).rstrip("/")
    rel = str(input_url)[len(root):].lstrip("/\\") if str(input_url).startswith(root) else PurePosixPath(str(input_url)).name
    parts = []
    for part in re.split(r"[\\/]+", rel):
        part = re.sub(r"[^\w.\-]+", "_", part).strip(".")
        if part and part not in (".", ".."):
            parts.append(part)
    if not parts:
        parts = ["input"]
    parts[-1] = parts[-1].rsplit(".", 1)[0] if "." in parts[-1] else parts[-1]
    return "/".join(p for p in parts if p) or "input"


def output_stem(relative_path: str) -> str:
    """``a/b c/x.flac`` -> ``a/b_c/x``: the input's output folder below ``out``, never outside it."""
    return safe_relative_stem(relative_path, "")


def output_urls(out_url: str, relative_path: str, n_speakers: int) -> list[str]:
    stem = output_stem(relative_path)
    return [storage.join(out_url, stem, f"s{k}.wav") for k in range(1, int(n_speakers) + 1)]


def _relative(url: str, root: str) -> str:
    _, root_path = storage.filesystem(root)
    _, path = storage.filesystem(url)
    return path[len(root_path.rstrip("/")):].lstrip("/").replace(os.sep, "/")


def inside(url: str, folder: str) -> bool:
    """Whether ``url`` is ``folder`` or lies below it."""
    _, path = storage.filesystem(url)
    _, root = storage.filesystem(folder)
    return path == root or path.startswith(root.rstrip("/") + "/")


def list_archive(input_url: str) -> list[str]:
    """Relative paths (``/``-separated, sorted) of the audio files under a folder or prefix."""
    fs, path = storage.filesystem(input_url)
    if not fs.exists(path):
        raise FileNotFoundError(f"{input_url}: no such folder or prefix")
    if fs.isfile(path):
        raise NotADirectoryError(f"{input_url}: give the folder (or prefix) that holds the archive")
    return sorted(_relative(url, input_url) for url in storage.list_files(input_url, AUDIO_EXTENSIONS))


def input_sizes(input_url: str) -> dict[str, int]:
    """``{relative path: size in bytes}`` of every file under a folder or prefix, from one listing."""
    fs, root = storage.filesystem(input_url)
    prefix = root.rstrip("/") + "/"
    if storage.is_local(input_url):  # follows symlinked folders, as the listing does
        return {path[len(prefix):]: os.path.getsize(path) for path in storage.walk_local_files(root)
                if path.startswith(prefix)}
    return {path[len(prefix):]: int(info.get("size") or 0)
            for path, info in fs.find(root, detail=True).items() if path.startswith(prefix)}


def is_mixture_manifest(url: str) -> bool:
    """A ``.parquet`` file with the mixture manifest's columns (``deepclust mix``'s output)."""
    if not str(url).endswith(".parquet") or not storage.exists(url):
        return False
    import pyarrow.parquet as pq

    with storage.open_url(url) as handle:
        names = set(pq.read_schema(handle).names)
    return {"mixture_id", "mixture_path", "num_speakers"} <= names


def inputs_from_files(input_url: str, n_speakers: int, out_url: str | None = None) -> pd.DataFrame:
    """A folder or prefix (every audio file below it; files under ``out`` when it lies inside are not
    inputs), or a single audio file."""
    fs, path = storage.filesystem(input_url)
    if fs.isfile(path):
        root = storage.parent(str(input_url))
        rel = _relative(str(input_url), root)
        rows = [{"relative_path": rel, "input": storage.absolute(str(input_url)),
                 "input_size": int(fs.size(path) or 0), "n_speakers": int(n_speakers), "mixture_id": ""}]
        return pd.DataFrame(rows, columns=INPUT_COLUMNS)
    listed = list_archive(input_url)
    if out_url is not None:
        listed = [rel for rel in listed if not inside(storage.join(input_url, rel), out_url)]
    sizes = input_sizes(input_url)
    rows = [{"relative_path": rel, "input": storage.absolute(storage.join(input_url, rel)),
             "input_size": sizes.get(rel), "n_speakers": int(n_speakers), "mixture_id": ""} for rel in listed]
    return pd.DataFrame(rows, columns=INPUT_COLUMNS)


def inputs_from_mixtures(manifest: pd.DataFrame | str, splits: tuple[str, ...] | None = None) -> pd.DataFrame:
    """The mixtures of a mixture manifest (those made without error, of ``splits`` when given), each to be
    separated into its own number of speakers; outputs go to ``out/<split>/<mixture_id>/``."""
    mixtures = storage.read_parquet(manifest) if isinstance(manifest, str) else manifest
    if splits is not None:
        mixtures = mixtures[mixtures["split"].isin(splits)]
    if "status" in mixtures:
        mixtures = mixtures[mixtures["status"] == "done"]
    rows = [{"relative_path": f"{row.split}/{row.mixture_id}.wav", "input": storage.absolute(row.mixture_path),
             "input_size": None, "n_speakers": int(row.num_speakers), "mixture_id": row.mixture_id}
            for row in mixtures.itertuples()]
    return pd.DataFrame(rows, columns=INPUT_COLUMNS)


def input_manifest(input_url: str, n_speakers: int = 2, out_url: str | None = None,
                   splits: tuple[str, ...] | None = MIXTURE_SPLITS) -> pd.DataFrame:
    """The input manifest of whatever ``input_url`` names: a mixture manifest (its ``splits``; None = all),
    an audio file, or a folder or prefix of them. ``n_speakers`` applies to audio files (a mixture knows
    its own count)."""
    if is_mixture_manifest(input_url):
        return inputs_from_mixtures(input_url, splits)
    fs, path = storage.filesystem(input_url)
    if not fs.exists(path):
        raise FileNotFoundError(f"{input_url}: no such file, folder or prefix")
    return inputs_from_files(input_url, n_speakers, out_url)


def find_collisions(relative_paths: list[str], keep: set[str] = frozenset()) -> dict[str, str]:
    """Inputs whose output folder is already taken by another input (``a.wav`` and ``a.flac``).

    Returns ``{input: the input that keeps the folder}``. An input in ``keep`` (already separated) keeps
    its folder; otherwise the first in sorted order does. A stem reserved for the job's bookkeeping
    (``manifest.parquet``) is never given out.
    """
    owners: dict[str, str] = {stem: "(reserved for the job's manifest)" for stem in RESERVED_STEMS}
    collisions = {}
    for rel in sorted(relative_paths, key=lambda r: (r not in keep, r)):
        stem = output_stem(rel)
        if stem in owners:
            collisions[rel] = owners[stem]
        else:
            owners[stem] = rel
    return collisions
