"""A separation job: every input of an input manifest separated into ``out``, resumable, locked, audited.

``deepclust separate``, ``deepclust separate-archive`` and the ``separate-archive`` Prefect flow all run
this job, ``separate_archive``, with one settings object, ``ArchiveJobConfig`` (``deepclust.archive.config``); the
input is an audio file, a folder, an ``s3://`` prefix or a mixture manifest, made into an input manifest first
(``deepclust.separation.inputs``), and every batch of it goes through the one separation loop
(``deepclust.separation.batch.separate_items``, called by ``separate_job_batch``).

The job owns everything but where batches run: listing and planning, the lock, stamps, batching, retries
through store outages, commits, the circuit breaker, compaction and the summary. A runner only maps batches
to rows (``map_batches``, the seam ``deepclust.pipeline.driver.run_stage`` has for stage units): the default
runs them one after another in this process (``batches_here``); ``flows/separate_archive.py`` passes one that
submits a Prefect task per batch, on threads or a Dask cluster. Every flag and rule holds for every runner.

Layout of ``out`` (local folder or ``s3://`` prefix)::

    out/<output stem>/s1.wav .. sK.wav   one folder per input, never shared (``assign_output_stems``)
    out/manifest.parquet                 one row per input (batch.MANIFEST_COLUMNS), whole after every run
    out/.manifest/                       rows committed since (``deepclust.storage.manifest_log``: append-only)
    out/.manifest/base-copy.parquet      a copy of manifest.parquet, written before it: a damaged one is rebuilt
    out/.lock                            the writer's lock (``deepclust.storage.lock``)
    out/.partial/                        local outputs being written (never on S3)

Guarantees:

- **Atomic outputs.** Each output is written under a temporary name and renamed into place (local), or
  written to a local temporary file and uploaded when finished (S3: one PUT or a multipart upload, which S3
  also makes visible only when complete). A batch's rows are committed (one small append) only after its
  outputs exist: a crash loses at most the batch in flight.
- **Done means done for this input, this model and these settings.** A row stands while its outputs exist
  and its ``input_id`` (content identity), ``model_sha256`` and ``settings`` (K, window, inference) match;
  a changed model, setting or input re-separates exactly the affected inputs. ``failed`` and ``transient``
  inputs are tried again, new files are picked up, temporary files of a killed run are removed.
- **One writer per ``out``** (``deepclust.storage.lock.folder_lock``); the owner check before every commit
  makes a run that lost its lock stop instead of committing.
- **Faults classified by cause.** A bad input is a ``failed`` row with its reason; a transient fault is
  retried with backoff for ``retry_seconds`` and then recorded as ``transient`` (retried by the next run,
  never ``failed``); a device fault (CUDA, not out-of-memory) or ``max_consecutive_failures`` failed inputs
  in a row open the **circuit breaker**: the job stops with ``CircuitOpenError`` and marks nothing after.
- **Faults of the run are not rows.** A setting this machine cannot run (``--precision bf16`` on a CPU without
  bf16) is refused before any input; a full disk (``DiskFullError``), a damaged manifest that its copy cannot
  rebuild (``DamagedManifestError``) or a network that fails on a known-good input too (``NetworkFaultError``)
  stop the job in one line (``deepclust.faults.errors.RunFaultError``); what was committed stays, a rerun continues.

S3 endpoints are configured the fsspec way: ``FSSPEC_S3_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import pandas as pd

from deepclust import storage
from deepclust.archive.config import MAX_CONSECUTIVE_FAILURES, ArchiveJobConfig
from deepclust.faults.errors import DamagedManifestError, DiskFullError, RunFaultError
from deepclust.faults.transient import (
    RETRY_BUDGET_SECONDS,
    call_with_retries,
    is_device_fault,
    is_disk_full,
    is_transient,
)
from deepclust.pipeline import store
from deepclust.separation.batch import MANIFEST_COLUMNS, TIMING_COLUMNS, separate_items, transient_row
from deepclust.separation.inputs import (
    MIXTURE_SPLITS,
    assign_output_stems,
    input_manifest,
    relative_to,
    require_input,
)
from deepclust.separation.long import WindowConfig
from deepclust.storage.lock import folder_lock
from deepclust.storage.manifest_log import ManifestLog
from deepclust.storage.manifests import MANIFEST_NAME

logger = logging.getLogger(__name__)


class CircuitOpenError(RuntimeError):
    """The job stopped itself: a device fault, or too many failures in a row to be the inputs' fault."""


