"""The one task of the ``separate-archive`` flow: separate a batch of archive files (never one window).

It loads the model once per worker process (threads of a process share it) and calls
``deepclust.archive.separate_archive_batch``, which records bad inputs as ``failed`` rows instead of
raising; so what escapes the task (a model file that cannot be read right now, a scratch disk error) is
an infrastructure fault, retried only when transient (``retry_transient``). The rows it returns are a
few hundred bytes per file: the flow commits them to the manifest, under the archive lock.
"""

from __future__ import annotations

import threading
from collections import Counter

from prefect import task
from prefect.cache_policies import NO_CACHE

from deepclust.archive import separate_archive_batch
from deepclust.separation.long import WindowConfig
from tasks.stage_tasks import RETRY

_SEPARATORS: dict = {}
_SEPARATORS_LOCK = threading.Lock()
SEPARATOR_LOADS: Counter = Counter()  # model loads of this process, by (model_url, device)


def cached_separator(model_url: str, device: str = "auto"):
    """The ``Separator`` of this process for ``(model_url, device)``: loaded by the first batch, reused
    by every later batch and thread of the process (a model file is read once per worker, not per batch)."""
    from deepclust.separation.separator import Separator

    key = (model_url, device)
    with _SEPARATORS_LOCK:  # two threads asking at once load it once
        if key not in _SEPARATORS:
            _SEPARATORS[key] = Separator(model_url, device=device)
            SEPARATOR_LOADS[key] += 1
        return _SEPARATORS[key]


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


@task(name="separate-archive-batch", task_run_name="archive-batch-{batch}", cache_policy=NO_CACHE, **RETRY)
def separate_archive_batch_task(model_url: str, input_url: str, out_url: str, relative_paths: list[str],
                                n_speakers: int = 2, window: dict | None = None, device: str = "auto",
                                batch: int = 0) -> list[dict]:
    """Separate ``relative_paths`` (inputs under ``input_url``) into ``out_url``; returns their manifest rows
    (outputs exist, rows not yet committed). ``window``: ``WindowConfig.to_dict()``."""
    _limit_torch_threads()
    separator = cached_separator(model_url, device)
    return separate_archive_batch(separator, input_url, out_url, list(relative_paths), int(n_speakers),
                                  WindowConfig(**(window or {})))
