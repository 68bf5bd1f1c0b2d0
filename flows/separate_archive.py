"""The ``separate-archive`` flow: every audio file of a folder or ``s3://`` prefix separated, resumably,
on threads of this process or on a Dask cluster.

    from flows.separate_archive import separate_archive
    summary = separate_archive("model.pt", "s3://bucket/calls", "s3://bucket/calls-separated")
    separate_archive(..., dask_address="tcp://scheduler:8786")   # an existing Dask cluster
    separate_archive(..., dask_address="local")                  # a LocalCluster of 2 worker processes

The flow runs the library's separation job (``deepclust.archive``) with Prefect mapping the batches: it
holds ``out/.lock`` for the whole run (``deepclust.storage_lock.folder_lock``), plans what is left
(``plan_archive``: a folder, a prefix, one file or a mixture manifest), and maps one task per batch of
``files_per_batch`` inputs over its task runner; as
each batch finishes it checks it still owns the lock and commits that batch's manifest rows, so a run
stopped at any point keeps every committed batch and a rerun does only the rest. Bad inputs are rows
with ``status == "failed"`` and their reason; the flow then ends Completed with the message "completed
with N failed inputs". A batch task that fails even after its retries (an infrastructure fault, not a
bad input) fails the flow once the other batches are committed; a rerun redoes only its files.

Workers of a remote cluster need ``deepclust`` (and this repository's ``tasks``) importable, the model
and archive reachable at the same URLs (``s3://`` or a shared file system), and S3 credentials in their
environment.
"""

from __future__ import annotations

import contextlib
import time
from urllib.parse import urlparse

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.futures import as_completed
from prefect.states import Completed
from prefect.task_runners import ThreadPoolTaskRunner

from deepclust import storage
from deepclust.device import inference_precision
from deepclust.archive import (FILES_PER_BATCH, MAX_CONSECUTIVE_FAILURES, Breaker, CircuitOpenError, batches_of,
                               commit_manifest, job_stamp, manifest_log, plan_archive, read_manifest, summarise,
                               transient_rows)
from deepclust.transient import RETRY_BUDGET_SECONDS, is_device_fault, is_transient, retry_delays
from deepclust.separation.inputs import MIXTURE_SPLITS
from deepclust.separation.long import WindowConfig
from deepclust.storage_lock import FolderLock, folder_lock
from flows.stages import default_workers
from tasks import StageProgress
from tasks.archive_tasks import separate_archive_batch_task

# A LocalCluster of processes, one thread each (each worker runs torch with one thread: see tasks.archive_tasks).
# Bound to loopback, dashboard included: a Dask scheduler runs the pickled callables it is sent, so anyone who
# reaches it runs code where the workers hold S3 keys.
LOCAL_CLUSTER = {"n_workers": 2, "threads_per_worker": 1, "processes": True, "host": "127.0.0.1",
                 "dashboard_address": "127.0.0.1:0"}
MAX_FAILED_SHOWN = 50


def archive_task_runner(dask_address: str | None = None, max_workers: int | None = None):
    """Threads of this process (no ``dask_address``), an existing Dask cluster (``tcp://host:port``), or
    ``local``: a ``distributed.LocalCluster`` of ``max_workers`` (default 2) single-threaded processes."""
    if not dask_address:
        return ThreadPoolTaskRunner(max_workers=max_workers or default_workers())
    from prefect_dask import DaskTaskRunner

    if dask_address == "local":
        cluster = {**LOCAL_CLUSTER, "n_workers": max_workers or LOCAL_CLUSTER["n_workers"]}
        return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=cluster)
    return DaskTaskRunner(address=dask_address)


