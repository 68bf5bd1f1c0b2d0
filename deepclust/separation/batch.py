"""The separation loop: a batch of input-manifest rows in, their outputs written, one manifest row each out.

This is the only place files are separated: ``deepclust separate``, ``separate-archive`` (plain or Prefect,
threads or Dask) and the recipe's separation stage all call ``separate_items``. One schema
(``MANIFEST_COLUMNS``) and one error policy:

- a bad input (corrupt, truncated, empty, all-silent, non-finite, not audio, an unreadable object, a
  batch that runs out of memory) becomes a ``failed`` row whose ``error`` names the input as the user gave it
  and the reason in plain words (never a scratch copy's path), its ``error_detail`` the library's own message,
  and the batch goes on;
- a transient fault (timeouts, throttling, connection resets: ``deepclust.faults.transient``) is raised, so the
  caller retries the batch: it is nobody's fault and must not be recorded as the input's;
- a device fault (a CUDA error other than out-of-memory) is raised too: every later input would fail the
  same way, so the job stops (its circuit breaker) instead of marking the rest of the archive failed;
- a fault of the run (``deepclust.faults.errors.RunFaultError``) is raised and stops the job, never a row: a full
  disk (``DiskFullError``), or a network that fails on a known-good input as well (``NetworkFaultError``: the
  model, the device or a setting is at fault, not the input it met it on; ``check_network`` decides).

Inputs no longer than one window are read whole and separated together (one network forward per
``window.windows_per_batch`` inputs with the same speaker count, their outputs written by a background thread
while the next group is in the network); longer ones go through ``separate_long`` (windows batched, the next
group read ahead). Outputs exist when this returns; rows are not committed here.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from deepclust import storage
from deepclust.audio.blocks import BlockReader, TrackWriter
from deepclust.faults.errors import BadAudioError, DiskFullError, NetworkFaultError, RunFaultError
from deepclust.faults.transient import is_device_fault, is_disk_full, is_transient
from deepclust.separation.inputs import output_names, output_stem
from deepclust.separation.io_threads import io_executor
from deepclust.separation.long import separate_long
from deepclust.separation.window_batch import separate_window_batch
from deepclust.separation.windows import WindowConfig
from deepclust.storage.manifests import SCHEMAS
from deepclust.storage.workspace import PREFIX as SCRATCH_PREFIX
from deepclust.storage.workspace import Workspace

TIMING_COLUMNS = ["read_seconds", "network_seconds", "clustering_seconds", "write_seconds"]
# ``outputs``: relative to the output root (the folder can move); ``input_id``, ``model_sha256`` and ``settings``
# say which input content, which model and which settings made them: "done" holds only while all three match.
# ``status``: "done", "failed" (the input's fault: its reason in ``error``, the library's words in
# ``error_detail``) or "transient" (a fault that outlasted the retry budget; tried again by the next run).
# ``downmix``: how the input was made mono ("mono", "mean of 2 channels", "channel 1 of 2, the loudest: ...").
MANIFEST_COLUMNS = SCHEMAS["separate"].names  # the separation manifest's columns, in order
# A scratch folder's path (``deepclust.storage.workspace``), wherever a message names one.
_SCRATCH_PATH = re.compile(r"[^\s'\"]*" + re.escape(SCRATCH_PREFIX) + r"[^\s'\"]*")


@dataclass
class _Item:
    row: dict  # the input-manifest row (with its ``output_stem``)
    names: list  # outputs relative to the output root
    outputs: list  # final URLs
    local_outputs: list  # where separation writes (final paths locally, temporary files for S3)
    began: float
    download_seconds: float = 0.0

    @property
    def url(self) -> str:
        """The input's URL."""
        return self.row["input"]


def stem_of(item: dict) -> str:
    """The item's output folder below the output root (assigned by the job's plan; else its plain stem)."""
    return item.get("output_stem") or output_stem(item["relative_path"])


