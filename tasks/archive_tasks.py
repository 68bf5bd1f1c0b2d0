"""The one task of the ``separate-archive`` flow: separate a batch of the job's inputs (never one window),
``deepclust.archive.separate_job_batch`` on a worker.

It loads the model once per worker process (``deepclust.archive.job_separator``, cached per process: threads
of a process share it) and calls the one separation loop, ``deepclust.separation.batch.separate_items``,
which records bad inputs as ``failed`` rows instead of raising; so what escapes the task (a model file
that cannot be read right now, a scratch disk error) is an infrastructure fault, retried only when
transient (``retry_transient``; the flow sets how many retries fit the job's budget). The rows it returns are
a few hundred bytes per input: the archive job (``deepclust.archive.separate_archive``, which the flow runs
with this task as its runner) commits them to the manifest, under the lock.
"""

from __future__ import annotations

from deepclust.tasks.stage_tasks import RETRY
from prefect import task
from prefect.cache_policies import NO_CACHE

from deepclust.archive import job


def dask_worker_threads() -> int | None:
    """Threads of the Dask worker running this task; None outside a Dask worker."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # distributed absent, or not inside a worker
        return None
    state = getattr(worker, "state", None)
    return getattr(state, "nthreads", None) or getattr(worker, "nthreads", None)


def _limit_torch_threads() -> None:
    """One torch thread per single-threaded Dask worker: N worker processes on N cores each running
    torch's default N intra-op threads oversubscribe the machine (measured ~3x slower on 2 cores)."""
    if dask_worker_threads() == 1:
        import torch

        if torch.get_num_threads() != 1:
            torch.set_num_threads(1)


@task(
    name="separate-archive-batch",
    task_run_name="archive-batch-{batch}",
    cache_policy=NO_CACHE,
    result_serializer="json",
    **RETRY,
)
def separate_job_batch_task(
    model_url: str, items: list[dict], out_url: str, stamp: dict, device: str = "auto", batch: int = 0
) -> list[dict]:
    """Separate ``items`` (input-manifest rows with their output stems) into ``out_url``; returns their manifest
    rows (outputs exist, rows not yet committed). ``stamp``: ``deepclust.archive.job_settings``; the separator is
    cached per process by the model's checksum too, so a long-lived worker never uses a replaced model file."""
    _limit_torch_threads()
    return job.separate_job_batch(job.job_separator(model_url, device, stamp), list(items), out_url, stamp)
