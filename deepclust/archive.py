"""A separation job: every input of an input manifest separated into ``out``, resumable, locked, audited.

``deepclust separate``, ``deepclust separate-archive`` and the ``separate-archive`` Prefect flow all run
this job; the input is an audio file, a folder, an ``s3://`` prefix or a mixture manifest, made into an
input manifest first (``deepclust.separation.inputs``), and every batch goes through the one separation
loop (``deepclust.separation.batch.separate_items``). Layout of ``out`` (local folder or ``s3://`` prefix)::

    out/<relative path without extension>/s1.wav .. sK.wav   one folder per input, names sanitised
    out/manifest.parquet                                      one row per input (batch.MANIFEST_COLUMNS)
    out/.lock                                                 the writer's lock (deepclust.storage_lock)
    out/.partial/                                             local outputs being written (never on S3)

Guarantees:

- **Atomic outputs.** Each output is written under a temporary name and renamed into place (local), or
  written to a local temporary file and uploaded when finished (S3: one PUT, or a multipart upload,
  which S3 also makes visible only when complete). A manifest row is committed only after all of its
  input's outputs exist, and the manifest itself is replaced atomically after every batch: a crash loses
  at most the batch in flight.
- **Resumable.** An input is done when the manifest says ``done`` *and* its outputs exist, for the same
  number of speakers and the same input size; ``failed`` inputs are retried and new files are picked up.
  Temporary files of a killed run are removed when the next run takes the lock.
- **One writer per ``out``** (``deepclust.storage_lock.folder_lock``); the owner check before every
  manifest commit makes a run that lost its lock stop instead of committing.
- **Bad inputs** become ``failed`` rows whose ``error`` names the input and the reason; the run goes on.
  **Transient faults** (timeouts, throttling) are retried (``deepclust.transient.call_with_retries``).

S3 endpoints are configured the fsspec way: ``FSSPEC_S3_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from deepclust import storage
from deepclust.errors import BadAudioError
from deepclust.separation.batch import MANIFEST_COLUMNS, TIMING_COLUMNS, failed_row, separate_items
from deepclust.separation.inputs import MIXTURE_SPLITS, find_collisions, input_manifest, output_stem
from deepclust.separation.long import WindowConfig
from deepclust.storage_lock import folder_lock
from deepclust.transient import call_with_retries

MANIFEST_NAME = "manifest.parquet"
FILES_PER_BATCH = 8  # inputs per manifest commit (and per Prefect task)


def manifest_url(out_url: str) -> str:
    return storage.join(out_url, MANIFEST_NAME)


def read_manifest(out_url: str) -> pd.DataFrame:
    url = manifest_url(out_url)
    if not storage.exists(url):
        return pd.DataFrame(columns=MANIFEST_COLUMNS)
    return storage.read_parquet(url)


def _existing_outputs(out_url: str) -> set[str]:
    """Every object under ``out`` as a normalised path: one listing instead of a HEAD per output."""
    if not storage.exists(out_url):
        return set()
    return {storage.filesystem(u)[1] for u in storage.list_files(out_url)}


def _is_done(row, item: dict, existing: set[str]) -> bool:
    """The manifest row still stands for this input: done, all K outputs there, the input's size unchanged."""
    if row.status != "done" or not len(row.outputs) or len(row.outputs) != int(item["n_speakers"]):
        return False
    if not all(storage.filesystem(u)[1] in existing for u in row.outputs):
        return False
    recorded, size = getattr(row, "input_size", np.nan), item.get("input_size")
    return pd.isna(recorded) or size is None or pd.isna(size) or int(size) == int(recorded)


def plan_inputs(inputs: pd.DataFrame, out_url: str) -> tuple[list[dict], list[str]]:
    """Split an input manifest into ``(todo rows, already done relative paths)``.

    Inputs whose output folder collides with another input's are recorded as ``failed`` right away (their
    reason names the other input); an input already separated keeps its folder. Call under the lock.
    """
    manifest = read_manifest(out_url)
    existing = _existing_outputs(out_url)
    recorded = {row.relative_path: row for row in manifest.itertuples()}
    items = inputs.to_dict("records")
    finished = {item["relative_path"] for item in items
                if item["relative_path"] in recorded and _is_done(recorded[item["relative_path"]], item, existing)}
    collisions = find_collisions([item["relative_path"] for item in items], keep=finished)
    if collisions:
        by_rel = {item["relative_path"]: item for item in items}
        commit_manifest(out_url, [_collision_row(by_rel[rel], out_url, other) for rel, other in collisions.items()])
    todo = [item for item in items if item["relative_path"] not in finished and item["relative_path"] not in collisions]
    done = [item["relative_path"] for item in items
            if item["relative_path"] in finished and item["relative_path"] not in collisions]
    return todo, done


