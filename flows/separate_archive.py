"""The ``separate-archive`` flow: every audio file of a folder or ``s3://`` prefix separated, resumably,
on threads of this process or on a Dask cluster.

    from deepclust.archive.config import ArchiveJobConfig
    from deepclust.flows.separate_archive import separate_archive_flow
    summary = separate_archive_flow("model.pt", "s3://bucket/calls", "s3://bucket/calls-separated")
    separate_archive_flow(..., ArchiveJobConfig(n_speakers=3, device="cuda"))  # the job's settings, one object
    separate_archive_flow(..., dask_address="tcp://scheduler:8786")   # an existing Dask cluster
    separate_archive_flow(..., dask_address="local")                  # a LocalCluster of 2 worker processes

A deployment gives the settings as a dict, ``config: {n_speakers: 2, window: {window_seconds: 10.0}, device: cpu}``
(Prefect builds the ``ArchiveJobConfig`` and refuses a misspelt field); fields left out take their defaults.

The flow is the library's separation job (``deepclust.archive.separate_archive``) with one runner of its own:
``prefect_batches`` maps one task per batch of ``files_per_batch`` inputs over the flow's task runner and hands
each batch's rows back as it finishes. Everything else is the job's, the same as for ``deepclust separate``:
the lock, planning, stamps, retries through store outages, commits as each batch finishes, the circuit
breaker, compaction and the summary; so a run stopped at any point keeps every committed batch and a rerun
does only the rest. Bad inputs are rows with ``status == "failed"`` and their reason; the flow then ends
Completed with the message "completed with N failed inputs". A batch task that fails even after its retries
(an infrastructure fault, not a bad input) fails the flow once the other batches are committed; a rerun
redoes only its files. The flow publishes the summary (``dpcl-archive-summary``) and, with ``listen``, the
spot-check players (``dpcl-listen-archive``).

Workers of a remote cluster need ``deepclust`` (and this repository's ``tasks``) importable, the model
and archive reachable at the same URLs (``s3://`` or a shared file system), and S3 credentials in their
environment.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Iterator
from urllib.parse import urlparse

from deepclust.flows.stages import default_workers
from deepclust.tasks import StageProgress
from deepclust.tasks.archive_tasks import separate_job_batch_task
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.futures import as_completed
from prefect.states import Completed
from prefect.task_runners import ThreadPoolTaskRunner

from deepclust import archive, storage
from deepclust.archive import BatchesFailedError, BatchJob, CircuitOpenError, MapBatches
from deepclust.archive.config import ArchiveJobConfig
from deepclust.faults.transient import retry_delays

# A LocalCluster of processes, one thread each (each worker runs torch with one thread: see tasks.archive_tasks).
# Bound to loopback, dashboard included: a Dask scheduler runs the pickled callables it is sent, so anyone who
# reaches it runs code where the workers hold S3 keys.
LOCAL_CLUSTER = {
    "n_workers": 2,
    "threads_per_worker": 1,
    "processes": True,
    "host": "127.0.0.1",
    "dashboard_address": "127.0.0.1:0",
}
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


def prefect_batches(dask_address: str | None = None, max_workers: int | None = None) -> MapBatches:
    """The archive job's Prefect runner (``deepclust.archive.MapBatches``): one ``separate_job_batch_task``
    per batch on ``archive_task_runner(dask_address, max_workers)``, each retried by Prefect through transient
    faults on the library's schedule for the job's budget; yields each batch's rows, or the error its retries
    did not cure, as it completes. Stopped early by the job (the breaker opened, the lock was lost), it leaves
    the runner: batches not started are cancelled, those in flight end uncommitted (a rerun redoes both)."""

    def map_batches(batches: list[list[dict]], job: BatchJob) -> Iterator[tuple[int, list[dict] | BaseException]]:
        logger = get_run_logger()
        logger.info("%d inputs to separate in %d batches -> %s", sum(map(len, batches)), len(batches), job.out_url)
        progress = StageProgress("separate-archive", len(batches))
        runner = archive_task_runner(dask_address, max_workers)
        parameters = {key: value for key, value in dataclasses.asdict(job).items() if key != "retry_seconds"}
        with _ephemeral_api_shared_with(dask_address), runner:
            delays = [round(d) for d in retry_delays(job.retry_seconds)]
            batch_task = separate_job_batch_task.with_options(retries=len(delays), retry_delay_seconds=delays or 0)
            futures = [
                runner.submit(batch_task, parameters={**parameters, "items": items, "batch": index})
                for index, items in enumerate(batches)
            ]
            index_of = {future.task_run_id: index for index, future in enumerate(futures)}
            for future in as_completed(futures):
                future.wait()  # records the final state on the future
                index = index_of[future.task_run_id]
                if future.state.is_completed():
                    outcome = future.result()
                else:
                    error = future.state.result(raise_on_failure=False)
                    outcome = error if isinstance(error, BaseException) else RuntimeError(future.state.message)
                    logger.error(
                        "batch %d (%d inputs, first %s) failed after its retries: %s",
                        index,
                        len(batches[index]),
                        batches[index][0]["relative_path"],
                        future.state.message,
                    )
                progress.advance()
                yield index, outcome

    return map_batches


def _publish_summary(summary: dict) -> None:
    """``dpcl-archive-summary``: the counts, the speed, and (the first) failed and transient inputs with their
    reason."""
    lines = [
        f"# separate-archive: {summary['message']}",
        "",
        f"- inputs: {summary['inputs']} ({summary['done']} done, {summary['failed']} failed, "
        f"{summary.get('transient', 0)} transient: tried again by the next run)",
        f"- this run: {summary['separated']} separated, {summary['already_done']} already done",
        f"- audio separated: {summary['audio_seconds']:.1f} s in {summary['seconds']:.1f} s "
        f"({summary['real_time_factor']:.1f}x real time)",
        f"- manifest: `{summary['manifest_url']}` ({summary.get('manifest_writes', 0)} files, "
        f"{summary.get('manifest_rows_written', 0)} rows written by this run)",
    ]
    listed = [("failed", rel, reason) for rel, reason in summary["failed_inputs"]]
    listed += [("transient", rel, reason) for rel, reason in summary.get("transient_inputs", [])]
    if listed:
        shown = listed[:MAX_FAILED_SHOWN]
        lines += ["", "| input | status | reason |", "| --- | --- | --- |"]
        lines += [f"| `{rel}` | {status} | {reason.replace('|', '/')} |" for status, rel, reason in shown]
        if len(listed) > len(shown):
            lines.append(f"\n(first {len(shown)} of {len(listed)}; all are in the manifest)")
    create_markdown_artifact(
        markdown="\n".join(lines),
        key="dpcl-archive-summary",
        description=f"separate-archive summary: {summary['manifest_url']}",
    )


@flow(name="separate-archive")
def separate_archive_flow(
    model_url: str,
    input_url: str,
    out_url: str,
    config: ArchiveJobConfig = ArchiveJobConfig(),
    dask_address: str | None = None,
    max_workers: int | None = None,
):
    """Separate every input of ``input_url`` (a folder, an ``s3://`` prefix, one audio file or a mixture
    manifest) into ``out_url`` (local or ``s3://``); resumable.

    Args:
        model_url: a model file written by ``deepclust.model.save_model``.
        config: the job's settings (``deepclust.archive.config.ArchiveJobConfig``: speakers, files per batch
            and task, window, device, k-means, inference, precision, channel, splits, retry budget, lock, circuit
            breaker, listening page), or its dict form from a deployment.
        dask_address: None (threads of this process), ``tcp://host:port`` (an existing Dask cluster) or
            ``local`` (a LocalCluster of single-threaded worker processes).
        max_workers: threads (no Dask) or LocalCluster workers; ignored for an existing cluster.

    A batch task's transient faults are retried by Prefect (backoff 1 s, 2 s, 4 s ... up to a minute apart) for
    ``config.retry_seconds`` before its inputs are recorded as ``transient`` for the next run. With
    ``config.listen``, the spot-check page is published as the ``dpcl-listen-archive`` artifact too.

    Returns ``deepclust.archive.job_summary``'s summary; the final state's message is "completed" or
    "completed with N failed inputs". Raises what the job raises (``CircuitOpenError``, ``BatchesFailedError``
    once the other batches are committed, a transient fault that outlasted the retry budget)."""
    logger = get_run_logger()
    # Absolute: worker processes may run in another folder.
    input_url, out_url, model_url = storage.absolute(input_url), storage.absolute(out_url), storage.absolute(model_url)
    try:
        summary = archive.separate_archive(
            model_url, input_url, out_url, config, map_batches=prefect_batches(dask_address, max_workers)
        )
    except CircuitOpenError as error:
        logger.error("%s", error)
        raise
    except BatchesFailedError as error:  # the other batches are committed: publish what the run did, then fail
        if error.summary is not None:
            _publish(error.summary)
        raise
    _publish(summary)
    logger.info(
        "%s: %d done (%d now), %d failed, %.1fx real time",
        summary["message"],
        summary["done"],
        summary["separated"],
        summary["failed"],
        summary["real_time_factor"],
    )
    if summary["failed"] or summary["transient"]:
        return Completed(message=summary["message"], data=summary)
    return summary


def _publish(summary: dict) -> None:
    """The run's artifacts: the summary, and the spot-check players when the job made a listening page."""
    if summary.get("listen"):
        from deepclust.tasks.artifacts import publish_listen

        publish_listen(summary["listen"], key="dpcl-listen-archive", title="separate-archive: spot check")
    _publish_summary(summary)


# The old name of the flow, for deployments registered before it was renamed; it goes in the next release.
separate_archive = separate_archive_flow