def _row(item: dict, status: str, error: str, seconds: float, stamp: dict | None, detail: str = "") -> dict:
    stamp = stamp or {}
    return {
        "input": item["input"],
        "relative_path": item["relative_path"],
        "mixture_id": item.get("mixture_id") or "",
        "output_stem": stem_of(item),
        "status": status,
        "error": error,
        "error_detail": detail,
        "duration": np.nan,
        "sample_rate": np.nan,
        "channels": np.nan,
        "downmix": "",
        "output_sample_rate": np.nan,
        "windows": 0,
        "n_speakers": int(item["n_speakers"]),
        "outputs": [],
        "input_id": item.get("input_id") or "",
        "model_sha256": stamp.get("model_sha256", ""),
        "settings": stamp.get("settings", ""),
        "seconds": seconds,
        **{c: 0.0 for c in TIMING_COLUMNS},
    }


def failed_row(item: dict, error: str, seconds: float = 0.0, stamp: dict | None = None, detail: str = "") -> dict:
    """The row of an input that could not be separated; ``error`` names the input and the reason, ``detail``
    is the library's message (for debugging)."""
    return _row(item, "failed", error, seconds, stamp, detail)


def raise_if_not_the_inputs(
    error: Exception, where: str, separator=None, n_speakers: int = 2, scratch: str | None = None
) -> None:
    """Raise what is not ``where``'s fault: a transient or device fault as it is, a full disk as ``DiskFullError``,
    a run fault as it is; given the ``scratch`` folder the outputs are written in, a full disk that the error
    did not name (libsndfile says only "System error."); given the ``separator``, a network error that a
    known-good input meets too as ``NetworkFaultError``. Returns when the error is the input's (its ``failed``
    row)."""
    if is_transient(error) or is_device_fault(error) or isinstance(error, RunFaultError):
        raise error
    if is_disk_full(error):
        raise DiskFullError(f"no space left where the outputs go (writing for {where}: {error})") from error
    if isinstance(error, BadAudioError):
        return
    if scratch is not None:
        check_space(scratch, error, where)
    if separator is not None:
        check_network(separator, n_speakers, error, where)


def check_space(folder: str, error: Exception, where: str, needed: int = 1 << 20) -> None:
    """After ``error`` on ``where``: write ``needed`` bytes (1 MiB) in ``folder``, where the outputs are written
    (locally: on S3 too they are written here first); ``DiskFullError`` if the disk or quota cannot take them."""
    folder = os.path.abspath(folder)
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    try:
        with tempfile.TemporaryFile(dir=folder) as handle:
            handle.write(bytes(needed))
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as probe_error:
        if is_disk_full(probe_error):
            raise DiskFullError(
                f"no space left where the outputs go (writing for {where}: "
                f"{type(error).__name__}: {_first_line(error)})"
            ) from error


def known_good_input(sample_rate: int, seconds: float = 1.0) -> np.ndarray:
    """``(samples,)`` float32: two harmonic tones that glide past each other plus a little noise, seeded, at
    speech level: any working network separates it without error."""
    t = np.arange(int(seconds * sample_rate), dtype=np.float64) / sample_rate
    voices = sum(
        0.1 * np.sin(2 * np.pi * f0 * h * t + 0.5 * np.sin(2 * np.pi * 3 * t)) / h
        for f0 in (140.0, 220.0)
        for h in range(1, 6)
    )
    noise = 0.003 * np.random.default_rng(0).standard_normal(t.size)
    return (voices + noise).astype(np.float32)


def check_network(separator, n_speakers: int, error: Exception, where: str) -> None:
    """After ``error`` on ``where``'s input: run the network on ``known_good_input``; if that fails too, the
    fault is the run's (the model, the device, a setting), so raise ``NetworkFaultError`` instead of blaming
    the input. Costs one forward of one second of audio, and only after a failure."""
    try:
        separate_window_batch(separator, [known_good_input(separator.sample_rate)], n_speakers, centroids=False)
    except Exception as canary_error:
        if is_transient(canary_error):
            raise canary_error
        raise NetworkFaultError(
            f"the network fails on any input, not only on {where} "
            f"({type(error).__name__}: {_first_line(error)}); nothing was marked failed for "
            "it: fix the model, device or precision and rerun"
        ) from error


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [""])[0][:300]


def _failed(item: dict, error: Exception, began: float, stamp, local: str | None = None) -> dict:
    return failed_row(
        item,
        reason(item["input"], error, local),
        time.perf_counter() - began,
        stamp,
        error_detail(item["input"], error, local),
    )