class BatchesFailedError(RuntimeError):
    """Batches failed for good (neither transient nor a device fault) under a runner that went on with the
    others; every other batch was committed, a rerun redoes only these. ``summary``: the run's summary."""

    def __init__(self, message: str, summary: dict | None = None):
        super().__init__(message)
        self.summary = summary


def manifest_url(out_url: str) -> str:
    """``out/manifest.parquet``."""
    return storage.join(out_url, MANIFEST_NAME)


def manifest_log(out_url: str) -> ManifestLog:
    """The job's append-only manifest (``deepclust.storage.manifest_log``), keyed by relative path."""
    return ManifestLog(out_url, "relative_path", MANIFEST_COLUMNS, MANIFEST_NAME)


def read_manifest(out_url: str) -> pd.DataFrame:
    """Every committed row of ``out``'s manifest (the newest per input), also in the middle of a run."""
    return manifest_log(out_url).read()


def commit_manifest(out_url: str, rows: list[dict], log: ManifestLog | None = None) -> None:
    """Append rows to ``out``'s manifest (one small part file). Call it only after the rows' outputs exist,
    and under the lock."""
    (log or manifest_log(out_url)).append(rows)


def separation_settings(
    n_speakers: int,
    window: WindowConfig,
    inference: str = "auto",
    kmeans: str = "auto",
    precision: str = "fp32",
    channel: int | None = None,
) -> str:
    """What besides the model and the input decides the outputs, as canonical JSON (a manifest column).
    ``precision``: the resolved one ("bf16" or "fp32"): a change of precision re-separates, never mixes.
    ``channel`` (``--channel``) is in it only when given, so rows made without it keep standing."""
    settings = {
        "n_speakers": int(n_speakers),
        "window_seconds": window.window_seconds,
        "overlap_seconds": window.overlap_seconds,
        "context_seconds": window.context_seconds,
        "inference": inference,
        "kmeans": kmeans,
        "precision": precision,
    }
    if channel is not None:
        settings["channel"] = int(channel)
    return json.dumps(settings, sort_keys=True)


def job_settings(
    model_url: str,
    window: WindowConfig,
    inference: str = "auto",
    kmeans: str = "auto",
    precision: str = "auto",
    channel: int | None = None,
    device: str = "auto",
) -> dict:
    """``{"model_sha256", "window", "inference", "kmeans", "precision"}`` (JSON-able: it travels to Prefect
    tasks): what made a job's outputs, recorded with every row; see ``separation_settings``. ``precision`` is
    stored resolved on the job's ``device`` (``deepclust.model.device.inference_precision``), the device the network
    runs on: "auto" on a CUDA host told ``device="cpu"`` is the CPU's choice, not CUDA's.
    ``channel``: ``--channel`` (1-based) or None."""
    from deepclust.model.device import inference_precision

    return {
        "model_sha256": storage.sha256_of(model_url),
        "window": window.to_dict(),
        "inference": inference,
        "kmeans": kmeans,
        "precision": inference_precision(precision, device),
        "channel": channel,
    }


def _window(stamp: dict) -> WindowConfig:
    return WindowConfig.from_dict(stamp["window"])


def _stamp_for(stamp: dict, n_speakers: int) -> dict:
    return {
        "model_sha256": stamp["model_sha256"],
        "settings": separation_settings(
            n_speakers,
            _window(stamp),
            stamp["inference"],
            stamp["kmeans"],
            stamp.get("precision", "fp32"),
            stamp.get("channel"),
        ),
    }


def _existing_outputs(out_url: str) -> set[str]:
    """Every file under ``out``, relative to it: one listing instead of a HEAD per output."""
    if not storage.exists(out_url):
        return set()
    return {relative_to(u, out_url) for u in storage.list_files(out_url)}


