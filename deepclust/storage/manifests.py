"""Every manifest kind's schema, in one place: its columns, what each holds, which are required, and ``validate``.

A manifest is a table with one row per item (an utterance, a mixture, a feature row, a separated input, a score),
stored as ``manifest.parquet`` (``MANIFEST_NAME``) in its folder. Writers build their rows in the schema's column
order (``SCHEMAS[kind].names``) and validate before they write; readers validate what they read, so a consumer
never guards for a missing column: a manifest that lacks one is refused, naming the file and the column.

Each kind is named for the stage and the command that write it: corpus, mixtures, features, train, separate
(the recipe's stage and the ``separate`` command write the same kind), evaluate.

Item status: the kinds whose items can fail one by one (mixtures, features, separate, evaluate) have a ``status``
column (``"done"``, ``"failed"``; a separated input's row may also be ``"transient"``) and an ``error`` naming the
item and the reason. The corpus and train manifests have none: an unreadable corpus file is left out and logged
(``attrs["errors"]``), and a training run that fails has no manifest at all.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from deepclust import storage

__all__ = [
    "MANIFEST_NAME",
    "Column",
    "Schema",
    "SCHEMAS",
    "ManifestSchemaError",
    "validate",
    "read_manifest",
    "has_status",
]

MANIFEST_NAME = "manifest.parquet"


@dataclass(frozen=True)
class Column:
    """One column: its name, its type (``str``, ``int``, ``float``, ``bool``, ``list`` or ``any``; a null is
    allowed in any column, for the fields a failed item could not fill), what it holds, and whether every manifest
    of its kind has it."""

    name: str
    dtype: str
    meaning: str
    required: bool = True


@dataclass(frozen=True)
class Schema:
    """A manifest kind: its columns in the order writers use."""

    kind: str
    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        """Every column, required and optional, in order."""
        return [c.name for c in self.columns]

    @property
    def required(self) -> list[str]:
        """The columns every manifest of this kind has."""
        return [c.name for c in self.columns if c.required]


def _schema(kind: str, *columns: tuple) -> Schema:
    return Schema(kind, tuple(Column(*column) for column in columns))


# Columns several kinds declare alike, written once (each kind's columns and their order stay its own).
_SPLIT = ("split", "str", '"tr", "cv" or "tt"')
_NUM_SPEAKERS = ("num_speakers", "int", "number of sources")
_SPEAKERS = ("speakers", "list", "the speaker of each source")
_STATUS = ("status", "str", '"done" or "failed": a failed item never stops its batch')
_ERROR = ("error", "str", "why the item failed, naming it (empty or null when done)")
_OUTCOME = (_STATUS, _ERROR)  # the outcome of an item that may fail one by one (mixture, feature, evaluation)


class _Schemas(dict):
    """The schemas by kind; a kind's name before they were named for their stage still finds it, with a
    DeprecationWarning, for one release (``OLD_KIND_NAMES``)."""

    def __missing__(self, kind: str) -> Schema:
        if kind not in OLD_KIND_NAMES:
            raise KeyError(f"no manifest kind {kind!r}; the kinds are {sorted(self)}")
        warnings.warn(
            f"manifest kind {kind!r} is now {OLD_KIND_NAMES[kind]!r} (named for its stage); the old name goes in the "
            "next release",
            DeprecationWarning,
            stacklevel=3,
        )
        return self[OLD_KIND_NAMES[kind]]


# Each kind is named for the stage (and command) that writes it: one name per concept (issue 28).
OLD_KIND_NAMES = {
    "mixture": "mixtures",
    "feature": "features",
    "model": "train",
    "separation": "separate",
    "evaluation": "evaluate",
}

SCHEMAS: dict[str, Schema] = _Schemas(
    (schema.kind, schema)
    for schema in (
        _schema(
            "corpus",  # deepclust.corpora (validate_manifest adds the value checks); no status: see the module doc
            ("utterance_id", "str", "unique id of the utterance"),
            ("path", "str", "absolute path or URL of its audio"),
            ("speaker", "str", "speaker id"),
            ("gender", "any", '"m", "f" or None'),
            ("duration", "float", "seconds"),
            ("sample_rate", "int", "Hz, of the file"),
            ("subset", "str", 'the corpus-given subset ("si_tr_s", ...), or "train"/"test" by speaker split'),
        ),
        _schema(
            "mixtures",  # deepclust.mixing.mix.create_mixtures, the mixtures stage
            ("mixture_id", "str", "unique id, from the sources and their SNRs"),
            _SPLIT,
            ("mixture_path", "str", "the mixture WAV"),
            ("source_paths", "list", "the scaled source WAVs, s1, s2, ..."),
            ("utterance_ids", "list", "the corpus utterance of each source"),
            _SPEAKERS,
            ("genders", "list", '"m", "f" or None per source'),
            ("snrs_db", "list", "the mix list's relative level of each source, dB"),
            _NUM_SPEAKERS,
            ("sample_rate", "int", "Hz"),
            ("num_samples", "int", "mixture length (0 when failed)"),
            ("mode", "str", '"min" or "max" (wsj0-2mix length mode)'),
            *_OUTCOME,
            ("sha256", "str", "checksum of the mixture WAV (the mixtures stage adds it)", False),
        ),
        _schema(
            "features",  # deepclust.features.extract, the features stage
            ("mixture_id", "str", "the mixture the row was computed from"),
            _SPLIT,
            ("shard_url", "str", "the shard holding its log_mag, target and weight"),
            ("num_frames", "int", "STFT frames"),
            _NUM_SPEAKERS,
            *_OUTCOME,
            ("shard_sha256", "str", "checksum of the shard"),
        ),
        _schema(
            "train",  # the training stage's one row
            ("model_url", "str", "the trained model.pt"),
            ("sha256", "str", "its checksum"),
            ("best_val_loss", "float", "best validation loss"),
            ("epochs", "int", "epochs trained"),
            ("history_url", "str", "history.csv, one row per epoch"),
            ("loss_curve_png", "str", "the loss curve figure, or empty"),
        ),
        _schema(
            "separate",  # deepclust.separation.batch.separate_items, the archive job, the separation stage
            ("input", "str", "the input's URL"),
            ("relative_path", "str", "the input relative to the input root: the row's key"),
            ("mixture_id", "str", "the mixture, when the input came from a mixture manifest (else empty)"),
            ("output_stem", "str", "the output folder's name, unique after case folding"),
            ("status", "str", '"done", "failed" (the input\'s fault) or "transient" (tried again next run)'),
            _ERROR,
            ("error_detail", "str", "the library's own message, when it adds something"),
            ("duration", "float", "seconds of input"),
            ("sample_rate", "int", "Hz of the input"),
            ("channels", "int", "channels of the input"),
            ("downmix", "str", 'how it was made mono ("mono", "mean of 2 channels", ...)'),
            ("output_sample_rate", "int", "Hz of the outputs"),
            ("windows", "int", "network windows it took"),
            ("n_speakers", "int", "speakers separated"),
            ("outputs", "list", "the output files, relative to the output root"),
            ("input_id", "str", "the input's content identity (checksum, ETag or size and mtime)"),
            ("model_sha256", "str", "checksum of the model that separated it"),
            ("settings", "str", "the settings that made the outputs (JSON)"),
            ("seconds", "float", "wall time of the item"),
            ("read_seconds", "float", "reading and resampling"),
            ("network_seconds", "float", "network forward"),
            ("clustering_seconds", "float", "k-means or mask head"),
            ("write_seconds", "float", "writing the outputs"),
        ),
        _schema(
            "evaluate",  # deepclust.evaluation.results.evaluate_mixtures, the evaluation stage
            ("mixture_id", "str", "the mixture scored"),
            ("split", "str", "its split"),
            ("system", "str", '"model", "ibm", "irm" or another separator\'s name'),
            _NUM_SPEAKERS,
            _SPEAKERS,
            ("genders", "list", "the gender of each source"),
            ("gender_condition", "str", '"same" or "different" (two speakers), else null'),
            ("sdr", "float", "BSS-eval SDR, dB, mean over sources"),
            ("sir", "float", "SIR, dB"),
            ("sar", "float", "SAR, dB"),
            ("si_sdr", "float", "SI-SDR, dB"),
            ("sdr_mixture", "float", "SDR of the unprocessed mixture, dB"),
            ("si_sdr_mixture", "float", "SI-SDR of the unprocessed mixture, dB"),
            ("sdri", "float", "SDR improvement, dB"),
            ("si_sdri", "float", "SI-SDR improvement, dB"),
            *_OUTCOME,
            ("condition", "str", '"closed", "open" or "partly open" (the evaluation stage adds it)', False),
        ),
    )
)


class ManifestSchemaError(ValueError):
    """A manifest that does not follow its kind's schema: ``str(error)`` is ``"<where>: <kind> manifest <reason>"``."""

    def __init__(self, where, kind: str, reason: str):
        self.where, self.kind, self.reason = str(where), kind, reason
        super().__init__(f"{self.where}: {kind!r} manifest {reason}")

    def __reduce__(self):
        return (ManifestSchemaError, (self.where, self.kind, self.reason))


