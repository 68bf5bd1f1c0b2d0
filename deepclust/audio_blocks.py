"""Audio read and written in blocks, so a recording of any length costs memory bounded by one block.

``BlockReader`` reads any span of a recording downmixed and resampled (exactly as the whole file would
be), ``TrackWriter`` appends K output tracks under temporary names and renames them into place when
complete, and ``check_wav_complete`` catches a WAV cut short (libsndfile would silently read less).
Used by long-recording separation (``deepclust.separation.long``) and the separation batch loop.
"""

from __future__ import annotations

import io
import math
import os
import struct
import uuid

import numpy as np
import soundfile as sf

from deepclust.audio import check_header, check_regular_file, resample, sphere_as_wav
from deepclust.errors import BadAudioError


def check_wav_complete(path: str) -> None:
    """Raise ``BadAudioError`` when a RIFF/WAVE file holds fewer audio bytes than its header declares.

    libsndfile silently shortens such a file to what is there, so a transfer cut short would otherwise
    be separated as if it were whole. Streamed WAVs with a 0 or 0xFFFFFFFF data size are left alone.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        header = handle.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return
        position = 12
        while position + 8 <= size:
            handle.seek(position)
            chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
            if chunk_id == b"data":
                held = size - position - 8
                if chunk_size not in (0, 0xFFFFFFFF) and held < chunk_size:
                    raise BadAudioError(path, f"truncated WAV: header declares {chunk_size} bytes of audio, "
                                              f"the file holds {held}")
                return
            position += 8 + chunk_size + (chunk_size & 1)


class BlockReader:
    """Reads ``[start, end)`` of a recording in *output* samples (mono, at ``sample_rate``) block by block.

    Output sample ``m`` sits at time ``m / sample_rate``. Blocks are read from input sample positions
    that map to whole output samples (multiples of ``rate_in / gcd``), so the resampled block lines up
    exactly with the whole-file resampling; ``context`` output samples on each side keep the
    polyphase filter's edges outside the part that is used.
    """

    def __init__(self, path: str, sample_rate: int, context_seconds: float = 0.05):
        self.path = str(path)
        check_regular_file(self.path)
        check_wav_complete(self.path)
        # NIST SPHERE (WSJ0's shorten-compressed .wv1) is decoded to WAV in memory first: libsndfile cannot
        # read shorten. Such files are utterances of seconds, not hours.
        sphere = sphere_as_wav(self.path) if self.path.lower().endswith((".sph", ".wv1", ".wv2")) else None
        try:
            self.file = sf.SoundFile(io.BytesIO(sphere) if sphere is not None else self.path)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
            raise BadAudioError(self.path, f"unreadable as audio ({error})") from error
        except OSError as error:
            raise BadAudioError(self.path, f"cannot open ({error})") from error
        self.input_rate = int(self.file.samplerate)
        self.channels = int(self.file.channels)
        self.input_frames = int(self.file.frames)
        self.sample_rate = int(sample_rate)
        if self.input_frames <= 0:
            self.close()
            raise BadAudioError(self.path, "0 samples (empty, or its length cannot be read)")
        try:
            check_header(self.path, self.input_rate, self.input_frames)
        except BadAudioError:
            self.close()
            raise
        g = math.gcd(self.input_rate, self.sample_rate)
        self.input_step, self.output_step = self.input_rate // g, self.sample_rate // g
        # Same length as resample(whole file): resample_poly gives ceil(n * up / down) samples.
        self.n_samples = -(-self.input_frames * self.output_step // self.input_step)
        steps = math.ceil(context_seconds * self.sample_rate / self.output_step) if context_seconds > 0 else 0
        self.context = steps * self.output_step
        self.peak = 0.0

    @property
    def duration(self) -> float:
        """Length of the recording in seconds."""
        return self.input_frames / self.input_rate

    def read(self, start: int, end: int) -> np.ndarray:
        """Output samples ``[start, end)`` as float32 ``(end - start,)``."""
        step_out, step_in = self.output_step, self.input_step
        first = max(0, (start // step_out) * step_out - self.context)  # a multiple of step_out
        last = -(-end // step_out) * step_out + self.context
        in_first = first // step_out * step_in
        in_last = min(self.input_frames, last // step_out * step_in)
        try:
            self.file.seek(in_first)
            block = self.file.read(in_last - in_first, dtype="float32", always_2d=True)  # (frames, channels)
        except (sf.LibsndfileError, RuntimeError) as error:
            raise BadAudioError(self.path, f"corrupt or truncated: decoding failed near "
                                           f"{in_first / self.input_rate:.2f} s ({error})") from error
        if block.shape[0] < in_last - in_first:
            raise BadAudioError(self.path, f"truncated: the header promises {self.input_frames} samples, "
                                           f"reading stopped at {in_first + block.shape[0]}")
        if not np.all(np.isfinite(block)):
            bad = int(block.size - np.count_nonzero(np.isfinite(block)))
            raise BadAudioError(self.path, f"{bad} non-finite samples (NaN or Inf) in the block from "
                                           f"{in_first / self.input_rate:.2f} s")
        mono = block.mean(axis=1)
        if mono.size:
            self.peak = max(self.peak, float(np.max(np.abs(mono))))
        resampled = resample(mono, self.input_rate, self.sample_rate)
        piece = resampled[start - first:end - first]
        if piece.shape[0] < end - start:  # the last block: resampled length rounds down at the file end
            piece = np.pad(piece, (0, end - start - piece.shape[0]))
        return np.ascontiguousarray(piece, dtype=np.float32)

    def close(self) -> None:
        """Close the sound file."""
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
                self.files.append(sf.SoundFile(temp, "w", samplerate=int(sample_rate), channels=1,
                                               subtype=subtype, format="WAV"))
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