def transient_row(item: dict, error: str, stamp: dict | None = None) -> dict:
    """The row of an input whose batch kept failing transiently: not its fault, tried again next run."""
    return _row(item, "transient", error, 0.0, stamp)


def _done_row(item: _Item, info: dict, stamp: dict | None) -> dict:
    row = _row(item.row, "done", "", time.perf_counter() - item.began, stamp)
    row.update(
        {
            "duration": info["duration"],
            "sample_rate": info["sample_rate"],
            "channels": info["channels"],
            "downmix": info.get("downmix", ""),
            "output_sample_rate": info["output_sample_rate"],
            "windows": info["windows"],
            "n_speakers": len(item.outputs),
            "outputs": list(item.names),
            **{c: float(info.get(c, 0.0)) for c in TIMING_COLUMNS},
        }
    )
    return row


def _scrub(text: str, local: str | None, url: str) -> str:
    """``text`` naming the input, never its scratch copy (``local``) or any other scratch path."""
    if local and local != url:
        text = text.replace(local, url)
    return _SCRATCH_PATH.sub("<scratch file>", text)


def reason(url: str, error: Exception, local: str | None = None) -> str:
    """``"<input url>: <reason>"``, even when the error named a temporary download (``local``)."""
    text = error.reason if isinstance(error, BadAudioError) else f"{type(error).__name__}: {error}"
    return str(BadAudioError(url, _scrub(text, local, url)))


def error_detail(url: str, error: Exception, local: str | None = None) -> str:
    """The library's message behind a reason ("" when there is none), naming no scratch path."""
    return _scrub(error.detail, local, url) if isinstance(error, BadAudioError) else ""


def separate_items(
    separator,
    items: list[dict],
    out_url: str,
    window: WindowConfig = WindowConfig(),
    stamp: dict | None = None,
    channel: int | None = None,
    overlap_io: bool = True,
) -> list[dict]:
    """Separate input-manifest rows (``deepclust.separation.inputs``) into ``out/<output_stem>/s1.wav ..``.

    ``stamp``: ``{"model_sha256", "settings"}`` recorded in every row (what made the outputs). ``channel``:
    which channel of multi-channel inputs to separate (1-based; None: ``deepclust.audio.downmix``'s rule).
    ``overlap_io``: short inputs' outputs are written by a background thread while the next group goes through
    the network, and long inputs' next windows read (``_separate_short``, ``separate_long``); the outputs and
    rows are the same either way. Returns one ``MANIFEST_COLUMNS`` row per item, in the items' order. Raises
    only transient faults and device faults.
    """
    rows: list[dict] = []
    short: list = []  # (item, info, waveform) of inputs no longer than one window
    window_samples, _ = window.samples(separator.sample_rate)
    with Workspace(out_url) as workspace:
        for row in items:
            names = output_names(stem_of(row), row["n_speakers"])
            outputs = [storage.join(out_url, name) for name in names]
            item = _Item(row, names, outputs, workspace.local_outputs(outputs), time.perf_counter())
            local = None
            try:
                tick = time.perf_counter()
                local = workspace.local_input(item.url)
                item.download_seconds = time.perf_counter() - tick
                reader = BlockReader(local, separator.sample_rate, window.context_seconds, channel=channel)
                if reader.n_samples <= window_samples:
                    short.append(_read_short(item, reader))
                    continue
                # The open reader goes on to separate_long (which closes it): the first look is not repeated.
                info = separate_long(
                    separator,
                    reader,
                    item.local_outputs,
                    int(row["n_speakers"]),
                    window,
                    workspace.temp_dir,
                    overlap_io,
                )
                info["read_seconds"] += item.download_seconds
                rows.append(_publish(workspace, item, info, stamp))
            except Exception as error:
                # A retry may cure it, or nothing will, or it is the run's: not this input's fault in any case.
                raise_if_not_the_inputs(error, row["input"], separator, int(row["n_speakers"]), workspace.temp_dir)
                rows.append(_failed(row, error, item.began, stamp, local))
            finally:
                if local is not None:  # short inputs are in memory by now; downloads are not kept
                    workspace.discard_input(local, item.url)
        rows.extend(_separate_short(separator, workspace, short, window, stamp, overlap_io))
    order = {row["relative_path"]: i for i, row in enumerate(items)}
    return sorted(rows, key=lambda row: order[row["relative_path"]])


