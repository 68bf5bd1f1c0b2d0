"""A runner of the archive job on local worker processes (``deepclust separate --workers N``), without Prefect.

Why processes: on a 2-core CPU two one-thread processes separated folders of short files 4 % (mask head) to 29 %
(blend) faster than one process with two threads (the BLSTM's recurrence is a chain of small products that a
second thread shares
badly; benchmarks/RESULTS.md, "Workers"), and decoding, features and writing then run side by side too. Each
worker loads the model once (``cached_separator``) and separates whole batches, retrying their transient
faults for the job's budget as the plain runner does; the job (``deepclust.archive.separate_archive``) keeps
the listing, the lock, the commits, the breaker and the summary, so every promise of the plain run holds. A
batch whose error is not transient fails alone and the job goes on (as under Prefect). One long recording is
one input, so it gains nothing: it stays on one worker.
"""

from __future__ import annotations

import concurrent.futures as futures
import itertools
import multiprocessing
from concurrent.futures.process import BrokenProcessPool
from typing import Iterator

from deepclust.archive.job import BatchJob, MapBatches, job_separator, separate_job_batch_retried
from deepclust.faults.errors import WorkerLostError


def _start_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _separate_in_worker(job: BatchJob, batch: list[dict]) -> list[dict]:
    """One batch in a worker, on the separator cached for its process."""
    return separate_job_batch_retried(job_separator(job.model_url, job.device, job.stamp), batch, job)


def batches_on_processes(workers: int, threads_per_worker: int = 1) -> MapBatches:
    """``MapBatches`` on ``workers`` spawned processes of ``threads_per_worker`` torch threads each.

    At most two batches per worker are queued at a time, so a job stopped early (the breaker, a lost lock) leaves
    little to cancel; batches in flight then end uncommitted, and a rerun redoes them.
    """
    if workers < 1 or threads_per_worker < 1:
        raise ValueError(f"workers and threads_per_worker must be >= 1, got {workers} and {threads_per_worker}")

    def map_batches(batches: list[list[dict]], job: BatchJob) -> Iterator[tuple[int, list[dict] | BaseException]]:
        pool = futures.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(threads_per_worker,),
        )
        pending, queued = {}, iter(enumerate(batches))

        def submit_next() -> None:
            for index, batch in itertools.islice(queued, 1):
                pending[pool.submit(_separate_in_worker, job, batch)] = index

        try:
            for _ in range(2 * workers):
                submit_next()
            while pending:
                done, _ = futures.wait(pending, return_when=futures.FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    error = future.exception()
                    if isinstance(error, BrokenProcessPool):  # the run's fault: no batch is to blame for it
                        raise WorkerLostError(
                            "a worker process died (killed from outside: the system's "
                            "out-of-memory killer, or a signal)"
                        ) from error
                    yield index, error if error is not None else future.result()
                    submit_next()
        except BrokenProcessPool as error:  # (found by a submit instead of a result)
            raise WorkerLostError(
                "a worker process died (killed from outside: the system's out-of-memory killer, or a signal)"
            ) from error
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    return map_batches
