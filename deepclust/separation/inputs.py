"""What a separation job separates, as an input manifest (the lhotse way: list first, then process).

Every way into separation (one audio file, a folder, an ``s3://`` prefix, a mixture manifest of the
recipe) becomes the same table first, one row per input (``INPUT_COLUMNS``):

- ``relative_path``: the input's key within the job, unique: its path below the input root (folders,
  prefixes), its file name (one file), or ``<split>/<mixture_id>.wav`` (mixture manifests). Its output
  folder is ``out/<output_stem(relative_path)>/``.
- ``input``: the URL that is read; ``input_id``: its content identity from the listing: ``sha256:<hex>`` for a
  mixture (the manifest records it), the object's ETag on S3, else ``<size>:<mtime in ns>`` (an edited or
  replaced file changes it; hashing every byte of a large archive on each run would cost as much as reading it).
- ``n_speakers``: how many sources to separate it into; ``mixture_id``: the recipe's id ("" otherwise),
  so that the separation manifest can be passed to evaluation.

The separation loop (``deepclust.separation.batch``) and the job (``deepclust.archive``) never look at
where the rows came from.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from pathlib import PurePosixPath

import pandas as pd

from deepclust import storage
from deepclust.audio import AUDIO_EXTENSIONS
from deepclust.storage.manifests import MANIFEST_NAME, read_manifest, validate

INPUT_COLUMNS = ["relative_path", "input", "input_id", "n_speakers", "mixture_id"]
# A mixture manifest's splits separated unless asked otherwise: the test sets, what one evaluates.
MIXTURE_SPLITS = ("tt",)
# Output stems that would collide with a job's own bookkeeping in ``out``.
RESERVED_STEMS = {MANIFEST_NAME, "lock", "partial"}


def safe_relative_stem(input_url: str, input_root: str) -> str:
    """The input's path relative to the root, without extension, made safe to use below ``out``.

    ``..``, absolute parts and odd characters can never make an output land outside ``out``.
    """
    root = str(input_root).rstrip("/")
    rel = (
        str(input_url)[len(root) :].lstrip("/\\")
        if str(input_url).startswith(root)
        else PurePosixPath(str(input_url)).name
    )
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


def output_names(stem: str, n_speakers: int) -> list[str]:
    """``<stem>/s1.wav .. <stem>/sK.wav``: outputs relative to the output root (as manifests record them)."""
    return [f"{stem}/s{k}.wav" for k in range(1, int(n_speakers) + 1)]


def resolve_outputs(out_url: str, outputs) -> list[str]:
    """Manifest outputs as URLs: relative ones below ``out_url`` (absolute ones, of older manifests, as they are)."""
    return [o if "://" in o or o.startswith("/") else storage.join(out_url, o) for o in outputs]


def relative_to(url: str, root: str) -> str:
    """``url``'s path below ``root`` (``/``-separated), compared as the filesystem names them."""
    _, root_path = storage.filesystem(root)
    _, path = storage.filesystem(url)
    return path[len(root_path.rstrip("/")) :].lstrip("/").replace(os.sep, "/")


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
    return sorted(relative_to(url, input_url) for url in storage.list_files(input_url, AUDIO_EXTENSIONS))


def is_mixture_manifest(url: str) -> bool:
    """A ``.parquet`` file with the mixture manifest's columns (``deepclust mixtures``'s output)."""
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
        rel = relative_to(str(input_url), root)
        rows = [
            {
                "relative_path": rel,
                "input": storage.absolute(str(input_url)),
                "input_id": storage.file_identity(str(input_url)),
                "n_speakers": int(n_speakers),
                "mixture_id": "",
            }
        ]
        return pd.DataFrame(rows, columns=INPUT_COLUMNS)
    listed = list_archive(input_url)
    if out_url is not None:
        listed = [rel for rel in listed if not inside(storage.join(input_url, rel), out_url)]
    identities = storage.content_identities(input_url)
    rows = [
        {
            "relative_path": rel,
            "input": storage.absolute(storage.join(input_url, rel)),
            "input_id": identities.get(rel, ""),
            "n_speakers": int(n_speakers),
            "mixture_id": "",
        }
        for rel in listed
    ]
    return pd.DataFrame(rows, columns=INPUT_COLUMNS)


