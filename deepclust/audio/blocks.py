"""Audio read and written in blocks, so a recording of any length costs memory bounded by one block.

``BlockReader`` reads any span of a recording made mono and resampled (exactly as the whole file would
be), ``TrackWriter`` appends K output tracks under temporary names and renames them into place when
complete, and ``check_wav_complete`` catches a WAV cut short (libsndfile would silently read less).
Used by long-recording separation (``deepclust.separation.long``) and the separation batch loop.
"""

from __future__ import annotations

import io
import math
import os
import uuid

import numpy as np
import soundfile as sf

from deepclust.audio.downmix import channel_stats, choose_downmix, silence_reason
from deepclust.audio.files import check_header, check_regular_file, resample, sphere_as_wav, unreadable
from deepclust.audio.reasons import library_message, wav_truncation
from deepclust.faults.errors import BadAudioError

SURVEY_FRAMES = 1 << 18  # frames per block of the first look at a file (16 s at 16 kHz)


def check_wav_complete(path: str) -> None:
    """Raise ``BadAudioError`` when a RIFF/WAVE file holds fewer audio bytes than its header declares
    (``deepclust.audio.reasons.wav_truncation``)."""
    with open(path, "rb") as handle:
        shortfall = wav_truncation(handle, os.fstat(handle.fileno()).st_size)
    if shortfall:
        raise BadAudioError(path, shortfall)