def _read_short(item: _Item, reader: BlockReader):
    """Read a one-window input whole (it is at most a window long, so memory stays bounded)."""
    try:
        tick = time.perf_counter()
        waveform = reader.read(0, reader.n_samples)
        read_seconds = time.perf_counter() - tick + item.download_seconds
        # Silence (every channel) was ruled out when the reader opened.
        info = {
            "duration": reader.duration,
            "sample_rate": reader.input_rate,
            "channels": reader.channels,
            "downmix": reader.downmix,
            "windows": 1,
            "read_seconds": read_seconds,
        }
        return item, info, waveform
    finally:
        reader.close()


def _separate_short(
    separator, workspace: Workspace, short: list, window: WindowConfig, stamp, overlap_io: bool = True
) -> list[dict]:
    """One network forward per ``windows_per_batch`` short inputs of the same speaker count, packed by length
    (inputs of similar length share a forward, so little of it is spent on padding).

    ``overlap_io``: a group's outputs are written (closed, fsynced, renamed, uploaded) by one background
    thread while the next group goes through the network. Writing is mostly waiting on the disk or the
    store (measured: 2.4 ms of CPU in 13 ms per 5 s input), so it hides behind the network's compute; at
    most one group is in flight, so memory stays bounded by two groups of outputs."""
    by_count: dict[int, list] = {}
    for entry in short:
        by_count.setdefault(len(entry[0].outputs), []).append(entry)
    rows: list[dict] = []
    with io_executor(overlap_io, "deepclust-write") as writer:
        pending = None
        for n_speakers, entries in sorted(by_count.items()):
            entries = sorted(entries, key=lambda entry: entry[2].shape[0])  # stable: equal lengths keep their order
            for first in range(0, len(entries), window.windows_per_batch):
                group = entries[first : first + window.windows_per_batch]
                separated = _separate_group(separator, group, n_speakers, stamp)
                if pending is not None:
                    rows.extend(pending.result())  # the previous group's rows (raises its transient fault)
                pending = writer.submit(_write_group, separator, workspace, group, separated, stamp)
        if pending is not None:
            rows.extend(pending.result())
    return rows


def _separate_group(separator, group: list, n_speakers: int, stamp):
    """The group's ``WindowBatch``, or its failed rows when the forward failed for a reason of the inputs'."""
    try:
        # Each input is separated whole: no windows to align, so no centroids (with the mask head, no
        # embeddings at all).
        return separate_window_batch(separator, [waveform for _, _, waveform in group], n_speakers, centroids=False)
    except Exception as error:  # e.g. out of memory: every input of the group fails with the reason
        where = group[0][0].url if len(group) == 1 else f"{group[0][0].url} and {len(group) - 1} other inputs"
        raise_if_not_the_inputs(error, where, separator, n_speakers)
        return [_failed(item.row, error, item.began, stamp) for item, _, _ in group]


def _write_group(separator, workspace: Workspace, group: list, batch, stamp) -> list[dict]:
    """Write and publish each input's outputs of a separated group: its ``done`` row, or ``failed`` naming it."""
    if isinstance(batch, list):  # the forward failed: the rows are made
        return batch
    rows = []
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
            info = {
                **info,
                "output_sample_rate": separator.sample_rate,
                "network_seconds": batch.network_seconds * share,
                "clustering_seconds": batch.clustering_seconds * share,
                "write_seconds": time.perf_counter() - tick,
            }
            rows.append(_publish(workspace, item, info, stamp))
        except Exception as error:
            # e.g. an S3 upload timed out, or the disk is full
            raise_if_not_the_inputs(error, item.url, scratch=workspace.temp_dir)
            rows.append(_failed(item.row, error, item.began, stamp))
    return rows


def _publish(workspace: Workspace, item: _Item, info: dict, stamp) -> dict:
    """Upload (S3) and make the ``done`` row; the upload counts as writing."""
    tick = time.perf_counter()
    workspace.publish(item.local_outputs, item.outputs)
    info = {**info, "write_seconds": info.get("write_seconds", 0.0) + time.perf_counter() - tick}
    return _done_row(item, info, stamp)
