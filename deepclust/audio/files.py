"""Reading, resampling and writing audio.

Reads whatever libsndfile reads (WAV, FLAC, OGG/Vorbis, ...) and NIST SPHERE as LDC ships it (WSJ0's
``.wv1``/``.wv2``, ``.sph``: pcm, ulaw or alaw, shorten-compressed or not, 1-2 channels, either byte order,
decoded by ``desphere`` exactly as LDC's sph2pipe does), from local paths or fsspec URLs. Every way audio
can be unusable raises ``BadAudioError(path, reason, detail)``, its reason in plain words
(``deepclust.audio.reasons``). Mono is made by
``deepclust.audio.downmix.choose_downmix``, the rule that files read in blocks follow too.
"""

from __future__ import annotations

import io
import math
import os
import stat

import numpy as np
import soundfile as sf

from deepclust import storage
from deepclust.audio.downmix import channel_stats, choose_downmix
from deepclust.audio.reasons import HEAD_BYTES, library_message, local_head, unreadable_reason, wav_truncation
from deepclust.faults.errors import BadAudioError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".sph", ".wv1", ".wv2", ".aiff", ".aif", ".au", ".mp3")


def check_waveform(x: np.ndarray, path="<array>") -> np.ndarray:
    """Validate a waveform, ``(samples,)`` or ``(channels, samples)``; return it as float32."""
    x = np.asarray(x)
    if x.ndim not in (1, 2):
        raise BadAudioError(path, f"wrong shape {x.shape}: expected (samples,) or (channels, samples)")
    if x.ndim == 2 and x.shape[0] == 0:
        raise BadAudioError(path, "no channels")
    if x.shape[-1] == 0:
        raise BadAudioError(path, "0 samples")
    if not np.issubdtype(x.dtype, np.number):
        raise BadAudioError(path, f"not numeric audio (dtype {x.dtype})")
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise BadAudioError(path, f"{bad} non-finite samples (NaN or Inf)")
    return x


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling with a Kaiser-windowed anti-aliasing low-pass (time on the last axis)."""
    sr_in, sr_out = int(sr_in), int(sr_out)
    if sr_in == sr_out:
        return np.asarray(x, dtype=np.float32)
    g = math.gcd(sr_in, sr_out)
    # Imported here: SciPy's signal module costs 0.2 s at every start-up, and 8 kHz input never resamples.
    from scipy.signal import resample_poly

    y = resample_poly(np.asarray(x, dtype=np.float64), sr_out // g, sr_in // g, axis=-1, window=("kaiser", 8.0))
    return y.astype(np.float32)


SPHERE_MAGIC = b"NIST_1A"


def _is_sphere(path: str, head: bytes | None = None) -> bool:
    """By content when the first bytes are at hand, else by suffix (``.sph``, ``.wv1``, ``.wv2``)."""
    if head is not None:
        return head.startswith(SPHERE_MAGIC)
    return str(path).lower().endswith((".sph", ".wv1", ".wv2"))


def _local(path: str) -> str:
    return path[len("file://") :] if path.startswith("file://") else path


def _raw_bytes(path: str) -> bytes:
    if storage.is_local(path):
        if not os.path.exists(_local(path)):
            raise BadAudioError(path, "no such file")
        with open(_local(path), "rb") as handle:
            return handle.read()
    return storage.read_bytes(path)


def _sphere_to_wav(path: str, raw: bytes) -> bytes:
    """A SPHERE file's bytes as 16-bit PCM WAV bytes (sph2pipe's ``-p`` output, bit for bit)."""
    import desphere

    try:
        return desphere.transcode_bytes(raw)
    except (desphere.DesphereError, ValueError, IndexError, EOFError) as error:
        raise BadAudioError(
            path,
            "damaged or unsupported NIST SPHERE file: its header or its (shorten) audio cannot be decoded",
            library_message(error),
        ) from error


# What deepclust accepts from a header before allocating anything for it: a hostile or broken header (400 frames
# "at 50,000,017 Hz") would otherwise make resampling ask for gigabytes, again on every resume.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 384000
MAX_DURATION_SECONDS = 48 * 3600.0


def check_header(path: str, sample_rate: int, frames: int) -> None:
    """``BadAudioError`` for a sample rate outside 1 kHz - 384 kHz or more than 48 hours of declared audio."""
    if not MIN_SAMPLE_RATE <= int(sample_rate) <= MAX_SAMPLE_RATE:
        raise BadAudioError(
            path, f"implausible sample rate {sample_rate} Hz (accepted: {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz)"
        )
    if frames / sample_rate > MAX_DURATION_SECONDS:
        raise BadAudioError(
            path,
            f"declares {frames / sample_rate / 3600:.1f} h of audio ({frames} frames), more "
            f"than the {MAX_DURATION_SECONDS / 3600:.0f} h accepted",
        )


def check_regular_file(path: str) -> None:
    """``BadAudioError`` for a local path that is not a regular file (a FIFO would block the reader for ever)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as error:
        raise BadAudioError(path, "no such file") from error
    if stat.S_ISDIR(mode):
        raise BadAudioError(path, "a directory, not a file (named like audio)")
    if stat.S_ISFIFO(mode):
        raise BadAudioError(path, "a FIFO (named pipe), not a regular file: not read (reading it could wait for ever)")
    if not stat.S_ISREG(mode):
        raise BadAudioError(path, "a device or socket, not a regular file: not read")


