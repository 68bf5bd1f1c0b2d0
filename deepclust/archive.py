"""Batch separation of an audio archive (a local folder or an ``s3://`` prefix): resumable, locked, audited.

Layout of ``out`` (local folder or ``s3://`` prefix)::

    out/<relative path without extension>/s1.wav .. sK.wav   one folder per input, names sanitised
    out/manifest.parquet                                      one row per input (MANIFEST_COLUMNS)
    out/.lock                                                 JSON {owner, host, pid, acquired, heartbeat}
    out/.partial/                                             local outputs being written (never on S3)

Guarantees:

- **Atomic outputs.** Each output is written under a temporary name and renamed into place (local), or
  written to a local temporary file and uploaded when finished (S3: one PUT, or a multipart upload,
  which S3 also makes visible only when complete). A manifest row is committed only after all of its
  input's outputs exist, and the manifest itself is replaced atomically.
- **Resumable.** An input is done when the manifest says ``done`` *and* its outputs exist; ``failed``
  inputs are retried and new files are picked up. Temporary files of a killed run are removed when the
  next run takes the lock.
- **One writer per ``out``.** ``archive_lock`` holds ``out/.lock`` with a heartbeat (rewritten every
  ``heartbeat_seconds``); another run refuses to start while it is fresh. A lock whose heartbeat is
  older than ``stale_minutes`` (default 10) is taken over (its owner is presumed dead), and so is a
  lock left by a process of this host that no longer exists (a killed run). Object stores have no
  compare-and-swap on SeaweedFS/MinIO, so taking the lock is write-then-verify after a short pause: two
  runs starting within that pause could both believe they won; the owner check before every manifest
  commit makes the loser stop instead of committing.
- **Bad inputs** (corrupt, truncated, empty, all-silent, non-finite, not audio, unreadable objects)
  become ``failed`` rows whose ``error`` names the input and the reason; the run goes on.

S3 endpoints are configured the fsspec way: ``FSSPEC_S3_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd

from deepclust import storage
from deepclust.audio import AUDIO_EXTENSIONS
from deepclust.errors import BadAudioError
from deepclust.transient import is_transient
from deepclust.separate_files import safe_relative_stem
from deepclust.separation.long import (BlockReader, TrackWriter, WindowConfig, separate_long,
                                       separate_window_batch)

MANIFEST_NAME = "manifest.parquet"
LOCK_NAME = ".lock"
PARTIAL_NAME = ".partial"
TIMING_COLUMNS = ["read_seconds", "network_seconds", "clustering_seconds", "write_seconds"]
MANIFEST_COLUMNS = ["input", "relative_path", "status", "error", "duration", "sample_rate", "channels",
                    "output_sample_rate", "windows", "outputs", "input_size", "seconds", *TIMING_COLUMNS]
# Output stems that would collide with the archive's own bookkeeping in ``out``.
RESERVED_STEMS = {"manifest.parquet", "lock", "partial"}


# -- listing and planning ---------------------------------------------------------------------------


def _relative(url: str, root: str) -> str:
    _, root_path = storage.filesystem(root)
    _, path = storage.filesystem(url)
    return path[len(root_path.rstrip("/")):].lstrip("/").replace(os.sep, "/")


def list_archive(input_url: str) -> list[str]:
    """Relative paths (``/``-separated, sorted) of the audio files under a folder or prefix."""
    fs, path = storage.filesystem(input_url)
    if not fs.exists(path):
        raise FileNotFoundError(f"{input_url}: no such folder or prefix")
    if fs.isfile(path):
        raise NotADirectoryError(f"{input_url}: give the folder (or prefix) that holds the archive")
    return sorted(_relative(url, input_url) for url in storage.list_files(input_url, AUDIO_EXTENSIONS))


def output_stem(relative_path: str) -> str:
    """``a/b c/x.flac`` -> ``a/b_c/x``: the input's output folder below ``out``, never outside it."""
    return safe_relative_stem(relative_path, "")


def output_urls(out_url: str, relative_path: str, n_speakers: int) -> list[str]:
    stem = output_stem(relative_path)
    return [storage.join(out_url, stem, f"s{k}.wav") for k in range(1, int(n_speakers) + 1)]


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


def _inside(url: str, folder: str) -> bool:
    _, path = storage.filesystem(url)
    _, root = storage.filesystem(folder)
    return path == root or path.startswith(root.rstrip("/") + "/")