def _stands(row, item: dict, stamp: dict, existing: set[str]) -> bool:
    """The recorded row still stands for this input: done, its K outputs there, and made from the same input
    content by the same model with the same settings."""
    if row.status != "done" or len(row.outputs) != int(item["n_speakers"]):
        return False
    expected = _stamp_for(stamp, item["n_speakers"])
    if (
        (row.input_id or "") != (item["input_id"] or "")
        or row.model_sha256 != expected["model_sha256"]
        or row.settings != expected["settings"]
    ):
        return False
    return all(name in existing for name in row.outputs)


def plan_inputs(inputs: pd.DataFrame, out_url: str, stamp: dict) -> tuple[list[dict], list[str]]:
    """Split an input manifest into ``(todo rows with their output stem, already done relative paths)``.

    Every input gets its own output folder (``assign_output_stems``); one that has a recorded row keeps its
    folder. Call under the lock.
    """
    manifest = read_manifest(out_url)
    recorded = {row.relative_path: row for row in manifest.itertuples()}
    items = inputs.to_dict("records")
    stems = assign_output_stems(
        [i["relative_path"] for i in items],
        {rel: row.output_stem for rel, row in recorded.items() if isinstance(getattr(row, "output_stem", None), str)},
    )
    existing = _existing_outputs(out_url)
    todo, done = [], []
    for item in items:
        item["output_stem"] = stems[item["relative_path"]]
        row = recorded.get(item["relative_path"])
        if row is not None and row.output_stem == item["output_stem"] and _stands(row, item, stamp, existing):
            done.append(item["relative_path"])
        else:
            todo.append(item)
    return todo, done


def plan_archive(
    input_url: str, out_url: str, n_speakers: int, stamp: dict, splits: tuple[str, ...] | None = MIXTURE_SPLITS
) -> tuple[list[dict], list[str]]:
    """``plan_inputs`` of the input manifest of ``input_url`` (a file, folder, prefix or mixture manifest);
    ``stamp``: ``job_settings(model_url, window, ...)``, what decides whether a recorded row still stands."""
    return plan_inputs(input_manifest(input_url, n_speakers, out_url, splits), out_url, stamp)


class Breaker:
    """Counts failed inputs in a row; opens (raises ``CircuitOpenError``) at ``limit``, or at a device fault."""

    def __init__(self, limit: int = MAX_CONSECUTIVE_FAILURES):
        self.limit, self.in_a_row = max(1, int(limit)), 0

    def record(self, rows: list[dict]) -> None:
        """Count a committed batch's rows; raise ``CircuitOpenError`` when too many failed in a row."""
        for row in rows:
            self.in_a_row = 0 if row["status"] == "done" else self.in_a_row + 1
        if self.in_a_row >= self.limit:
            last = rows[-1]
            raise CircuitOpenError(
                f"stopped after {self.in_a_row} failed inputs in a row (limit {self.limit}); "
                f"the last: {last['error']}. Inputs not tried yet are left as they were; "
                "fix the cause and rerun"
            )

    @staticmethod
    def device_fault(error: BaseException, batch: list[dict]) -> CircuitOpenError:
        """The error that stops a job at a device fault, naming the input it met it on."""
        return CircuitOpenError(
            f"stopped: device fault while separating {batch[0]['input']} "
            f"({type(error).__name__}: {error}); inputs not tried yet are left as they were"
        )


def separate_job_batch(separator, batch: list[dict], out_url: str, stamp: dict) -> list[dict]:
    """One batch of the job (planned input-manifest rows, ``plan_inputs``) separated into ``out_url``: their manifest
    rows, each speaker count with its settings stamped in its rows; transient and device faults raise. (Not
    ``Separator.separate_batch``, which separates waveforms in memory.)"""
    by_count: dict[int, list] = {}
    for item in batch:
        by_count.setdefault(int(item["n_speakers"]), []).append(item)
    rows = []
    for n_speakers, items in sorted(by_count.items()):
        rows += separate_items(
            separator, items, out_url, _window(stamp), _stamp_for(stamp, n_speakers), channel=stamp.get("channel")
        )
    order = {item["relative_path"]: i for i, item in enumerate(batch)}
    return sorted(rows, key=lambda row: order[row["relative_path"]])