def unreadable(path, error: BaseException, head: bytes | None = None, size: int | None = None) -> BadAudioError:
    """The ``BadAudioError`` of a file the library could not open: plain words from its first bytes (read
    from ``path`` when not given), the library's message as its detail."""
    if head is None or size is None:
        head, size = local_head(_local(str(path)))
    message = library_message(error)
    return BadAudioError(path, unreadable_reason(head, size, str(path), message), message)


def _read(path: str):
    if storage.is_local(path):
        check_regular_file(_local(path))
    if _is_sphere(path):
        return _read_sphere(path)
    raw = None
    if not storage.is_local(path):
        try:
            raw = storage.read_bytes(path)
        except OSError as error:  # a timeout stays transient: its cause is kept
            raise BadAudioError(path, f"cannot be read ({type(error).__name__})", library_message(error)) from error
    try:
        source = _local(path) if raw is None else io.BytesIO(raw)
        _check_wav(path, source, len(raw) if raw is not None else os.path.getsize(_local(path)))
        with sf.SoundFile(source) as handle:  # the header first: nothing is allocated for a hostile one
            check_header(path, handle.samplerate, handle.frames)
            return handle.read(dtype="float32", always_2d=True), handle.samplerate
    except BadAudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        if raw is not None:
            raise unreadable(path, error, raw[:HEAD_BYTES], len(raw)) from error
        raise unreadable(path, error) from error
    except OSError as error:
        raise BadAudioError(path, f"cannot be opened ({type(error).__name__})", library_message(error)) from error


def _check_wav(path: str, source, size: int) -> None:
    """``BadAudioError`` for a WAV cut short (libsndfile would read what is there as if it were all)."""
    if isinstance(source, str):
        with open(source, "rb") as handle:
            shortfall = wav_truncation(handle, size)
    else:
        shortfall = wav_truncation(source, size)
        source.seek(0)
    if shortfall:
        raise BadAudioError(path, shortfall)


def sphere_as_wav(path: str) -> bytes | None:
    """A NIST SPHERE file (by its first bytes) as WAV bytes, for readers that stream through libsndfile;
    None when ``path`` is not SPHERE. ``BadAudioError`` when it is, but cannot be decoded."""
    try:
        raw = _raw_bytes(path)
    except OSError as error:
        raise BadAudioError(path, f"cannot be opened ({type(error).__name__})", library_message(error)) from error
    return _sphere_to_wav(path, raw) if _is_sphere(path, raw[:16]) else None