def inputs_from_mixtures(manifest: pd.DataFrame | str, splits: tuple[str, ...] | None = None) -> pd.DataFrame:
    """The mixtures of a mixture manifest (those made without error, of ``splits`` when given), each to be
    separated into its own number of speakers; outputs go to ``out/<split>/<mixture_id>/``.

    The manifest is validated as the ``mixture`` schema (``deepclust.storage.manifests``), so ``status`` is always
    there; ``sha256`` is optional in that schema (only the mixtures stage adds it): without it, the input's identity
    is its file's."""
    mixtures = (
        read_manifest(manifest, "mixtures")
        if isinstance(manifest, str)
        else validate(manifest, "mixtures", "the mixture manifest")
    )
    if splits is not None:
        mixtures = mixtures[mixtures["split"].isin(splits)]
    mixtures = mixtures[mixtures["status"] == "done"]
    hashes = mixtures["sha256"] if "sha256" in mixtures else [""] * len(mixtures)
    rows = [
        {
            "relative_path": f"{row.split}/{row.mixture_id}.wav",
            "input": storage.absolute(row.mixture_path),
            "input_id": f"sha256:{digest}" if digest else storage.file_identity(row.mixture_path),
            "n_speakers": int(row.num_speakers),
            "mixture_id": row.mixture_id,
        }
        for row, digest in zip(mixtures.itertuples(), hashes)
    ]
    return pd.DataFrame(rows, columns=INPUT_COLUMNS)


def input_manifest(
    input_url: str, n_speakers: int = 2, out_url: str | None = None, splits: tuple[str, ...] | None = MIXTURE_SPLITS
) -> pd.DataFrame:
    """The input manifest of whatever ``input_url`` names: a mixture manifest (its ``splits``; None = all),
    an audio file, or a folder or prefix of them. ``n_speakers`` applies to audio files (a mixture knows
    its own count)."""
    if is_mixture_manifest(input_url):
        return inputs_from_mixtures(input_url, splits)
    require_input(input_url)
    return inputs_from_files(input_url, n_speakers, out_url)


def require_input(input_url: str) -> None:
    """Raise ``FileNotFoundError`` naming ``input_url`` when no file, folder or prefix is there."""
    fs, path = storage.filesystem(input_url)
    if not fs.exists(path):
        raise FileNotFoundError(f"{input_url}: no such file, folder or prefix")


def _clash_key(stem: str) -> str:
    """Two stems that may name one folder: equal after Unicode NFC and case folding (macOS, Windows)."""
    return unicodedata.normalize("NFC", stem).casefold()


def _with_extension(relative_path: str) -> str:
    """``a/b.flac`` -> ``a/b_flac``: the sanitised path with its extension kept (for stems that clash); joined by
    ``_``, because a folder named ``b.flac`` would look like an audio file to every ``*.flac`` glob."""
    stem = output_stem(relative_path)
    suffix = re.sub(r"[^\w\-]+", "_", PurePosixPath(relative_path).suffix.lstrip("."))
    return f"{stem}_{suffix}" if suffix else stem


def _hashed(relative_path: str, stem: str) -> str:
    return f"{stem}-{hashlib.sha256(relative_path.encode()).hexdigest()[:8]}"


def assign_output_stems(relative_paths: list[str], kept: dict[str, str] | None = None) -> dict[str, str]:
    """One output folder per input, never shared: ``{relative path: stem below out}``.

    An input keeps the stem it already has (``kept``: recorded by an earlier run), so outputs never move.
    Others get their sanitised path without extension (``a/b c/x.flac`` -> ``a/b_c/x``) unless that clashes
    with another input's folder (``a.wav`` and ``a.flac``, ``p q.wav`` and ``p_q.wav``, NFC/NFD or case
    variants), with a folder holding other inputs' folders (``x.wav`` and ``x/y.wav``) or with the job's own
    files (``manifest.parquet.wav``); then the extension is kept (``a_flac``), and if that clashes too, a hash of
    the relative path is appended (``p_q-1a2b3c4d``). Deterministic: the same listing gives the same stems.
    """
    kept = {rel: stem for rel, stem in (kept or {}).items() if rel in set(relative_paths) and stem}
    taken = {_clash_key(stem) for stem in RESERVED_STEMS}
    folders: set[str] = set()  # every parent folder of an assigned stem

    def free(stem: str) -> bool:
        key = _clash_key(stem)
        return (
            key not in taken
            and key not in folders
            and not any(_clash_key(parent) in taken for parent in _parents(stem))
        )

    def take(rel: str, stem: str) -> None:
        taken.add(_clash_key(stem))
        folders.update(_clash_key(parent) for parent in _parents(stem))
        stems[rel] = stem

    stems: dict[str, str] = {}
    for rel, stem in sorted(kept.items()):
        take(rel, stem)
    # Files first whose plain stem is wanted as a folder by others get the extension: decided before assigning.
    wanted_folders = {_clash_key(parent) for rel in relative_paths for parent in _parents(output_stem(rel))}
    for rel in sorted(r for r in relative_paths if r not in stems):
        plain = output_stem(rel)
        for stem in (plain, _with_extension(rel), _hashed(rel, plain)):
            if free(stem) and (stem != plain or _clash_key(plain) not in wanted_folders):
                take(rel, stem)
                break
        else:
            take(rel, _hashed(rel, _with_extension(rel)))
    return stems


def _parents(stem: str) -> list[str]:
    parts = stem.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]