def transient_rows(batch: list[dict], stamp: dict, error: BaseException, retry_seconds: float) -> list[dict]:
    """The rows of a batch whose transient fault outlasted its retries (tried again by the next run)."""
    reason = (
        f"transient fault outlasted {retry_seconds:.0f} s of retries ({type(error).__name__}: {error}); "
        "tried again by the next run"
    )
    return [transient_row(item, f"{item['input']}: {reason}", _stamp_for(stamp, item["n_speakers"])) for item in batch]


@dataclass(frozen=True)
class BatchJob:
    """What a runner needs to separate a batch anywhere; JSON-able (``dataclasses.asdict``), so it travels to
    Prefect tasks and Dask workers. ``stamp``: ``job_settings``; ``retry_seconds``: how long a batch's transient
    faults are retried before the job records its inputs as ``transient``."""

    model_url: str
    out_url: str
    stamp: dict
    device: str = "auto"
    retry_seconds: float = RETRY_BUDGET_SECONDS


# ``map_batches(batches, job)``: runs every batch (a list of planned input rows) somewhere and yields
# ``(index, outcome)`` as each finishes, in any order: ``outcome`` is the batch's rows (``separate_job_batch``), or
# the error that outlasted the runner's retries. The job commits rows, turns a transient error into
# ``transient`` rows and a device fault into ``CircuitOpenError``; any other error fails that batch only (the
# job goes on, and raises ``BatchesFailedError`` at the end). An error the mapper raises stops the job at
# once. When the job stops early it closes the iterator (a generator's ``finally`` stops its runner).
MapBatches = Callable[[list[list[dict]], BatchJob], Iterable[tuple[int, "list[dict] | BaseException"]]]


def _settled_by_the_job(error: BaseException) -> bool:
    """Errors the job turns into rows or a stop (transient: ``transient`` rows; device: the breaker)."""
    return is_transient(error) or is_device_fault(error)


def job_separator(model_url: str, device: str, stamp: dict):
    """The separator a runner's process uses for a job with these settings (``job_settings``), loaded once per
    process (``cached_separator``; the model's sha256 is part of its key, so a replaced file is loaded anew)."""
    from deepclust.separation.separator import cached_separator

    return cached_separator(
        model_url, device, stamp["kmeans"], stamp["inference"], stamp["model_sha256"], stamp.get("precision", "fp32")
    )


def separate_job_batch_retried(separator, batch: list[dict], job: BatchJob) -> list[dict]:
    """``separate_job_batch`` retried through transient faults for the job's budget (the runners without Prefect)."""
    return call_with_retries(
        lambda: separate_job_batch(separator, batch, job.out_url, job.stamp),
        what=f"batch from {batch[0]['relative_path']}",
        budget_seconds=job.retry_seconds,
    )


def batches_here(separator) -> MapBatches:
    """The plain runner: batches one after another in this process, each retried through transient faults
    (``call_with_retries``) for the job's budget. Any other error but a device fault is raised at once, with
    its traceback: nothing runs beside it, so there is nothing to wait for."""

    def map_batches(batches: list[list[dict]], job: BatchJob) -> Iterator[tuple[int, list[dict] | BaseException]]:
        for index, batch in enumerate(batches):
            try:
                rows = separate_job_batch_retried(separator, batch, job)
            except Exception as error:
                if not _settled_by_the_job(error):
                    raise
                yield index, error
                continue
            yield index, rows

    return map_batches


@contextlib.contextmanager
def _mapped(map_batches: MapBatches, batches: list[list[dict]], job: BatchJob):
    """The runner's outcomes, closed when the job leaves (a runner that is stopped early stops its workers)."""
    outcomes = map_batches(batches, job) if batches else iter(())
    try:
        yield iter(outcomes)
    finally:
        close = getattr(outcomes, "close", None)
        if close is not None:
            close()