@contextlib.contextmanager
def _ephemeral_api_shared_with(dask_address: str | None):
    """Without a Prefect server (``PREFECT_API_URL`` unset) this process starts an ephemeral one (a
    subprocess on loopback); Dask workers on this machine would each start their own (seconds each, and their task runs
    would land in databases nobody reads). Point them at ours instead. Remote workers need a real server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    host = urlparse(dask_address).hostname if dask_address and "://" in dask_address else None
    local = dask_address == "local" or host in ("127.0.0.1", "localhost", "::1")
    if not local or PREFECT_API_URL.value():
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer._instances.get(None)
    if server is None or not server.running:
        yield
        return
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        yield


def _run_batches(batches: list[list[dict]], parameters: dict, lock, out_url: str, dask_address: str | None,
                 max_workers: int | None, breaker: Breaker, retry_seconds: float) -> tuple[list, list]:
    """Map one task per batch; commit each batch's rows as it finishes. Returns ``(rows, failed batches)``.

    A batch whose task failed transiently even after its retries becomes ``transient`` rows (the next run tries
    them again); a device fault or too many failed inputs in a row opens the circuit breaker: nothing that
    finishes after it is committed, and ``CircuitOpenError`` is raised once the runner has stopped.
    """
    logger = get_run_logger()
    progress = StageProgress("separate-archive", len(batches))
    rows, failed = [], []
    log = manifest_log(out_url)
    runner = archive_task_runner(dask_address, max_workers)
    opened = None
    with _ephemeral_api_shared_with(dask_address), runner:
        delays = [round(d) for d in retry_delays(retry_seconds)]
        batch_task = separate_archive_batch_task.with_options(retries=len(delays), retry_delay_seconds=delays or 0)
        futures = [runner.submit(batch_task, parameters={**parameters, "items": items, "batch": index})
                   for index, items in enumerate(batches)]
        index_of = {future.task_run_id: index for index, future in enumerate(futures)}
        for future in as_completed(futures):
            future.wait()  # records the final state on the future
            index = index_of[future.task_run_id]
            if opened is not None:
                continue  # the breaker is open: what still finishes is not committed (a rerun redoes it)
            batch_rows = None
            if future.state.is_completed():
                batch_rows = future.result()
            else:
                error = future.state.result(raise_on_failure=False)
                if isinstance(error, BaseException) and is_device_fault(error):
                    opened = Breaker.device_fault(error, batches[index])
                elif isinstance(error, BaseException) and is_transient(error):
                    batch_rows = transient_rows(batches[index], parameters["stamp"], error, retry_seconds)
                else:
                    failed.append((index, future.state.message))
                    logger.error("batch %d (%d inputs, first %s) failed: %s", index, len(batches[index]),
                                 batches[index][0]["relative_path"], future.state.message)
            if batch_rows is not None:
                lock.check()  # another run took out/ over: stop before committing anything
                commit_manifest(out_url, batch_rows, log)
                rows.extend(batch_rows)
                try:
                    breaker.record(batch_rows)
                except CircuitOpenError as error:
                    opened = error
            progress.advance()
    if not lock.lost:  # a run that lost the lock writes nothing more
        log.compact()
    if opened is not None:
        logger.error("%s", opened)
        raise opened
    return rows, failed


def _publish_summary(summary: dict) -> None:
    """``dpcl-archive-summary``: the counts, the speed, and (the first) failed and transient inputs with their
    reason."""
    lines = [f"# separate-archive: {summary['message']}", "",
             f"- inputs: {summary['inputs']} ({summary['done']} done, {summary['failed']} failed, "
             f"{summary.get('transient', 0)} transient: tried again by the next run)",
             f"- this run: {summary['separated']} separated, {summary['already_done']} already done",
             f"- audio separated: {summary['audio_seconds']:.1f} s in {summary['seconds']:.1f} s "
             f"({summary['real_time_factor']:.1f}x real time)",
             f"- manifest: `{summary['manifest_url']}`"]
    listed = [("failed", rel, reason) for rel, reason in summary["failed_inputs"]]
    listed += [("transient", rel, reason) for rel, reason in summary.get("transient_inputs", [])]
    if listed:
        shown = listed[:MAX_FAILED_SHOWN]
        lines += ["", "| input | status | reason |", "| --- | --- | --- |"]
        lines += [f"| `{rel}` | {status} | {reason.replace('|', '/')} |" for status, rel, reason in shown]
        if len(listed) > len(shown):
            lines.append(f"\n(first {len(shown)} of {len(listed)}; all are in the manifest)")
    create_markdown_artifact(markdown="\n".join(lines), key="dpcl-archive-summary",
                             description=f"separate-archive summary: {summary['manifest_url']}")


@flow(name="separate-archive")
def separate_archive(model_url: str, input_url: str, out_url: str, n_speakers: int = 2,
                     files_per_batch: int = FILES_PER_BATCH, window_seconds: float = WindowConfig.window_seconds,
                     overlap_seconds: float = WindowConfig.overlap_seconds, device: str = "auto",
                     dask_address: str | None = None, windows_per_batch: int = WindowConfig.windows_per_batch,
                     max_workers: int | None = None, stale_minutes: float = FolderLock.STALE_MINUTES,
                     splits: tuple[str, ...] | None = MIXTURE_SPLITS, inference: str = "auto",
                     max_consecutive_failures: int = MAX_CONSECUTIVE_FAILURES, break_lock: bool = False,
                     retry_minutes: float = RETRY_BUDGET_SECONDS / 60, kmeans: str = "auto",
                     precision: str = "auto", channel: int | None = None, listen: int = 0):
    """Separate every input of ``input_url`` (a folder, an ``s3://`` prefix, one audio file or a mixture
    manifest) into ``out_url`` (local or ``s3://``); resumable.

    Args:
        model_url: a model file written by ``deepclust.model.save_model``.
        files_per_batch: files per task (and per manifest commit).
        window_seconds / overlap_seconds / windows_per_batch: how long recordings are cut
            (``deepclust.separation.long.WindowConfig``).
        dask_address: None (threads of this process), ``tcp://host:port`` (an existing Dask cluster) or
            ``local`` (a LocalCluster of single-threaded worker processes).
        max_workers: threads (no Dask) or LocalCluster workers; ignored for an existing cluster.
        stale_minutes: another run's lock older than this is taken over.
        splits: which splits of a mixture manifest to separate (None = all).
        inference: "auto" (a Chimera++ model's mask head when it has one for K, else k-means), "mask", "kmeans".
        max_consecutive_failures: failed inputs in a row that stop the run (the circuit breaker).
        break_lock: take ``out/.lock`` even from a live-looking owner (you know it is gone).
        kmeans: "auto", "torch" or "sklearn" (``deepclust.separation.separator.Separator``).
        precision: "auto" (bf16 on a CPU with AMX / AVX-512 BF16), "fp32" or "bf16"; rows record the resolved one.
        channel: separate this channel (from 1) of multi-channel inputs (None: the downmix rule of
            ``deepclust.downmix``).
        listen: inputs of this run drawn for a spot-check page (``out/.listen/index.html``) and the
            ``dpcl-listen-archive`` artifact; 0 = none.
        retry_minutes: how long a batch task's transient faults are retried (backoff 1 s, 2 s, 4 s ... up to a
            minute apart) before its inputs are recorded as ``transient`` for the next run.

    Returns ``deepclust.archive.summarise``'s summary; the final state's message is "completed" or
    "completed with N failed inputs".
    """
    logger = get_run_logger()
    began = time.perf_counter()
    window = WindowConfig(window_seconds=window_seconds, overlap_seconds=overlap_seconds,
                          windows_per_batch=windows_per_batch)
    # Absolute: worker processes may run in another folder.
    input_url, out_url = storage.absolute(input_url), storage.absolute(out_url)
    model_url = storage.absolute(model_url)
    stamp = job_stamp(model_url, window, inference, kmeans, inference_precision(precision, device), channel)
    parameters = {"model_url": model_url, "out_url": out_url, "stamp": stamp, "device": device}
    rows, failed_batches = [], []
    with folder_lock(out_url, retry_seconds=retry_minutes * 60, stale_minutes=stale_minutes,
                     break_lock=break_lock) as lock:
        todo, already_done = plan_archive(input_url, out_url, n_speakers, stamp, splits)
        batches = batches_of(todo, files_per_batch)
        logger.info("%s: %d inputs to separate in %d batches (%d already done) -> %s", input_url, len(todo),
                    len(batches), len(already_done), out_url)
        if batches:
            rows, failed_batches = _run_batches(batches, parameters, lock, out_url, dask_address, max_workers,
                                                Breaker(max_consecutive_failures), retry_minutes * 60)
        else:
            manifest_log(out_url).compact()  # a manifest exists even for an empty archive
        manifest = read_manifest(out_url)
    summary = summarise(manifest, rows, already_done, out_url, time.perf_counter() - began)
    if listen:  # a spot-check page of this run's inputs, and its players in the UI (dpcl-listen-archive)
        from deepclust.reports.listen import archive_spot_check
        from tasks.artifacts import publish_listen

        summary["listen"] = archive_spot_check(out_url, manifest, rows, listen, model_url)
        if summary["listen"]:
            publish_listen(summary["listen"], key="dpcl-listen-archive", title="separate-archive: spot check")
    _publish_summary(summary)
    logger.info("%s: %d done (%d now), %d failed, %.1fx real time", summary["message"], summary["done"],
                summary["separated"], summary["failed"], summary["real_time_factor"])
    if failed_batches:
        index, message = failed_batches[0]
        raise RuntimeError(f"{len(failed_batches)} of {len(batches)} batches failed (committed batches are kept "
                           f"and a rerun redoes only the rest); first: batch {index}: {message}")
    if summary["failed"] or summary["transient"]:
        return Completed(message=summary["message"], data=summary)
    return summary
