"""Audio in and out, below every domain: reading, resampling and writing whole files (``files``), reading any span
of a recording and writing tracks as they grow (``blocks``), one rule for making mono (``downmix``), and the plain
words for why a file cannot be read (``reasons``).

``from deepclust.audio import read_audio, resample, write_audio``: the names of ``files`` are this package's own.
"""

from deepclust.audio.files import (
    AUDIO_EXTENSIONS,
    MAX_DURATION_SECONDS,
    SPHERE_MAGIC,
    audio_info,
    check_header,
    check_regular_file,
    check_waveform,
    read_audio,
    resample,
    sphere_as_wav,
    unreadable,
    write_audio,
)

__all__ = [
    "AUDIO_EXTENSIONS",
    "MAX_DURATION_SECONDS",
    "SPHERE_MAGIC",
    "audio_info",
    "check_header",
    "check_regular_file",
    "check_waveform",
    "read_audio",
    "resample",
    "sphere_as_wav",
    "unreadable",
    "write_audio",
]
