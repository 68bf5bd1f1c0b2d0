"""Separation of recordings of any length in overlapping windows, with memory bounded by the window.

A BLSTM sees the whole utterance, so a two-hour recording cannot go through the network in one piece
(its activations and the ``(frames, freq, emb)`` embeddings grow with the length). Instead:

1. the recording is cut into windows of ``window_seconds`` that overlap their neighbours by
   ``overlap_seconds``; windows are read from disk one block at a time (``soundfile.SoundFile.seek``),
   downmixed, and resampled to the model's rate with a little context on each side so that the
   resampling filter sees the same samples it would see on the whole file;
2. ``windows_per_batch`` windows go through one padded network forward and one batched clustering
   (the Separator's batch path), so long files use the hardware as well as many short ones; the next
   group of windows is read by a background thread meanwhile (one group ahead);
3. the windows' tracks are put in one speaker order and crossfaded into continuous outputs
   (``deepclust.separation.stitching``), every finished stretch appended to the K output files at once.

The pieces live in their own modules: ``windows`` (the cut), ``window_batch`` (the batch step shared with
short files), ``stitching`` (order and crossfade), ``io_threads`` (the background reader); this module runs
them over one file.

Peak memory is therefore set by ``window_seconds * windows_per_batch`` (and, with the mask head, the last
``TRACK_HISTORY`` windows' trunk outputs, 3 MB each in float32), never by the file's length.
Each output is written to a temporary file and renamed into place only when complete.
"""

from __future__ import annotations

import time

import numpy as np

from deepclust.audio.blocks import BlockReader, TrackWriter, check_wav_complete  # noqa: F401 (re-exported)
from deepclust.faults.errors import BadAudioError
from deepclust.separation.io_threads import io_executor
from deepclust.separation.stitching import Stitcher
from deepclust.separation.window_batch import separate_window_batch

# The public path of the window settings (``from deepclust.separation.long import WindowConfig``) stays.
from deepclust.separation.windows import Window, WindowConfig, plan_windows  # noqa: F401 (re-exported)


def separate_long(
    separator,
    input_path: str | BlockReader,
    output_paths: list,
    n_speakers: int,
    config: WindowConfig = WindowConfig(),
    temp_dir: str | None = None,
    overlap_io: bool = True,
    channel: int | None = None,
) -> dict:
    """Separate a local audio file of any length into K local WAV files at the model's rate.

    Args:
        separator: a ``deepclust.separation.Separator`` (its ``sample_rate``, ``embed_batch`` and
            clustering are used).
        input_path: local audio file, any rate and channel count (downmixed, resampled), or a ``BlockReader``
            already open on one at the model's rate (its first look is not repeated; it is closed here).
        output_paths: K local paths for ``s1.wav .. sK.wav``; each appears only when complete.
        n_speakers: K.
        config: windowing.
        temp_dir: where the partial outputs are written (same filesystem as the outputs).
        overlap_io: read the next group of windows in a background thread while the network runs on this
            one (the outputs are the same either way; ``read_seconds`` is then partly hidden behind it).
        channel: which channel to separate (1-based; None: ``deepclust.audio.downmix``'s rule); for a path only.

    Returns:
        dict with ``duration`` (s of input), ``sample_rate`` and ``channels`` of the input,
        ``output_sample_rate``, ``windows``, ``aligned_by_centroids`` (windows aligned through the
        centroids, the overlap being too quiet), ``reordered_windows`` and the seconds spent:
        ``read_seconds`` (read + downmix + resample), ``network_seconds`` (STFT + network),
        ``clustering_seconds`` (k-means, masks, inverse STFT, alignment), ``write_seconds``, ``seconds``.

    Raises:
        BadAudioError: unreadable, empty, truncated, non-finite or all-silent input (no output is left).
    """
    k = int(n_speakers)
    if len(output_paths) != k:
        if isinstance(input_path, BlockReader):
            input_path.close()
        raise ValueError(f"{k} speakers need {k} output paths, got {len(output_paths)}")
    began = time.perf_counter()
    rate = separator.sample_rate
    if isinstance(input_path, BlockReader):
        reader = input_path
        if reader.sample_rate != rate:
            reader.close()
            raise ValueError(f"the reader resamples to {reader.sample_rate} Hz, the model runs at {rate} Hz")
        input_path = reader.path
    else:
        reader = BlockReader(input_path, rate, config.context_seconds, channel=channel)
    timings = {"read_seconds": 0.0, "network_seconds": 0.0, "clustering_seconds": 0.0, "write_seconds": 0.0}
    writer = None
    try:
        window, hop = config.samples(rate)
        windows = plan_windows(reader.n_samples, window, hop)
        writer = TrackWriter(output_paths, rate, temp_dir)
        stitcher = Stitcher(windows, writer)
        starts = range(0, len(windows), config.windows_per_batch)

        def read_group(first: int) -> tuple[list, float]:
            tick = time.perf_counter()
            group = windows[first : first + config.windows_per_batch]
            return [reader.read(w.context_start, w.end) for w in group], time.perf_counter() - tick

        with io_executor(overlap_io, "deepclust-read") as prefetch:
            # The next group's windows are decoded and resampled while this one is in the network: one group
            # ahead, so memory stays that of two groups of input samples.
            upcoming = prefetch.submit(read_group, starts[0]) if starts else None
            for index, first in enumerate(starts):
                waveforms, read_seconds = upcoming.result()  # a read's BadAudioError surfaces here, in order
                timings["read_seconds"] += read_seconds
                if index + 1 < len(starts):
                    upcoming = prefetch.submit(read_group, starts[index + 1])
                group = windows[first : first + config.windows_per_batch]
                separated = _separate_nonsilent(separator, waveforms, k, timings)
                tick, written = time.perf_counter(), 0.0
                for offset, (w, (tracks, centroids)) in enumerate(zip(group, separated)):
                    used = tracks[:, w.start - w.context_start :]
                    written += stitcher.add(first + offset, used, centroids)
                # Alignment and crossfade count as clustering; the appends they make count as writing.
                timings["clustering_seconds"] += time.perf_counter() - tick - written
                timings["write_seconds"] += written
        if reader.peak == 0.0:
            raise BadAudioError(input_path, "all-silent audio (every sample is 0)")
        tick = time.perf_counter()
        writer.commit()
        timings["write_seconds"] += time.perf_counter() - tick
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        reader.close()
    return {
        "duration": reader.duration,
        "sample_rate": reader.input_rate,
        "channels": reader.channels,
        "downmix": reader.downmix,
        "output_sample_rate": rate,
        "windows": len(windows),
        "aligned_by_centroids": int(stitcher.aligned_by_centroids),
        "reordered_windows": int(stitcher.reordered),
        **timings,
        "seconds": time.perf_counter() - began,
    }


def _separate_nonsilent(separator, waveforms: list, k: int, timings: dict) -> list:
    """``[(tracks (K, samples), WindowCentroids | None)]``; digital silence skips the network."""
    results: list = [None] * len(waveforms)
    active = [i for i, w in enumerate(waveforms) if w.size and float(np.max(np.abs(w))) > 0.0]
    for i, w in enumerate(waveforms):
        if i not in active:
            results[i] = (np.zeros((k, w.shape[0]), dtype=np.float32), None)
    if active:
        batch = separate_window_batch(separator, [waveforms[i] for i in active], k)
        timings["network_seconds"] += batch.network_seconds
        timings["clustering_seconds"] += batch.clustering_seconds
        for i, tracks, centroids in zip(active, batch.outputs, batch.centroids):
            results[i] = (tracks, centroids)
    return results
