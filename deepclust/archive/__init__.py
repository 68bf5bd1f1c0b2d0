"""The separation job over a file, a folder, an ``s3://`` prefix or a mixture manifest: ``separate_archive`` and
its batches (``job``), its settings in one frozen config (``config.ArchiveJobConfig``, shared by the CLI, the
Prefect flow and the library), and a runner of its batches on local worker processes (``processes``,
``deepclust separate --workers N``).

``from deepclust.archive import separate_archive, read_manifest, ...``: the names of ``job`` are this package's own.
"""

import warnings

from deepclust.archive.config import ArchiveJobConfig
from deepclust.archive.job import (
    BatchesFailedError,
    BatchJob,
    Breaker,
    CircuitOpenError,
    MapBatches,
    batches_here,
    commit_manifest,
    job_separator,
    job_settings,
    job_summary,
    manifest_log,
    manifest_url,
    plan_archive,
    plan_inputs,
    read_manifest,
    separate_archive,
    separate_job_batch,
    separate_job_batch_retried,
    separation_settings,
    transient_rows,
)

__all__ = [
    "ArchiveJobConfig",
    "BatchesFailedError",
    "BatchJob",
    "Breaker",
    "CircuitOpenError",
    "MapBatches",
    "batches_here",
    "commit_manifest",
    "job_separator",
    "job_settings",
    "job_summary",
    "manifest_log",
    "manifest_url",
    "plan_archive",
    "plan_inputs",
    "read_manifest",
    "separate_archive",
    "separate_job_batch",
    "separate_job_batch_retried",
    "separation_settings",
    "transient_rows",
]


def __getattr__(name: str):
    """``separate_batch``: the old name of ``separate_job_batch``, for one release (it read as
    ``Separator.separate_batch``, which separates waveforms, not the job's manifest rows)."""
    if name == "separate_batch":
        warnings.warn(
            "deepclust.archive.separate_batch is now separate_job_batch; the old name goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return separate_job_batch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