def find_collisions(relative_paths: list[str], keep: set[str] = frozenset()) -> dict[str, str]:
    """Inputs whose output folder is already taken by another input (``a.wav`` and ``a.flac``).

    Returns ``{input: the input that keeps the folder}``. An input in ``keep`` (already separated) keeps
    its folder; otherwise the first in sorted order does. A stem reserved for the archive's bookkeeping
    (``manifest.parquet``) is never given out.
    """
    owners: dict[str, str] = {stem: "(reserved for the archive's manifest)" for stem in RESERVED_STEMS}
    collisions = {}
    for rel in sorted(relative_paths, key=lambda r: (r not in keep, r)):
        stem = output_stem(rel)
        if stem in owners:
            collisions[rel] = owners[stem]
        else:
            owners[stem] = rel
    return collisions


def _input_sizes(input_url: str) -> dict[str, int]:
    """``{relative path: size in bytes}`` from one listing (a replaced input usually changes size)."""
    fs, root = storage.filesystem(input_url)
    prefix = root.rstrip("/") + "/"
    if storage.is_local(input_url):  # follows symlinked folders, as the listing does
        return {path[len(prefix):]: os.path.getsize(path) for path in storage.walk_local_files(root)
                if path.startswith(prefix)}
    return {path[len(prefix):]: int(info.get("size") or 0)
            for path, info in fs.find(root, detail=True).items() if path.startswith(prefix)}


def plan_archive(input_url: str, out_url: str, n_speakers: int | None = None) -> tuple[list[str], list[str]]:
    """Split the archive into ``(todo, already_done)`` relative paths.

    Done = the manifest says ``done``, its row has ``n_speakers`` outputs (when given) that all exist, and
    the input still has the size it had when separated. ``failed`` inputs, new and replaced files are in
    ``todo``. Files under ``out`` (when ``out`` lies inside the input folder) are not inputs. Inputs whose
    output folder collides with another input's are recorded as ``failed`` right away (their reason names
    the other file); an input already separated keeps its folder. Call this under ``archive_lock``.
    """
    listed = [rel for rel in list_archive(input_url) if not _inside(storage.join(input_url, rel), out_url)]
    manifest = read_manifest(out_url)
    existing = _existing_outputs(out_url)
    sizes = _input_sizes(input_url)
    done_rows = manifest[manifest["status"] == "done"]
    finished = {row.relative_path for row in done_rows.itertuples()
                if len(row.outputs) and all(storage.filesystem(u)[1] in existing for u in row.outputs)
                and (n_speakers is None or len(row.outputs) == int(n_speakers))
                and (pd.isna(getattr(row, "input_size", np.nan)) or sizes.get(row.relative_path) == row.input_size)}
    collisions = find_collisions(listed, keep=finished)
    if collisions:
        commit_manifest(out_url, [_collision_row(input_url, out_url, rel, other) for rel, other in collisions.items()])
    todo = [rel for rel in listed if rel not in finished and rel not in collisions]
    already_done = [rel for rel in listed if rel in finished and rel not in collisions]
    return todo, already_done


def _collision_row(input_url, out_url, rel, other) -> dict:
    folder = storage.join(out_url, output_stem(rel))
    error = str(BadAudioError(storage.join(input_url, rel),
                              f"its output folder {folder} is already used by {other}; rename one of them"))
    return _failed_row(input_url, rel, error, 0.0)


# -- manifest ---------------------------------------------------------------------------------------


def commit_manifest(out_url: str, rows: list[dict]) -> pd.DataFrame:
    """Merge ``rows`` into ``out/manifest.parquet`` (one row per relative path, newest wins), atomically.

    Call it only after the rows' outputs exist, and under ``archive_lock`` (read-modify-write).
    """
    manifest = read_manifest(out_url)
    if rows:
        new = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
        manifest = new if manifest.empty else pd.concat([manifest[MANIFEST_COLUMNS], new], ignore_index=True)
        manifest = manifest.drop_duplicates("relative_path", keep="last")
    manifest = manifest.sort_values("relative_path").reset_index(drop=True)
    storage.makedirs(out_url)
    storage.write_parquet(manifest, manifest_url(out_url))
    return manifest


def _failed_row(input_url: str, rel: str, error: str, seconds: float) -> dict:
    """``input_url`` is the archive root; the row names the file."""
    return {"input": storage.absolute(storage.join(input_url, rel)), "relative_path": rel, "status": "failed",
            "error": error, "duration": np.nan, "sample_rate": np.nan, "channels": np.nan,
            "output_sample_rate": np.nan, "windows": 0, "outputs": [], "input_size": np.nan, "seconds": seconds,
            **{c: 0.0 for c in TIMING_COLUMNS}}