def _first_value(series: pd.Series):
    values = series.dropna()
    return values.iloc[0] if len(values) else None


def _type_problem(series: pd.Series, dtype: str) -> str | None:
    """Why ``series`` cannot hold ``dtype`` values, or None. Cheap: the dtype, and for object columns the first
    non-null value only (a manifest can hold millions of rows)."""
    if dtype == "any" or series.isna().all():
        return None
    kind = series.dtype.kind
    first = _first_value(series)
    number = isinstance(first, (int, float, np.integer, np.floating)) and not isinstance(first, (bool, np.bool_))
    if dtype == "int":
        if kind in "iu" or (kind == "f" and np.all(np.mod(series.dropna(), 1) == 0)) or (kind == "O" and number):
            return None
        return f"holds {series.dtype}, not integers"
    if dtype == "float":
        return None if kind in "iuf" or (kind == "O" and number) else f"holds {series.dtype}, not numbers"
    if dtype == "bool":
        return (
            None
            if kind == "b" or (kind == "O" and isinstance(first, (bool, np.bool_)))
            else f"holds {series.dtype}, not booleans"
        )
    if dtype == "str":
        return None if isinstance(first, str) else f"holds {type(first).__name__} values, not strings"
    if dtype == "list":
        return (
            None if isinstance(first, (list, tuple, np.ndarray)) else f"holds {type(first).__name__} values, not lists"
        )
    raise ValueError(f"unknown column type {dtype!r}")


