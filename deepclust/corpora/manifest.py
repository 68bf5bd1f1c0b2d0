"""The corpus manifest shared by every corpus recipe: columns, audio probing, validation.

A corpus manifest is a DataFrame with one row per utterance (see ``COLUMNS``). Files that cannot be
read are never dropped silently: recipes record them in ``manifest.attrs["errors"]`` as
``{"path", "reason"}`` dicts (JSON-serialisable, so they survive ``to_parquet``) and log a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import pandas as pd

from deepclust.audio import audio_info
from deepclust.faults.errors import BadAudioError
from deepclust.storage.manifests import SCHEMAS, validate

logger = logging.getLogger(__name__)

COLUMNS = tuple(SCHEMAS["corpus"].required)  # the corpus manifest's columns (deepclust.storage.manifests)
GENDERS = ("m", "f", None)


def probe_audio(path: str) -> tuple[float, int]:
    """``(duration in s, sample rate in Hz)`` from the file header; ``BadAudioError`` if unusable."""
    sample_rate, frames, _channels = audio_info(path)
    if frames <= 0:
        raise BadAudioError(path, "0 samples")
    return frames / sample_rate, sample_rate


def normalise_gender(value) -> str | None:
    """Map "M"/"male"/"F"/"female" (any case) to "m"/"f"; anything else to None."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    text = str(value).strip().lower()
    if text in ("m", "male"):
        return "m"
    if text in ("f", "female"):
        return "f"
    return None


def build_manifest(
    rows: Iterable[dict], errors: Iterable[BadAudioError] = (), extra_columns: tuple[str, ...] = ()
) -> pd.DataFrame:
    """Rows (dicts with ``COLUMNS`` and ``extra_columns``) to a validated manifest sorted by utterance_id.

    ``errors`` (skipped files) are logged and kept in ``attrs["errors"]`` as ``{"path", "reason"}`` dicts.
    """
    frame = conform_manifest(pd.DataFrame(list(rows), columns=[*COLUMNS, *extra_columns]))
    errors = list(errors)
    frame.attrs["errors"] = [{"path": e.path, "reason": e.reason} for e in errors]
    for error in errors:
        logger.warning("skipped unreadable audio: %s", error)
    validate_manifest(frame)
    return frame


def conform_manifest(frame: pd.DataFrame) -> pd.DataFrame:
    """Canonical dtypes and row order, so a built manifest equals the same one read back from Parquet."""
    frame = frame.astype(
        {"utterance_id": str, "path": str, "speaker": str, "duration": float, "sample_rate": "int64", "subset": str}
    )
    # object dtype holding None for unknown gender (a str column would hold NaN instead).
    frame["gender"] = pd.Series([normalise_gender(g) for g in frame["gender"]], index=frame.index, dtype=object)
    return frame.sort_values("utterance_id", kind="stable").reset_index(drop=True)


def validate_manifest(frame: pd.DataFrame, where: str = "corpus manifest") -> None:
    """Raise ``ValueError`` naming ``where`` and the first problem: missing columns or wrong types (the schema,
    ``deepclust.storage.manifests.validate``), duplicate ids, bad values."""
    validate(frame, "corpus", where)
    duplicated = frame["utterance_id"][frame["utterance_id"].duplicated()]
    if len(duplicated):
        raise ValueError(f"duplicate utterance_id {duplicated.iloc[0]!r} ({len(duplicated)} duplicates)")
    bad_gender = [g for g in frame["gender"] if g not in GENDERS]
    if bad_gender:
        raise ValueError(f"gender must be 'm', 'f' or None, got {bad_gender[0]!r}")
    if len(frame) and not (frame["duration"] > 0).all():
        raise ValueError("every duration must be > 0 s")
    if len(frame) and not (frame["sample_rate"] > 0).all():
        raise ValueError("every sample_rate must be > 0 Hz")