def _read_sphere(path: str):
    try:
        raw = _raw_bytes(path)
    except OSError as error:
        raise BadAudioError(path, f"cannot be opened ({type(error).__name__})", library_message(error)) from error
    if not _is_sphere(path, raw[:16]):  # a .wv1 that is not SPHERE (e.g. already converted): libsndfile
        try:
            return sf.read(io.BytesIO(raw), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
            raise unreadable(path, error, raw[:HEAD_BYTES], len(raw)) from error
    try:
        return sf.read(io.BytesIO(_sphere_to_wav(path, raw)), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        raise BadAudioError(
            path, "damaged NIST SPHERE file: its audio cannot be decoded", library_message(error)
        ) from error


def read_audio(
    url, target_sr: int | None = None, mono: bool = True, channel: int | None = None
) -> tuple[np.ndarray, int]:
    """Read audio as float32 in [-1, 1].

    Returns ``(samples,)`` when ``mono`` (``choose_downmix``: the channels' mean, or the loudest channel when
    the mean cancels, or ``channel``, 1-based), else ``(channels, samples)``, and the sample rate
    (``target_sr`` when given, after resampling).
    """
    path = str(url)
    data, sr = _read(path)
    x = check_waveform(data.T, path)  # (channels, samples)
    if mono:
        index, _ = choose_downmix(path, *channel_stats(x), channel=channel)
        x = x.mean(axis=0) if index is None else x[index]
    if target_sr is not None and int(target_sr) != int(sr):
        x = resample(x, sr, target_sr)
        sr = int(target_sr)
    return x, int(sr)


def audio_info(url) -> tuple[int, int, int]:
    """``(sample_rate, frames, channels)`` without decoding the samples (local files only read headers)."""
    path = str(url)
    if _is_sphere(path):
        return _sphere_info(path)
    try:
        if storage.is_local(path):
            check_regular_file(_local(path))
            info = sf.info(_local(path))
        else:
            raw = storage.read_bytes(path)
            info = sf.info(io.BytesIO(raw))
    except BadAudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError, ValueError) as error:
        if storage.is_local(path):
            raise unreadable(path, error) from error
        raise unreadable(path, error, raw[:HEAD_BYTES], len(raw)) from error
    return int(info.samplerate), int(info.frames), int(info.channels)


def _sphere_info(path: str) -> tuple[int, int, int]:
    """``(sample_rate, frames, channels)`` from a SPHERE header (the first 1024 bytes hold it, per NIST)."""
    import desphere

    try:
        if storage.is_local(path):
            with open(_local(path), "rb") as handle:
                head = handle.read(4096)
        else:
            with storage.open_url(path, "rb") as handle:
                head = handle.read(4096)
    except OSError as error:
        raise BadAudioError(path, f"cannot be opened ({type(error).__name__})", library_message(error)) from error
    if not _is_sphere(path, head):
        raw = _raw_bytes(path)
        try:
            info = sf.info(io.BytesIO(raw))
        except (sf.LibsndfileError, RuntimeError, OSError, TypeError, ValueError) as error:
            raise unreadable(path, error, raw[:HEAD_BYTES], len(raw)) from error
        return int(info.samplerate), int(info.frames), int(info.channels)
    try:
        header = desphere.SphereHeader.parse(head)
        return int(header.sample_rate), int(header.sample_count), int(header.channel_count)
    except (desphere.DesphereError, ValueError, KeyError, TypeError) as error:
        raise BadAudioError(path, "damaged NIST SPHERE header", library_message(error)) from error


def write_audio(url, x: np.ndarray, sr: int, subtype: str = "PCM_16") -> None:
    """Write ``(samples,)`` or ``(channels, samples)`` as WAV (or FLAC by suffix), atomically."""
    x = np.asarray(x, dtype=np.float32)
    data = x.T if x.ndim == 2 else x
    if subtype.startswith("PCM"):
        data = np.clip(data, -1.0, 1.0 - 1.0 / 32768)
    fmt = "FLAC" if str(url).lower().endswith(".flac") else "WAV"
    buffer = io.BytesIO()
    sf.write(buffer, data, int(sr), subtype=subtype, format=fmt)
    storage.write_bytes_atomic(str(url), buffer.getvalue())