def validate(frame: pd.DataFrame, kind: str, where, needs: tuple[str, ...] = ()) -> pd.DataFrame:
    """Check ``frame`` against ``SCHEMAS[kind]``: every required column present (and the optional ones a reader
    ``needs``), every known column of its type.

    ``where`` names the file (or the writer) in the error. Extra columns are allowed. Returns ``frame``, so a
    reader can write ``validate(storage.read_parquet(url), "mixtures", url)``.

    >>> validate(pd.DataFrame({"model_url": ["m.pt"]}), "train", "train/manifest.parquet")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    deepclust.storage.manifests.ManifestSchemaError: train/manifest.parquet: model manifest lacks columns [...]...
    """
    schema = SCHEMAS[kind]
    kind = schema.kind  # an old kind name is reported by its new one
    missing = [name for name in [*schema.required, *needs] if name not in frame.columns]
    if missing:
        # Another stage's manifest given in its place (the corpus manifest to `features`) is said as such.
        other = [k for k, s in SCHEMAS.items() if k != kind and set(s.required) <= set(frame.columns)]
        if other and set(schema.required) - set(frame.columns):
            raise ManifestSchemaError(
                where, kind, f"expected; this is a {other[0]!r} manifest (the {other[0]} stage's)"
            )
        raise ManifestSchemaError(where, kind, f"lacks columns {missing} (has {list(frame.columns)})")
    for column in schema.columns:
        if column.name in frame.columns:
            problem = _type_problem(frame[column.name], column.dtype)
            if problem:
                raise ManifestSchemaError(where, kind, f"column {column.name!r} {problem} ({column.meaning})")
    return frame


def read_manifest(url: str, kind: str, needs: tuple[str, ...] = ()) -> pd.DataFrame:
    """The manifest at ``url``, validated as ``kind`` (an error names the file and the column)."""
    import pyarrow as pa

    try:
        frame = storage.read_parquet(url)
    except pa.ArrowInvalid:  # not Parquet, or truncated; an object store's outage (an OSError) stays retryable
        raise ManifestSchemaError(url, kind, "expected; this file is not Parquet (or is damaged)") from None
    return validate(frame, kind, url, needs)


def has_status(kind: str) -> bool:
    """Whether items of this kind fail one by one (a ``status`` column): not the corpus or model manifests."""
    return "status" in SCHEMAS[kind].names