def separate_archive(
    model_url_or_separator,
    input_url: str,
    out_url: str,
    config: ArchiveJobConfig | None = None,
    *,
    progress=None,
    model_url: str | None = None,
    map_batches: MapBatches | None = None,
    **settings,
) -> dict:
    """Separate every input of ``input_url`` (an audio file, a folder, an ``s3://`` prefix or a mixture
    manifest) into ``out_url`` (local or ``s3://``); resumable. Batches are committed as they finish.

    ``config``: the job's settings (``ArchiveJobConfig``; None: its defaults); keyword ``settings`` change fields of
    it, so a call from Python can stay short: ``separate_archive("model.pt", "calls/", "out/", n_speakers=3)``.
    ``model_url_or_separator``: a model file, or a ``Separator`` (then ``model_url`` names its file, for the
    rows' ``model_sha256``). ``progress(done, total)`` is called after each committed batch.
    ``map_batches``: where batches run (``MapBatches``); None: ``batches_here``, in this process, with the
    separator loaded here (a runner of its own loads it where its batches run: the device, k-means, inference
    and the resolved precision travel in the job's stamp).

    The listing, taking and checking the lock, every commit and the compaction are retried through transient
    faults (a restarting object store) for ``config.retry_seconds``, as a batch is. Returns ``job_summary``'s
    summary (with ``config.listen``, also ``listen``: the page's URL, and ``listen_inputs``: the inputs it holds);
    raises ``CircuitOpenError`` when the circuit breaker opens, ``BatchesFailedError`` when a runner
    reported batches that failed for good (the rows committed until then are kept, and the manifest compacted).
    """
    from deepclust.model.device import inference_precision
    from deepclust.separation.separator import Separator

    config = dataclasses.replace(config or ArchiveJobConfig(), **settings)
    began = time.perf_counter()
    separator = model_url_or_separator if hasattr(model_url_or_separator, "embed_batch") else None
    if separator is not None:
        model_url = model_url or getattr(separator, "model_url", None)
    else:
        model_url = model_url_or_separator
    if not model_url:
        raise ValueError(
            "separate_archive needs the model file's URL (model_url) to record which model made the outputs"
        )
    if map_batches is None:
        separator = separator or Separator(
            model_url,
            device=config.device,
            kmeans=config.kmeans,
            inference=config.inference,
            precision=config.precision,
        )
        map_batches = batches_here(separator)
    resolved = (
        getattr(separator, "precision", "fp32")
        if separator is not None
        else inference_precision(config.precision, config.device)
    )
    stamp = job_settings(
        model_url, config.window, config.inference, config.kmeans, resolved, config.channel, config.device
    )
    retry_seconds = config.retry_seconds
    job = BatchJob(model_url=model_url, out_url=out_url, stamp=stamp, device=config.device, retry_seconds=retry_seconds)

    def retried(call, what: str):
        return call_with_retries(call, what=what, budget_seconds=retry_seconds)

    rows: list[dict] = []
    failed_batches: list[tuple[int, BaseException]] = []
    breaker = Breaker(config.max_consecutive_failures)
    todo: list[dict] = []
    already_done: list[str] = []
    # An input that is not there is refused before the lock, which would leave an empty out folder behind.
    retried(lambda: require_input(input_url), what=f"listing {input_url}")
    try:
        with folder_lock(
            out_url, retry_seconds=retry_seconds, stale_minutes=config.stale_minutes, break_lock=config.break_lock
        ) as lock:
            log = manifest_log(out_url)
            # Listing an object store that is restarting is retried like any batch; if it outlasts the budget the
            # transient error propagates (nothing was separated: the caller says "run again").
            todo, already_done = retried(
                lambda: plan_archive(input_url, out_url, config.n_speakers, stamp, config.splits),
                what=f"listing {input_url}",
            )
            batches = store.batches(todo, config.files_per_batch)
            try:
                with _mapped(map_batches, batches, job) as outcomes:
                    for index, outcome in outcomes:
                        batch_rows = _rows_of(batches[index], outcome, stamp, retry_seconds)
                        if batch_rows is None:  # failed for good under a runner that goes on with the others
                            failed_batches.append((index, outcome))
                            logger.error(
                                "batch %d (%d inputs, first %s) failed: %s: %s",
                                index,
                                len(batches[index]),
                                batches[index][0]["relative_path"],
                                type(outcome).__name__,
                                outcome,
                            )
                            continue
                        # The store may be restarting here too: checking the lock and committing are retried alike.
                        retried(lock.check, what="checking the lock")
                        retried(lambda: commit_manifest(out_url, batch_rows, log), what="committing rows")
                        rows.extend(batch_rows)
                        if progress:
                            progress(len(rows), len(todo))
                        breaker.record(batch_rows)
            finally:  # manifest.parquet whole again, also when the breaker opened; never by a run that lost the lock
                if not lock.lost:  # (a run that lost it has raised LockLostError: it returns nothing)
                    manifest = retried(log.compact, what="compacting the manifest")
            if lock.lost:  # lost to the heartbeat after the last check: raise as a check would
                lock.check()
    except Exception as error:
        done = len(already_done) + sum(row["status"] == "done" for row in rows)
        kept = (
            f"{done} inputs are done and kept ({len(already_done)} from earlier runs), "
            f"{max(len(todo) - len(rows), 0)} not yet"
        )
        if isinstance(error, DiskFullError) or is_disk_full(error):
            raise DiskFullError(
                f"{out_url}: the output location is full (no space left on the device, or the "
                f"quota is spent); {kept}: free space and run the same command again, it continues "
                "where this one stopped"
            ) from error
        if isinstance(error, RunFaultError) and not isinstance(error, DamagedManifestError):
            raise type(error)(f"{error}; {kept}: a rerun continues where this one stopped") from error
        raise
    summary = job_summary(manifest, rows, already_done, out_url, time.perf_counter() - began, log.stats())
    if config.listen:  # a spot-check page of this run's inputs (deepclust.reports.listen): out/.listen/index.html
        from deepclust.reports.listen import archive_spot_check

        page = archive_spot_check(out_url, manifest, rows, config.listen, model_url)
        # The inputs the page holds: at most those this run separated (none on a rerun with nothing to do).
        summary["listen"], summary["listen_inputs"] = (page["page"], len(page["examples"])) if page else (None, 0)
    if failed_batches:
        index, error = failed_batches[0]
        raise BatchesFailedError(
            f"{len(failed_batches)} of {len(batches)} batches failed (committed batches are "
            f"kept and a rerun redoes only the rest); first: batch {index}: "
            f"{type(error).__name__}: {error}",
            summary,
        ) from error
    return summary