def plan_archive(input_url: str, out_url: str, n_speakers: int = 2,
                 splits: tuple[str, ...] | None = MIXTURE_SPLITS) -> tuple[list[dict], list[str]]:
    """``plan_inputs`` of the input manifest of ``input_url`` (a file, folder, prefix or mixture manifest)."""
    return plan_inputs(input_manifest(input_url, n_speakers, out_url, splits), out_url)


def _collision_row(item: dict, out_url: str, other: str) -> dict:
    folder = storage.join(out_url, output_stem(item["relative_path"]))
    error = str(BadAudioError(item["input"], f"its output folder {folder} is already used by {other}; "
                                             "rename one of them"))
    return failed_row(item, error)


def commit_manifest(out_url: str, rows: list[dict]) -> pd.DataFrame:
    """Merge ``rows`` into ``out/manifest.parquet`` (one row per relative path, newest wins), atomically.

    Call it only after the rows' outputs exist, and under the lock (read-modify-write).
    """
    manifest = read_manifest(out_url)
    if rows:
        new = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
        old = manifest.reindex(columns=MANIFEST_COLUMNS)  # a manifest of an older version lacks new columns
        manifest = new if manifest.empty else pd.concat([old, new], ignore_index=True)
        manifest = manifest.drop_duplicates("relative_path", keep="last")
    manifest = manifest.sort_values("relative_path").reset_index(drop=True)
    storage.makedirs(out_url)
    storage.write_parquet(manifest, manifest_url(out_url))
    return manifest


def batches_of(items: list, size: int) -> list[list]:
    return [items[first:first + size] for first in range(0, len(items), max(1, int(size)))]


def separate_archive(model_url_or_separator, input_url: str, out_url: str, n_speakers: int = 2,
                     files_per_batch: int = FILES_PER_BATCH, window: WindowConfig = WindowConfig(),
                     device: str = "auto", stale_minutes: float = 10.0, progress=None, kmeans: str = "auto",
                     inference: str = "auto", splits: tuple[str, ...] | None = MIXTURE_SPLITS) -> dict:
    """Separate every input of ``input_url`` (an audio file, a folder, an ``s3://`` prefix or a mixture
    manifest) into ``out_url`` (local or ``s3://``); resumable. Batches are committed as they finish.

    ``splits``: which splits of a mixture manifest (None = all). ``progress(done, total)`` is called after
    each batch. Returns ``summarise``'s summary.
    """
    from deepclust.separation.separator import Separator

    began = time.perf_counter()
    separator = (model_url_or_separator if hasattr(model_url_or_separator, "embed_batch")
                 else Separator(model_url_or_separator, device=device, kmeans=kmeans, inference=inference))
    rows: list[dict] = []
    with folder_lock(out_url, stale_minutes=stale_minutes) as lock:
        todo, already_done = plan_inputs(input_manifest(input_url, n_speakers, out_url, splits), out_url)
        for batch in batches_of(todo, files_per_batch):
            batch_rows = call_with_retries(lambda: separate_items(separator, batch, out_url, window),
                                         what=f"batch of {len(batch)} inputs from {batch[0]['relative_path']}")
            lock.check()
            commit_manifest(out_url, batch_rows)
            rows.extend(batch_rows)
            if progress:
                progress(len(rows), len(todo))
        if not todo:
            commit_manifest(out_url, [])  # a manifest exists even for an empty archive
        manifest = read_manifest(out_url)
    return summarise(manifest, rows, already_done, out_url, time.perf_counter() - began)


def summarise(manifest: pd.DataFrame, rows: list[dict], already_done: list[str], out_url: str,
              seconds: float) -> dict:
    """The run's summary from the final manifest and this run's rows."""
    failed = manifest[manifest["status"] == "failed"]
    done_now = [r for r in rows if r["status"] == "done"]
    audio = float(sum(r["duration"] for r in done_now))
    timing = {c: float(sum(r[c] for r in rows)) for c in TIMING_COLUMNS}
    message = f"completed with {len(failed)} failed inputs" if len(failed) else "completed"
    return {"inputs": int(len(manifest)), "already_done": len(already_done), "separated": len(done_now),
            "done": int((manifest["status"] == "done").sum()), "failed": int(len(failed)),
            "failed_inputs": [(r.relative_path, r.error) for r in failed.itertuples()],
            "audio_seconds": audio, "seconds": seconds, "real_time_factor": audio / seconds if seconds > 0 else 0.0,
            **timing, "manifest_url": storage.absolute(manifest_url(out_url)), "message": message}
