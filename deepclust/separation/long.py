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
3. k-means (and the mask head) number the sources arbitrarily in every window, so the K tracks of a window
   are permuted to match the previous window: the permutation that maximises the summed inner product of
   the separated signals over the overlap (= the least-squares match). When the overlap is too quiet to
   decide (silence in both), the windows' cluster centroids in the embedding space are matched to the
   tracks' running centroids instead (with the mask head they are computed only then: ``WindowCentroids``);
4. consecutive windows are overlap-added with a raised-cosine crossfade (gains ``cos^2`` and ``sin^2``,
   which sum to one, because both windows estimate the same signal in the overlap), and every finished
   stretch is appended to the K output files at once; only the overlap of the last window is held.

Peak memory is therefore set by ``window_seconds * windows_per_batch`` (and, with the mask head, the last
``TRACK_HISTORY`` windows' trunk outputs, 3 MB each in float32), never by the file's length.
Each output is written to a temporary file and renamed into place only when complete.
"""

from __future__ import annotations

import collections
import itertools
import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from deepclust.audio_blocks import BlockReader, TrackWriter, check_wav_complete  # noqa: F401 (re-exported)
from deepclust.errors import BadAudioError

# Overlap alignment is trusted when the best permutation beats the second best by this fraction of the
# overlap's energy; below it (silence, or a speaker absent on both sides) the centroids decide.
MIN_OVERLAP_MARGIN = 0.05
# Brute force over K! permutations gives the margin to the runner-up; beyond this K, Hungarian only.
MAX_BRUTE_FORCE_SPEAKERS = 6
# Running centroid of a track: weight of the newest window (tracks drift slowly across a recording).
CENTROID_MOMENTUM = 0.5
# Windows that the running centroids are computed from: the 26th newest weighs 0.5^25 = 3e-8, below
# float32's resolution of a unit vector's components, so the truncated average is the full one.
TRACK_HISTORY = 26


@dataclass(frozen=True)
class WindowConfig:
    """How long recordings are cut.

    Attributes:
        window_seconds: length of one network input; sets the memory bound with ``windows_per_batch``.
        overlap_seconds: shared by neighbouring windows; used to align the speaker order and to crossfade.
            At most half a window, so that a window overlaps only its two neighbours.
        windows_per_batch: windows per network forward (and per batched k-means).
        context_seconds: extra input read on each side of a window for the resampling filter.
    """

    window_seconds: float = 10.0
    overlap_seconds: float = 2.0
    windows_per_batch: int = 8
    context_seconds: float = 0.05

    def __post_init__(self):
        if self.window_seconds <= 0:
            raise ValueError(f"window_seconds must be > 0, got {self.window_seconds}")
        if not 0 < self.overlap_seconds <= self.window_seconds / 2:
            raise ValueError(f"overlap_seconds must be in (0, window_seconds / 2], got {self.overlap_seconds}"
                             f" for a {self.window_seconds} s window")
        if self.windows_per_batch < 1:
            raise ValueError(f"windows_per_batch must be >= 1, got {self.windows_per_batch}")
        if self.context_seconds < 0:
            raise ValueError(f"context_seconds must be >= 0, got {self.context_seconds}")

    def samples(self, sample_rate: int) -> tuple[int, int]:
        """``(window, hop)`` in samples at ``sample_rate``."""
        window = max(2, int(round(self.window_seconds * sample_rate)))
        overlap = max(1, int(round(self.overlap_seconds * sample_rate)))
        return window, window - overlap

    def to_dict(self) -> dict:
        """JSON-able form (``WindowConfig(**d)`` reads it back)."""
        return {"window_seconds": self.window_seconds, "overlap_seconds": self.overlap_seconds,
                "windows_per_batch": self.windows_per_batch, "context_seconds": self.context_seconds}


@dataclass(frozen=True)
class Window:
    """One network input ``[context_start, end)``, of which ``[start, end)`` goes to the output."""

    context_start: int
    start: int
    end: int


def plan_windows(n_samples: int, window: int, hop: int) -> list[Window]:
    """Windows covering ``n_samples`` with a regular hop; each overlaps only its neighbours.

    The last window keeps the regular start (so its overlap is the normal one) but reaches back to a
    full window of network context; the part before its start is computed and discarded.
    """
    if n_samples <= 0:
        return []
    if n_samples <= window:
        return [Window(0, 0, n_samples)]
    # Full windows while one still ends before the recording does; then the remainder (> overlap long).
    windows = [Window(s, s, s + window) for s in range(0, n_samples - window, hop)]
    last = windows[-1].start + hop
    windows.append(Window(n_samples - window, last, n_samples))
    return windows


# -- separation of a batch of windows ---------------------------------------------------------------


@dataclass
class WindowBatch:
    """Separated windows: ``outputs`` list of ``(K, samples)``; ``centroids`` one ``WindowCentroids`` per window
    (None when not asked for)."""

    outputs: list
    centroids: list | None
    network_seconds: float
    clustering_seconds: float


def _synchronise(device: torch.device) -> None:
    # CUDA runs asynchronously: without a sync the network's time would be billed to the clustering.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cluster_centroids(embeddings: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
    """Mean embedding of each cluster over the valid bins: ``(batch, frames, freq, emb)`` -> ``(batch, K, emb)``."""
    one_hot = torch.nn.functional.one_hot(labels, k).to(embeddings.dtype) * valid.unsqueeze(-1)  # (B, F, Q, K)
    sums = torch.einsum("bfqk,bfqd->bkd", one_hot, embeddings)
    counts = one_hot.sum((1, 2)).unsqueeze(-1)  # (B, K, 1)
    return sums / counts.clamp_min(1.0)


class WindowCentroids:
    """The ``(K, emb)`` cluster centroids of one window (``cluster_centroids``), computed when first asked for.

    With k-means the embeddings exist anyway, and the centroids are given. With the mask head the embedding
    head is not run at all (it takes about half the BLSTM's time): the window keeps its trunk output, masks' labels
    and valid bins, and runs the embedding head on them only if the speaker alignment needs the centroids
    (an overlap too quiet to decide), then drops them. ``_Stitcher`` keeps only the last ``TRACK_HISTORY``
    windows, so what is kept stays bounded by that, whatever the recording's length.
    """

    def __init__(self, values: np.ndarray | None = None, separator=None, hidden: torch.Tensor | None = None,
                 labels: torch.Tensor | None = None, valid: torch.Tensor | None = None, k: int = 0):
        self._values = values
        self._inputs = (separator, hidden, labels, valid, k) if values is None else None

    def __call__(self) -> np.ndarray:
        if self._values is None:
            separator, hidden, labels, valid, k = self._inputs
            embeddings = separator.embeddings_of(hidden.unsqueeze(0))  # (1, frames, freq, emb)
            self._values = cluster_centroids(embeddings, labels.long().unsqueeze(0), valid.unsqueeze(0),
                                             k)[0].float().cpu().numpy()
            self._inputs = None
        return self._values

    @property
    def computed(self) -> bool:
        """Whether the centroids exist yet (with the mask head: whether the embedding head ran)."""
        return self._values is not None


@torch.no_grad()
def separate_window_batch(separator, waveforms: list, n_speakers: int, centroids: bool = True) -> WindowBatch:
    """Separate a list of ``(samples,)`` windows in one network forward and one batched clustering.

    The same steps as ``Separator.separate_batch`` (masks on the mixture STFT, inverse STFT with the
    mixture phase), timed separately; only the head that the inference reads is run. ``centroids``: also
    return each window's cluster centroids (``WindowCentroids``: lazy with the mask head), which the
    alignment of a long recording's windows may need; inputs that are separated whole need none.
    """
    k = int(n_speakers)
    mask_head = separator.uses_mask_head(k)
    began = time.perf_counter()
    batch = separator.embed_batch(waveforms, embeddings=not mask_head, masks=mask_head,
                                  hidden=mask_head and centroids)
    _synchronise(separator.device)
    network_done = time.perf_counter()
    masks, labels = separator.assign(batch, k)  # k-means, or a Chimera++ model's mask head
    window_centroids = None
    if centroids and mask_head:
        # Owned copies of each window's part (not views), so a kept window does not keep the whole batch.
        window_centroids = [
            WindowCentroids(separator=separator, hidden=batch["hidden"][i, :n].clone(),
                            labels=labels[i, :n].to(torch.uint8 if k <= 255 else torch.long),
                            valid=batch["valid"][i, :n].clone(), k=k)
            for i, n in enumerate(batch["frame_counts"])]
    elif centroids:
        values = cluster_centroids(batch["embeddings"], labels, batch["valid"], k).float().cpu().numpy()
        window_centroids = [WindowCentroids(item) for item in values]
    outputs = separator.reconstruct_masks(batch, masks)
    _synchronise(separator.device)
    return WindowBatch(outputs, window_centroids, network_done - began, time.perf_counter() - network_done)


# -- alignment and crossfade ------------------------------------------------------------------------


def _best_assignment(scores: np.ndarray) -> tuple[tuple[int, ...], float]:
    """Permutation ``perm`` maximising ``sum_a scores[a, perm[a]]`` and its margin over the runner-up."""
    k = scores.shape[0]
    if k > MAX_BRUTE_FORCE_SPEAKERS:
        from scipy.optimize import linear_sum_assignment

        _, columns = linear_sum_assignment(-scores)
        return tuple(int(c) for c in columns), math.inf
    totals = sorted(((float(scores[np.arange(k), list(p)].sum()), p) for p in itertools.permutations(range(k))),
                    reverse=True)
    margin = totals[0][0] - totals[1][0] if len(totals) > 1 else math.inf
    return tuple(totals[0][1]), margin


def align_permutation(previous: np.ndarray, current: np.ndarray, previous_centroids: np.ndarray | None = None,
                      current_centroids: np.ndarray | None = None,
                      min_margin: float = MIN_OVERLAP_MARGIN) -> tuple[tuple[int, ...], str]:
    """Which track of the current window continues each track of the previous one.

    Args:
        previous: ``(K, overlap)`` the previous window's (already aligned) tracks over the overlap.
        current: ``(K, overlap)`` the current window's tracks over the same samples.
        previous_centroids, current_centroids: ``(K, emb)``; the running centroids of the tracks and the
            current window's k-means centroids, used when the overlap cannot decide (or functions returning
            them, called only then).

    Returns:
        ``(perm, method)``: track ``a`` continues with ``current[perm[a]]``; method is "overlap" or
        "centroids". Maximising ``sum_a <previous_a, current_perm(a)>`` is the least-squares match
        (``sum_a |previous_a - current_perm(a)|^2`` differs from it by a constant).
    """
    previous = np.asarray(previous, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    energy = float((previous ** 2).sum() + (current ** 2).sum()) / 2
    perm, margin = _best_assignment(previous @ current.T)
    if energy > 0 and margin >= min_margin * energy:
        return perm, "overlap"
    # Either may come as a function that computes it: it is called only here, when the overlap cannot decide.
    previous_centroids = previous_centroids() if callable(previous_centroids) else previous_centroids
    current_centroids = current_centroids() if callable(current_centroids) else current_centroids
    if previous_centroids is not None and current_centroids is not None:
        a = previous_centroids / np.maximum(np.linalg.norm(previous_centroids, axis=1, keepdims=True), 1e-12)
        b = current_centroids / np.maximum(np.linalg.norm(current_centroids, axis=1, keepdims=True), 1e-12)
        return _best_assignment(a @ b.T)[0], "centroids"
    return perm, "overlap"


def crossfade(previous: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Raised-cosine crossfade of ``(K, n)`` tracks over ``n`` samples; the gains sum to one."""
    n = previous.shape[-1]
    fade_in = np.sin(0.5 * np.pi * (np.arange(n) + 0.5) / n) ** 2
    return (previous * (1.0 - fade_in) + current * fade_in).astype(np.float32)


# -- the long-recording separator -------------------------------------------------------------------


class _Stitcher:
    """Aligns each window's tracks with the previous window's and overlap-adds them into the writer.

    The tracks' running centroids (``CENTROID_MOMENTUM``) are needed only when an overlap cannot decide, so
    they are computed then, from the last ``TRACK_HISTORY`` windows' ``WindowCentroids`` and the
    permutation each was given; older windows weigh less than float32 can hold (``TRACK_HISTORY``).
    """

    def __init__(self, windows: list[Window], writer: TrackWriter):
        self.windows = windows
        self.writer = writer
        self.pending = None  # (K, overlap) tail of the previous window, not yet written
        self.history: collections.deque = collections.deque(maxlen=TRACK_HISTORY)  # (WindowCentroids, perm)
        self.aligned_by_centroids = 0
        self.reordered = 0  # windows whose k-means numbered the speakers differently from the tracks

    def track_centroids(self) -> np.ndarray | None:
        """``(K, emb)`` running centroid of each output track: ``c_0``, then ``(1 - m) T + m c_i`` per window."""
        running = None
        for centroids, perm in self.history:
            values = centroids()[list(perm)]
            running = values if running is None else (1 - CENTROID_MOMENTUM) * running + CENTROID_MOMENTUM * values
        return running

    def add(self, index: int, tracks: np.ndarray, centroids: WindowCentroids | None) -> float:
        """Take window ``index``'s ``(K, end - start)`` tracks; returns the seconds spent writing."""
        window = self.windows[index]
        perm = tuple(range(tracks.shape[0]))
        if self.pending is not None:
            overlap = self.pending.shape[1]
            perm, method = align_permutation(self.pending, tracks[:, :overlap],
                                             self.track_centroids if self.history else None, centroids)
            self.aligned_by_centroids += method == "centroids"
            tracks = tracks[list(perm)]
            self.reordered += perm != tuple(range(len(perm)))
            head = crossfade(self.pending, tracks[:, :overlap])
        else:
            overlap, head = 0, tracks[:, :0]
        if centroids is not None:
            self.history.append((centroids, perm))
        if index + 1 < len(self.windows):
            keep = self.windows[index + 1].start - window.start  # written now; the rest overlaps the next window
            body, self.pending = tracks[:, overlap:keep], tracks[:, keep:]
        else:
            body, self.pending = tracks[:, overlap:], None
        began = time.perf_counter()
        self.writer.write(np.concatenate([head, body], axis=1))
        return time.perf_counter() - began


class _InlineExecutor:
    """``submit`` runs the call at once: ``ThreadPoolExecutor``'s interface without the thread."""

    def submit(self, function, *args) -> Future:
        future = Future()
        try:
            future.set_result(function(*args))
        except BaseException as error:
            future.set_exception(error)
        return future

    def __enter__(self) -> "_InlineExecutor":
        return self

    def __exit__(self, *exc) -> None:
        pass


def io_executor(overlap: bool, name: str):
    """One background thread for reading or writing beside the network (``overlap``), or none: a context
    manager with ``submit``. Leaving it waits for what was submitted (no thread outlives its files)."""
    return ThreadPoolExecutor(1, thread_name_prefix=name) if overlap else _InlineExecutor()


def separate_long(separator, input_path: str, output_paths: list, n_speakers: int,
                  config: WindowConfig = WindowConfig(), temp_dir: str | None = None, overlap_io: bool = True) -> dict:
    """Separate a local audio file of any length into K local WAV files at the model's rate.

    Args:
        separator: a ``deepclust.separation.Separator`` (its ``sample_rate``, ``embed_batch`` and
            clustering are used).
        input_path: local audio file, any rate and channel count (downmixed, resampled).
        output_paths: K local paths for ``s1.wav .. sK.wav``; each appears only when complete.
        n_speakers: K.
        config: windowing.
        temp_dir: where the partial outputs are written (same filesystem as the outputs).
        overlap_io: read the next group of windows in a background thread while the network runs on this
            one (the outputs are the same either way; ``read_seconds`` is then partly hidden behind it).

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
        raise ValueError(f"{k} speakers need {k} output paths, got {len(output_paths)}")
    began = time.perf_counter()
    rate = separator.sample_rate
    reader = BlockReader(input_path, rate, config.context_seconds)
    timings = {"read_seconds": 0.0, "network_seconds": 0.0, "clustering_seconds": 0.0, "write_seconds": 0.0}
    writer = None
    try:
        window, hop = config.samples(rate)
        windows = plan_windows(reader.n_samples, window, hop)
        writer = TrackWriter(output_paths, rate, temp_dir)
        stitcher = _Stitcher(windows, writer)
        starts = range(0, len(windows), config.windows_per_batch)

        def read_group(first: int) -> tuple[list, float]:
            tick = time.perf_counter()
            group = windows[first:first + config.windows_per_batch]
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
                group = windows[first:first + config.windows_per_batch]
                separated = _separate_nonsilent(separator, waveforms, k, timings)
                tick, written = time.perf_counter(), 0.0
                for offset, (w, (tracks, centroids)) in enumerate(zip(group, separated)):
                    used = tracks[:, w.start - w.context_start:]
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
    return {"duration": reader.duration, "sample_rate": reader.input_rate, "channels": reader.channels,
            "output_sample_rate": rate, "windows": len(windows),
            "aligned_by_centroids": int(stitcher.aligned_by_centroids), "reordered_windows": int(stitcher.reordered),
            **timings, "seconds": time.perf_counter() - began}


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