def _rows_of(batch: list[dict], outcome, stamp: dict, retry_seconds: float) -> list[dict] | None:
    """A runner's outcome as rows to commit: its rows, ``transient`` rows for a transient fault that outlasted
    the retries, None for a batch that failed for good; a device fault opens the breaker."""
    if not isinstance(outcome, BaseException):
        return outcome
    if isinstance(outcome, RunFaultError) or is_disk_full(outcome):  # the run's fault: stop (the job says why)
        raise outcome
    if is_device_fault(outcome):
        raise Breaker.device_fault(outcome, batch) from outcome
    if is_transient(outcome):
        return transient_rows(batch, stamp, outcome, retry_seconds)
    return None


def job_summary(
    manifest: pd.DataFrame,
    rows: list[dict],
    already_done: list[str],
    out_url: str,
    seconds: float,
    manifest_io: dict | None = None,
) -> dict:
    """The run's summary from the final manifest and this run's rows."""
    failed = manifest[manifest["status"] == "failed"]
    transient = manifest[manifest["status"] == "transient"]
    done_now = [r for r in rows if r["status"] == "done"]
    audio = float(sum(r["duration"] for r in done_now))
    timing = {c: float(sum(r[c] for r in rows)) for c in TIMING_COLUMNS}
    message = f"completed with {len(failed)} failed inputs" if len(failed) else "completed"
    if len(transient):
        message = f"incomplete: {len(transient)} inputs hit transient faults (rerun to finish them)" + (
            f"; {len(failed)} failed inputs" if len(failed) else ""
        )
    return {
        "inputs": int(len(manifest)),
        "already_done": len(already_done),
        "separated": len(done_now),
        "done": int((manifest["status"] == "done").sum()),
        "failed": int(len(failed)),
        "transient": int(len(transient)),
        "failed_inputs": [(r.relative_path, r.error) for r in failed.itertuples()],
        "transient_inputs": [(r.relative_path, r.error) for r in transient.itertuples()],
        "audio_seconds": audio,
        "seconds": seconds,
        "real_time_factor": audio / seconds if seconds > 0 else 0.0,
        **timing,
        **(manifest_io or {}),
        "manifest_url": storage.absolute(manifest_url(out_url)),
        "message": message,
    }
