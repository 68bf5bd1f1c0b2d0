"""Any folder of speech files whose paths name the speaker (LibriSpeech, VCTK, FSDD or a custom regex).

The speaker comes from a regular expression with a named group ``speaker``, searched for (``re.search``)
in the path relative to ``root`` (``/`` separators). Speakers are split into "train" and "test" subsets so that no
test speaker is heard in training. Unreadable audio is skipped and listed in ``manifest.attrs["errors"]``.
"""

from __future__ import annotations

import logging
import re
from pathlib import PurePosixPath

import numpy as np
import pandas as pd

from deepclust import storage
from deepclust.audio import AUDIO_EXTENSIONS
from deepclust.corpora.manifest import build_manifest, normalise_gender, probe_audio
from deepclust.faults.errors import BadAudioError

logger = logging.getLogger(__name__)

_SPEAKER_FOLDERS = r"(?:.*/)?(?P<speaker>[^/]+)/(?P=speaker)_\d+\.\w+$"
PRESETS = {
    # <speaker>/<chapter>/<speaker>-<chapter>-<index>.flac (any audio suffix)
    "librispeech": r"(?:.*/)?(?P<speaker>\d+)-(?P<chapter>\d+)-\d+\.\w+$",
    # wav48/<speaker>/<speaker>_<index>.wav, speaker like p225
    "vctk": r"(?:.*/)?(?P<speaker>p\d+|s\d+)/[^/]+\.\w+$",
    # <digit>_<speaker>_<index>.wav
    "fsdd": r"(?:.*/)?\d_(?P<speaker>[^_/]+)_\d+\.wav$",
    # speechocean762: <speaker>/<utterance>.flac, speaker = 4 digits, utterance id starting with it
    "speechocean762": r"(?:.*/)?(?P<speaker>\d{4})/\d+\.\w+$",
    # Speech Commands pseudo-utterances (../shared/corpora): <speaker>/<speaker>_<k>.flac, 8 hex digits
    "speech-commands": r"(?:.*/)?(?P<speaker>[0-9a-f]{8})/(?P=speaker)_\d+\.\w+$",
    # Arabic Speech Commands, the same layout with 8 decimal digits
    "arabic-speech-commands": r"(?:.*/)?(?P<speaker>\d{8})/(?P=speaker)_\d+\.\w+$",
    # Any corpus laid out <speaker>/<speaker>_<k>.<ext> (the OGG Opus corpora of ../shared/corpora: msc-malayalam,
    # alnum-accented-english, cv-fa-uz-tw), whatever its speaker ids look like.
    "speaker-folders": _SPEAKER_FOLDERS,
    "msc-malayalam": _SPEAKER_FOLDERS,
    "alnum-accented-english": _SPEAKER_FOLDERS,
    "cv-fa-uz-tw": _SPEAKER_FOLDERS,
}


def speaker_pattern(pattern: str) -> re.Pattern:
    """A preset name or a regex with a named group ``speaker``, compiled."""
    compiled = re.compile(PRESETS.get(pattern, pattern))
    if "speaker" not in compiled.groupindex:
        raise ValueError(
            f"pattern {pattern!r} is neither a preset {sorted(PRESETS)} nor a regex with a named group (?P<speaker>...)"
        )
    return compiled


def read_fsdd_genders(root: str) -> dict[str, str]:
    """FSDD's ``speakers.csv`` (columns speaker, gender: male/female) beside the recordings folder."""
    for folder in (storage.parent(root), root):
        path = storage.join(folder, "speakers.csv")
        if storage.exists(path):
            with storage.open_url(path, "rb") as handle:
                table = pd.read_csv(handle)
            return {str(s): g for s, g in zip(table["speaker"], table["gender"].map(normalise_gender)) if g}
    return {}


def split_speakers(speakers, test_speakers=None, test_fraction: float = 0.25, seed: int = 0) -> dict[str, str]:
    """``{speaker: "train"|"test"}``: the given test speakers, or a seeded random ``test_fraction`` of them."""
    speakers = sorted(set(speakers))
    if test_speakers is None:
        n_test = int(round(test_fraction * len(speakers)))
        if len(speakers) > 1:
            n_test = min(max(n_test, 1), len(speakers) - 1)  # keep both subsets non-empty
        chosen = np.random.default_rng(seed).permutation(len(speakers))[:n_test]
        test_speakers = [speakers[i] for i in chosen]
    test = {str(s) for s in test_speakers}
    unknown = test - set(speakers)
    if unknown:
        raise ValueError(f"test speakers {sorted(unknown)} have no audio in the corpus")
    return {s: "test" if s in test else "train" for s in speakers}


def _relative(path: str, root: str) -> str:
    return str(PurePosixPath(path.replace("\\", "/")).relative_to(PurePosixPath(root.replace("\\", "/"))))


def prepare_folder(
    root,
    pattern: str = "librispeech",
    genders: dict | None = None,
    test_speakers: list | None = None,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> pd.DataFrame:
    """Corpus manifest of the audio files under ``root`` whose relative path matches ``pattern``.

    utterance_id is the file stem (the relative path with ``/`` as ``-`` if stems repeat). Non-audio
    files are ignored; audio files the pattern does not match are skipped with one logged warning;
    unreadable ones are skipped and listed in ``manifest.attrs["errors"]``.
    """
    root = storage.absolute(str(root)).rstrip("/")
    regex = speaker_pattern(pattern)
    if genders is None and pattern == "fsdd":
        genders = read_fsdd_genders(root)
    genders = {str(k): normalise_gender(v) for k, v in (genders or {}).items()}

    if not storage.exists(root):
        raise FileNotFoundError(f"{root}: no such folder")
    rows, errors, unmatched = [], [], []
    for path in storage.list_files(root, AUDIO_EXTENSIONS):
        relative = _relative(path, root)
        match = regex.search(relative)
        if PurePosixPath(relative).name.startswith("."):
            continue  # hidden files: editor and OS droppings, temporary files of atomic writes
        if match is None:
            unmatched.append(relative)
            continue
        try:
            duration, sample_rate = probe_audio(path)
        except BadAudioError as error:
            errors.append(error)
            continue
        speaker = match.group("speaker")
        rows.append(
            dict(
                utterance_id=str(PurePosixPath(relative).with_suffix("")),
                path=path,
                speaker=speaker,
                gender=genders.get(speaker),
                duration=duration,
                sample_rate=sample_rate,
            )
        )
    if unmatched:
        logger.warning(
            "%d audio files under %s do not match pattern %r, e.g. %s", len(unmatched), root, pattern, unmatched[0]
        )
    if not rows:
        raise FileNotFoundError(f"no audio under {root} matches pattern {pattern!r} ({len(errors)} unreadable)")
    _shorten_ids(rows)
    subsets = split_speakers([r["speaker"] for r in rows], test_speakers, test_fraction, seed)
    for row in rows:
        row["subset"] = subsets[row["speaker"]]
    return build_manifest(rows, errors)


def _shorten_ids(rows: list[dict]) -> None:
    """Use the file stem as utterance_id when stems are unique (the usual case), else the relative path."""
    stems = [PurePosixPath(r["utterance_id"]).name for r in rows]
    if len(set(stems)) == len(stems):
        for row, stem in zip(rows, stems):
            row["utterance_id"] = stem
    else:
        for row in rows:
            row["utterance_id"] = row["utterance_id"].replace("/", "-")