class BlockReader:
    """Reads ``[start, end)`` of a recording in *output* samples (mono, at ``sample_rate``) block by block.

    Output sample ``m`` sits at time ``m / sample_rate``. Blocks are read from input sample positions
    that map to whole output samples (multiples of ``rate_in / gcd``), so the resampled block lines up
    exactly with the whole-file resampling; ``context`` output samples on each side keep the
    polyphase filter's edges outside the part that is used.

    Opening takes a first look at the whole file, block by block (``SURVEY_FRAMES``): a file cut short,
    undecodable, non-finite or silent in every channel fails here, before any compute, and how it is made mono
    is decided once for the whole file (``deepclust.audio.downmix.choose_downmix``, as ``read_audio`` decides it).
    Deciding per block would switch between the mean and one channel mid-recording (a jump in level and
    content the separator would carry into its output); a decision from the file's start alone would miss a
    recording that begins in silence. ``downmix`` says what was chosen. ``channel``: 1-based, or None (the
    rule).

    A file that fits in one survey block (every short input) keeps that block until it is read or closed, so it
    is decoded once, not twice; longer files are decoded again block by block as they are read.
    """

    def __init__(self, path: str, sample_rate: int, context_seconds: float = 0.05, channel: int | None = None):
        self.path = str(path)
        self._whole: np.ndarray | None = None  # the decoded file, when the survey's one block held all of it
        check_regular_file(self.path)
        check_wav_complete(self.path)
        # NIST SPHERE (WSJ0's shorten-compressed .wv1) is decoded to WAV in memory first: libsndfile cannot
        # read shorten. Such files are utterances of seconds, not hours.
        sphere = sphere_as_wav(self.path) if self.path.lower().endswith((".sph", ".wv1", ".wv2")) else None
        try:
            self.file = sf.SoundFile(io.BytesIO(sphere) if sphere is not None else self.path)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
            raise unreadable(self.path, error) from error
        except OSError as error:
            raise BadAudioError(
                self.path, f"cannot be opened ({type(error).__name__})", library_message(error)
            ) from error
        self.input_rate = int(self.file.samplerate)
        self.channels = int(self.file.channels)
        self.input_frames = int(self.file.frames)
        self.sample_rate = int(sample_rate)
        try:
            if self.input_frames <= 0:
                raise BadAudioError(self.path, f"0 samples: its {self.file.format} header declares no audio")
            check_header(self.path, self.input_rate, self.input_frames)
            self.channel_index, self.downmix = self._survey(channel)
        except BaseException:
            self.close()
            raise
        g = math.gcd(self.input_rate, self.sample_rate)
        self.input_step, self.output_step = self.input_rate // g, self.sample_rate // g
        # Same length as resample(whole file): resample_poly gives ceil(n * up / down) samples.
        self.n_samples = -(-self.input_frames * self.output_step // self.input_step)
        steps = math.ceil(context_seconds * self.sample_rate / self.output_step) if context_seconds > 0 else 0
        self.context = steps * self.output_step
        self.peak = 0.0

    def _read_frames(self, first: int, count: int) -> np.ndarray:
        """Input frames ``[first, first + count)`` as ``(frames, channels)``; ``BadAudioError`` when the file
        cannot be decoded there or ends before."""
        if self._whole is not None:
            return self._whole[first : first + count]
        try:
            self.file.seek(first)
            block = self.file.read(count, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as error:
            raise BadAudioError(
                self.path,
                f"corrupt or truncated {self.file.format} file: decoding failed near {first / self.input_rate:.2f} s",
                library_message(error),
            ) from error
        if block.shape[0] < count:
            raise BadAudioError(
                self.path,
                f"truncated: the header promises {self.input_frames:,} samples, "
                f"reading stopped at {first + block.shape[0]:,}",
            )
        return block

    def _survey(self, channel: int | None) -> tuple[int | None, str]:
        """One pass over the file: ``(channel index or None for the mean, downmix description)``."""
        peaks, energies, mix_energy = np.zeros(self.channels), np.zeros(self.channels), 0.0
        non_finite, first_bad = 0, None
        for first in range(0, self.input_frames, SURVEY_FRAMES):
            block = self._read_frames(first, min(SURVEY_FRAMES, self.input_frames - first))
            if self.input_frames <= SURVEY_FRAMES:
                self._whole = block
            finite = np.isfinite(block)
            if not finite.all():
                non_finite += int(block.size - np.count_nonzero(finite))
                if first_bad is None:
                    first_bad = first + int(np.argmin(finite.all(axis=1)))
                continue
            block_peaks, block_energies, block_mix = channel_stats(block.T)
            peaks, energies, mix_energy = (
                np.maximum(peaks, block_peaks),
                energies + block_energies,
                mix_energy + block_mix,
            )
        if non_finite:
            raise BadAudioError(
                self.path,
                f"{non_finite:,} non-finite samples (NaN or Inf), the first at {first_bad / self.input_rate:.2f} s",
            )
        silent = silence_reason(peaks)
        if silent:
            raise BadAudioError(self.path, silent)
        return choose_downmix(self.path, peaks, energies, mix_energy, channel)

    @property
    def duration(self) -> float:
        """Length of the recording in seconds."""
        return self.input_frames / self.input_rate

    def read(self, start: int, end: int) -> np.ndarray:
        """Output samples ``[start, end)`` as float32 ``(end - start,)``, made mono as ``downmix`` says."""
        step_out, step_in = self.output_step, self.input_step
        first = max(0, (start // step_out) * step_out - self.context)  # a multiple of step_out
        last = -(-end // step_out) * step_out + self.context
        in_first = first // step_out * step_in
        in_last = min(self.input_frames, last // step_out * step_in)
        block = self._read_frames(in_first, in_last - in_first)  # (frames, channels)
        if not np.all(np.isfinite(block)):
            bad = int(block.size - np.count_nonzero(np.isfinite(block)))
            raise BadAudioError(
                self.path,
                f"{bad:,} non-finite samples (NaN or Inf) in the block from {in_first / self.input_rate:.2f} s",
            )
        mono = block.mean(axis=1) if self.channel_index is None else block[:, self.channel_index]
        if mono.size:
            self.peak = max(self.peak, float(np.max(np.abs(mono))))
        resampled = resample(mono, self.input_rate, self.sample_rate)
        piece = resampled[start - first : end - first]
        if piece.shape[0] < end - start:  # the last block: resampled length rounds down at the file end
            piece = np.pad(piece, (0, end - start - piece.shape[0]))
        return np.ascontiguousarray(piece, dtype=np.float32)

    def close(self) -> None:
        """Close the sound file (and drop a kept decoded block)."""
        self._whole = None
        self.file.close()


class TrackWriter:
    """K output WAV files written incrementally under temporary names, renamed into place by ``commit``.

    Temporary files live in ``temp_dir`` (default: beside each output); it must be on the same
    filesystem as the outputs so that ``os.replace`` is an atomic rename.
    """

    def __init__(self, output_paths: list, sample_rate: int, temp_dir: str | None = None, subtype: str = "PCM_16"):
        self.output_paths = [os.path.abspath(str(p)) for p in output_paths]
        self.subtype = subtype
        self.temp_paths = []
        self.files = []
        token = uuid.uuid4().hex[:12]
        try:
            for path in self.output_paths:
                folder = temp_dir or os.path.dirname(path)
                os.makedirs(folder, exist_ok=True)
                temp = os.path.join(folder, f".tmp-{token}-{os.path.basename(path)}")
                self.temp_paths.append(temp)
                self.files.append(
                    sf.SoundFile(temp, "w", samplerate=int(sample_rate), channels=1, subtype=subtype, format="WAV")
                )
        except BaseException:
            self.abort()
            raise

    def write(self, tracks: np.ndarray) -> None:
        """Append ``(K, samples)``."""
        if self.subtype.startswith("PCM"):
            tracks = np.clip(tracks, -1.0, 1.0 - 1.0 / 32768)
        for handle, track in zip(self.files, tracks):
            handle.write(np.ascontiguousarray(track, dtype=np.float32))

    def commit(self) -> None:
        """Close and fsync the temporary files, then rename each onto its output path: the outputs appear complete."""
        for handle in self.files:
            handle.close()
        for temp in self.temp_paths:
            # On disk before the rename: a crash must never leave a renamed-but-empty output behind a
            # manifest row that says done (as storage.write_bytes_atomic does).
            with open(temp, "rb+") as synced:
                os.fsync(synced.fileno())
        for temp, path in zip(self.temp_paths, self.output_paths):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.replace(temp, path)
        self.temp_paths = []

    def abort(self) -> None:
        """Close and delete the temporary files; no output is written."""
        for handle in self.files:
            handle.close()
        for temp in self.temp_paths:
            if os.path.exists(temp):
                os.unlink(temp)
        self.temp_paths = []