def _size_of(url: str) -> int:
    fs, path = storage.filesystem(url)
    return int(fs.size(path) or 0)


def _done_row(file_url: str, rel: str, info: dict, outputs: list[str], seconds: float) -> dict:
    return {"input": storage.absolute(file_url), "relative_path": rel, "status": "done",
            "error": "", "duration": float(info["duration"]), "sample_rate": int(info["sample_rate"]),
            "channels": int(info["channels"]), "output_sample_rate": int(info["output_sample_rate"]),
            "windows": int(info["windows"]), "outputs": [storage.absolute(u) for u in outputs],
            "input_size": _size_of(file_url), "seconds": seconds, **{c: float(info.get(c, 0.0)) for c in TIMING_COLUMNS}}


# -- the lock ---------------------------------------------------------------------------------------


class LockBusyError(RuntimeError):
    """Another live run holds ``out/.lock``."""


class LockLostError(RuntimeError):
    """Our lock was taken over (our heartbeat went stale); stop before committing anything."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ArchiveLock:
    """``out/.lock``: one run writes into ``out`` at a time (see the module docstring).

    Args:
        out_url: the output folder or prefix.
        stale_minutes: a lock whose heartbeat is older than this is taken over.
        heartbeat_seconds: how often the holder rewrites its heartbeat (in a daemon thread).
        settle_seconds: pause between writing the lock and reading it back to confirm ownership.
    """

    def __init__(self, out_url: str, stale_minutes: float = 10.0, heartbeat_seconds: float = 30.0,
                 settle_seconds: float = 0.5):
        self.url = storage.join(out_url, LOCK_NAME)
        self.stale_seconds = stale_minutes * 60.0
        self.heartbeat_seconds = heartbeat_seconds
        self.settle_seconds = settle_seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lost = False
        self._stop = threading.Event()
        self._thread = None

    def _record(self, acquired: float) -> dict:
        return {"owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(),
                "acquired": acquired, "heartbeat": time.time()}

    def _read(self) -> dict | None:
        try:
            return storage.read_json(self.url)
        except (FileNotFoundError, json.JSONDecodeError, ValueError):
            return None  # vanished or half-visible: treat as free, verification decides

    def _takeable(self, record: dict | None) -> bool:
        if record is None:
            return True
        if time.time() - float(record.get("heartbeat", 0)) > self.stale_seconds:
            return True
        # A killed run of this host: its process is gone, no need to wait for the heartbeat to age.
        return record.get("host") == socket.gethostname() and not _pid_alive(int(record.get("pid", -1)))

    def acquire(self) -> "ArchiveLock":
        record = self._read()
        if not self._takeable(record):
            age = time.time() - float(record.get("heartbeat", 0))
            raise LockBusyError(f"{self.url}: held by {record.get('owner')} (heartbeat {age:.0f} s ago); "
                                f"it is taken over once older than {self.stale_seconds / 60:.0f} min")
        self.acquired = time.time()
        storage.write_json(self._record(self.acquired), self.url)
        time.sleep(self.settle_seconds)
        if not self.owns():
            raise LockBusyError(f"{self.url}: another run took the lock at the same time")
        self._thread = threading.Thread(target=self._beat, name="archive-lock-heartbeat", daemon=True)
        self._thread.start()
        return self

    def owns(self) -> bool:
        record = self._read()
        return record is not None and record.get("owner") == self.owner

    def check(self) -> None:
        """Raise ``LockLostError`` when another run has taken the lock over."""
        if self.lost or not self.owns():
            self.lost = True
            raise LockLostError(f"{self.url}: lock taken over by another run; stopping without committing")

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            try:
                if not self.owns():
                    self.lost = True
                    return
                storage.write_json(self._record(self.acquired), self.url)
            except Exception:  # a failed heartbeat is retried next time; staleness needs many misses
                continue

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if not self.lost and self.owns():
            storage.remove(self.url)


@contextmanager
def archive_lock(out_url: str, **kwargs):
    """Hold ``out/.lock`` for the block; partial files of a killed run are removed once it is ours."""
    lock = ArchiveLock(out_url, **kwargs).acquire()
    try:
        remove_partials(out_url)
        yield lock
    finally:
        lock.release()


def remove_partials(out_url: str) -> None:
    """Delete ``out/.partial`` (local temporary outputs) and the temporary files of an atomic write that a
    killed run left in ``out/`` (``.tmp-manifest.parquet-*``); only the lock holder may call this."""
    partial = storage.join(out_url, PARTIAL_NAME)
    if storage.is_local(partial):
        shutil.rmtree(partial, ignore_errors=True)
        folder = os.path.dirname(os.path.abspath(partial))
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                if name.startswith(".tmp-"):  # storage.write_bytes_atomic's prefix
                    try:
                        os.unlink(os.path.join(folder, name))
                    except OSError:
                        pass


# -- separating a batch of files --------------------------------------------------------------------


@dataclass
class _Item:
    rel: str
    input_url: str
    outputs: list  # final URLs
    local_outputs: list  # where separation writes (final paths locally, temporary files for S3)
    began: float
    download_seconds: float = 0.0


class _Workspace:
    """Local scratch space of one batch: downloaded inputs and outputs to upload (S3 only)."""

    def __init__(self, out_url: str):
        self.out_url = out_url
        self.local_out = storage.is_local(out_url)
        self.root = tempfile.mkdtemp(prefix="deepclust-archive-")
        self.temp_dir = storage.join(out_url, PARTIAL_NAME) if self.local_out else os.path.join(self.root, "partial")

    def local_input(self, url: str) -> str:
        """A local path for the input: itself, or a download into the workspace (bounded disk, not RAM)."""
        if storage.is_local(url):
            return storage._local_path(url)
        target = os.path.join(self.root, "input-" + uuid.uuid4().hex[:8] + os.path.splitext(url)[1])
        try:
            fs, path = storage.filesystem(url)
            fs.get_file(path, target)
        except Exception as error:  # the object vanished or is forbidden (timeouts/throttling: re-raised)
            if is_transient(error):
                raise
            raise BadAudioError(url, f"unreadable object ({type(error).__name__}: {error})") from error
        return target

    def local_outputs(self, outputs: list[str]) -> list[str]:
        if self.local_out:
            return [storage._local_path(u) for u in outputs]
        folder = os.path.join(self.root, uuid.uuid4().hex[:8])
        return [os.path.join(folder, os.path.basename(u)) for u in outputs]

    def publish(self, item: _Item) -> None:
        """Upload finished local outputs (S3); local outputs were already renamed into place."""
        if self.local_out:
            return
        fs, _ = storage.filesystem(self.out_url)
        for local, url in zip(item.local_outputs, item.outputs):
            fs.put_file(local, storage.filesystem(url)[1])
            os.unlink(local)

    def discard_input(self, local: str, url: str) -> None:
        if not storage.is_local(url) and os.path.exists(local):
            os.unlink(local)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _reason(url: str, error: Exception) -> str:
    """``"<input url>: <reason>"`` even when the error named a temporary download."""
    if isinstance(error, BadAudioError):
        return str(BadAudioError(url, error.reason))
    return str(BadAudioError(url, f"{type(error).__name__}: {error}"))


def separate_archive_batch(separator, input_url: str, out_url: str, relative_paths: list[str],
                           n_speakers: int = 2, window: WindowConfig = WindowConfig()) -> list[dict]:
    """Separate some inputs of the archive; returns one manifest row per input (does not commit them).

    Inputs no longer than one window are read whole and separated together (one network forward per
    ``window.windows_per_batch`` files); longer ones go through ``separate_long`` (windows batched).
    Outputs exist when this returns; commit the rows with ``commit_manifest``.
    """
    workspace = _Workspace(out_url)
    rows: list[dict] = []
    short: list = []  # (item, info, waveform) of inputs no longer than one window
    window_samples, _ = window.samples(separator.sample_rate)
    try:
        for rel in relative_paths:
            url = storage.join(input_url, rel)
            outputs = output_urls(out_url, rel, n_speakers)
            item = _Item(rel, url, outputs, workspace.local_outputs(outputs), time.perf_counter())
            local = None
            try:
                tick = time.perf_counter()
                local = workspace.local_input(url)
                item.download_seconds = time.perf_counter() - tick
                reader = BlockReader(local, separator.sample_rate, window.context_seconds)
                if reader.n_samples <= window_samples:
                    short.append(_read_short(item, reader))
                    continue
                reader.close()
                info = separate_long(separator, local, item.local_outputs, n_speakers, window, workspace.temp_dir)
                info["read_seconds"] += item.download_seconds
                rows.append(_publish(workspace, item, info))
            except Exception as error:
                if is_transient(error):
                    raise  # a retry may cure it: not this input's fault
                rows.append(_failed_row(input_url, rel, _reason(url, error), time.perf_counter() - item.began))
            finally:
                if local is not None:  # short inputs are in memory by now; downloads are not kept
                    workspace.discard_input(local, url)
        rows.extend(_separate_short(separator, workspace, input_url, short, n_speakers, window))
    finally:
        workspace.close()
    order = {rel: i for i, rel in enumerate(relative_paths)}
    return sorted(rows, key=lambda row: order[row["relative_path"]])


def _read_short(item: _Item, reader: BlockReader):
    """Read a one-window input whole (it is at most a window long, so memory stays bounded)."""
    try:
        tick = time.perf_counter()
        waveform = reader.read(0, reader.n_samples)
        read_seconds = time.perf_counter() - tick + item.download_seconds
        if reader.peak == 0.0:
            raise BadAudioError(item.input_url, "all-silent audio (every sample is 0)")
        info = {"duration": reader.duration, "sample_rate": reader.input_rate, "channels": reader.channels,
                "windows": 1, "read_seconds": read_seconds}
        return item, info, waveform
    finally:
        reader.close()


def _separate_short(separator, workspace: _Workspace, input_url: str, short: list, n_speakers: int,
                    window: WindowConfig) -> list[dict]:
    rows = []
    for first in range(0, len(short), window.windows_per_batch):
        group = short[first:first + window.windows_per_batch]
        try:
            batch = separate_window_batch(separator, [waveform for _, _, waveform in group], n_speakers)
        except Exception as error:  # e.g. out of memory: every file of the group fails with the reason
            if is_transient(error):
                raise
            rows.extend(_failed_row(input_url, item.rel, _reason(item.input_url, error), time.perf_counter() - item.began)
                        for item, _, _ in group)
            continue
        total = sum(w.shape[0] for _, _, w in group)
        for (item, info, waveform), tracks in zip(group, batch.outputs):
            share = waveform.shape[0] / total  # the batch's compute time, split by length
            try:
                tick = time.perf_counter()
                writer = TrackWriter(item.local_outputs, separator.sample_rate, workspace.temp_dir)
                try:
                    writer.write(tracks)
                    writer.commit()
                except BaseException:
                    writer.abort()
                    raise
                info = {**info, "output_sample_rate": separator.sample_rate,
                        "network_seconds": batch.network_seconds * share,
                        "clustering_seconds": batch.clustering_seconds * share,
                        "write_seconds": time.perf_counter() - tick}
                rows.append(_publish(workspace, item, info))
            except Exception as error:
                if is_transient(error):
                    raise  # e.g. an S3 upload timed out: retry, don't blame the input
                rows.append(_failed_row(input_url, item.rel, _reason(item.input_url, error),
                                        time.perf_counter() - item.began))
    return rows


def _publish(workspace: _Workspace, item: _Item, info: dict) -> dict:
    """Upload (S3) and make the ``done`` row; the upload counts as writing."""
    tick = time.perf_counter()
    workspace.publish(item)
    info = {**info, "write_seconds": info.get("write_seconds", 0.0) + time.perf_counter() - tick}
    return _done_row(item.input_url, item.rel, info, item.outputs, time.perf_counter() - item.began)


# -- the whole archive ------------------------------------------------------------------------------


def separate_archive(model_url_or_separator, input_url: str, out_url: str, n_speakers: int = 2,
                     files_per_batch: int = 8, window: WindowConfig = WindowConfig(), device: str = "auto",
                     stale_minutes: float = 10.0, progress=None) -> dict:
    """Separate every audio file under ``input_url`` into ``out_url`` (local or ``s3://``); resumable.

    Returns a summary: ``inputs``, ``already_done``, ``separated``, ``failed``, ``failed_inputs``
    (``[(relative path, reason)]``), ``audio_seconds`` separated by this run, ``seconds``,
    ``real_time_factor`` (audio seconds per second), the four timing sums, ``manifest_url`` and
    ``message`` ("completed" or "completed with N failed inputs").
    """
    from deepclust.separation.separator import Separator

    began = time.perf_counter()
    separator = (model_url_or_separator if hasattr(model_url_or_separator, "embed_batch")
                 else Separator(model_url_or_separator, device=device))
    rows: list[dict] = []
    with archive_lock(out_url, stale_minutes=stale_minutes) as lock:
        todo, already_done = plan_archive(input_url, out_url, n_speakers)
        for first in range(0, len(todo), files_per_batch):
            batch_rows = separate_archive_batch(separator, input_url, out_url, todo[first:first + files_per_batch],
                                                n_speakers, window)
            lock.check()
            commit_manifest(out_url, batch_rows)
            rows.extend(batch_rows)
            if progress:
                progress(min(first + files_per_batch, len(todo)), len(todo))
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
