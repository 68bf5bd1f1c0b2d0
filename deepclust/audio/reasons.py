"""Why a file is not usable audio, in words a person can act on.

libsndfile says "Format not recognised." for a text file and for random bytes alike, and names the path it
was given, which for an object store is our scratch copy. So a reason is built from what the file *is* (its
first bytes and its size, compared with what its suffix promises): "empty file (0 bytes)", "text file named
.wav, not audio", "not a FLAC file: no fLaC signature". The library's own words go to ``detail`` only.
"""

from __future__ import annotations

import codecs
import os
import struct

import soundfile as sf

HEAD_BYTES = 512  # enough for every signature below and to tell text from binary

# Suffix -> (format, what its first bytes must hold).
EXPECTED = {
    ".wav": ("WAV", "RIFF/WAVE header"),
    ".flac": ("FLAC", "fLaC signature"),
    ".ogg": ("Ogg", "OggS signature"),
    ".oga": ("Ogg", "OggS signature"),
    ".sph": ("NIST SPHERE", "NIST_1A header"),
    ".wv1": ("NIST SPHERE", "NIST_1A header"),
    ".wv2": ("NIST SPHERE", "NIST_1A header"),
    ".aiff": ("AIFF", "FORM/AIFF header"),
    ".aif": ("AIFF", "FORM/AIFF header"),
    ".au": ("AU", ".snd signature"),
    ".mp3": ("MP3", "ID3 tag or MPEG frame sync"),
}
_AN = {"Ogg", "AIFF", "AU", "MP3"}  # read with a vowel sound first: "an Ogg file"

# libsndfile's messages (its ``error_string``) -> what they mean for a file whose format was recognised.
_TRANSLATIONS = [
    ("malformed", "its contents are malformed (cut short or corrupt)"),
    ("unimplemented format", "its header is cut short, or it uses an encoding this reader does not support"),
    ("lost sync", "corrupt or cut short: the decoder lost its place in the stream"),
    ("no 'data' chunk", "no audio data: the file ends inside its header"),
    ("not recognised", "its header is damaged"),
]


def file_kind(head: bytes) -> str | None:
    """The audio format that ``head`` (a file's first bytes) starts with, or None."""
    if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "WAV"
    if head[:4] == b"fLaC":
        return "FLAC"
    if head[:4] == b"OggS":
        return "Ogg"
    if head[:7] == b"NIST_1A":
        return "NIST SPHERE"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF"
    if head[:4] == b".snd":
        return "AU"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "MP3"
    return None


def looks_like_text(head: bytes) -> bool:
    """UTF-8 text without NUL bytes, nearly all of it printable (a README, a CSV, an HTML error page)."""
    if not head or b"\x00" in head:
        return False
    try:  # the head may end inside a multi-byte character: decode incrementally, not final
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    printable = sum(ch.isprintable() or ch in "\t\r\n\f" for ch in text)
    return bool(text) and printable >= 0.95 * len(text)


def library_message(error: BaseException) -> str:
    """The library's own words, without the path it was given (ours, not the user's)."""
    if isinstance(error, sf.LibsndfileError):
        return f"libsndfile: {error.error_string}"
    return f"{type(error).__name__}: {error}"


def unreadable_reason(head: bytes | None, size: int, name: str, message: str = "") -> str:
    """Plain words for a file the audio library could not open: what it is, against what its name promises.

    ``head``: its first bytes (``HEAD_BYTES``); ``size``: its length in bytes; ``name``: its path or URL (only
    the suffix is used); ``message``: the library's message (only used to say what is damaged). ``head`` None:
    the file itself could not be read.
    """
    if head is None:
        return "cannot be read (check its permissions)"
    if size == 0:
        return "empty file (0 bytes)"
    suffix = os.path.splitext(str(name).rstrip("/"))[1].lower()
    kind = file_kind(head)
    if kind is None:
        if looks_like_text(head):
            return f"text file named {suffix}, not audio" if suffix else "text file, not audio"
        if suffix in EXPECTED:
            expected, signature = EXPECTED[suffix]
            article = "an" if expected in _AN else "a"
            return (
                f"not {article} {expected} file: no {signature} (its first bytes match no audio format; {size:,} bytes)"
            )
        return f"not an audio file: its first bytes match no audio format ({size:,} bytes)"
    lowered = message.lower()
    what = next((plain for key, plain in _TRANSLATIONS if key in lowered), "it could not be decoded")
    named = "" if EXPECTED.get(suffix, (kind,))[0] == kind else f" named {suffix}"
    return f"damaged {kind} file{named}: {what} ({size:,} bytes)"


def local_head(path: str) -> tuple[bytes | None, int]:
    """``(first HEAD_BYTES bytes, size)`` of a local file; ``(None, 0)`` when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            return handle.read(HEAD_BYTES), os.fstat(handle.fileno()).st_size
    except OSError:
        return None, 0


def wav_truncation(handle, size: int) -> str | None:
    """Why a RIFF/WAVE file is cut short, or None (not a WAV, or complete). ``handle``: the file, binary, seekable;
    ``size``: its length in bytes.

    libsndfile reads what is there of such a file as if it were all, so a transfer cut short would otherwise be
    separated as if it were whole. Streamed WAVs with a 0 or 0xFFFFFFFF data size are left alone.
    """
    handle.seek(0)
    header = handle.read(12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        return None
    position = 12
    while position + 8 <= size:
        handle.seek(position)
        chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
        if chunk_id == b"data":
            held = size - position - 8
            if chunk_size not in (0, 0xFFFFFFFF) and held < chunk_size:
                return f"truncated WAV: header declares {chunk_size:,} bytes of audio, the file holds {held:,}"
            return None
        position += 8 + chunk_size + (chunk_size & 1)
    return f"truncated WAV: the file ends after {size:,} bytes, before its audio data begins"
