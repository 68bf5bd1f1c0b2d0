"""``deepclust separate`` and ``separate-archive``: the same separation job (``deepclust.archive``), plain or through
the Prefect flow (``--prefect``, ``--dask-address``: the ``Runners.separate_archive_flow`` handed in from
``deepclust.flows.cli``). The flags are read once into the job's settings, an ``ArchiveJobConfig``
(``job_config_from_args``), which every runner takes whole. Each flag is named as the ``ArchiveJobConfig`` or
``WindowConfig`` field it sets and takes its default from there; an older spelling is kept as an alias."""

from __future__ import annotations

import json
import sys

from deepclust import storage
from deepclust.cli.common import (
    EXIT_CIRCUIT_OPEN,
    EXIT_TEMPFAIL,
    Runners,
    model_or_pretrained,
    settings_refused_plainly,
    to_stderr,
)

HELP = {
    "separate": "separate one audio file, a folder, an s3:// prefix or a mixture manifest (resumable)",
    "separate-archive": "the same as separate, named for large archives (folder or s3:// prefix)",
}


def add_separate(sub, name: str = "separate") -> None:
    from deepclust.archive.config import ArchiveJobConfig as Job
    from deepclust.reports.listen import ARCHIVE_LISTEN_DEFAULT
    from deepclust.separation.long import WindowConfig

    p = sub.add_parser(name, help=HELP[name])
    p.add_argument("--model", help="model file (default: the shipped real-speech model)")
    p.add_argument(
        "--input",
        required=True,
        help="audio file, folder, s3://bucket/prefix (any audio, rate, channels, length) or a mixture "
        "manifest (deepclust mixtures's manifest.parquet: its output can be passed to evaluate)",
    )
    p.add_argument(
        "--out",
        required=True,
        help="folder or s3:// prefix: OUT/<relative path>/s1.wav .. sK.wav and OUT/manifest.parquet; "
        "S3 endpoint and keys from FSSPEC_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY",
    )
    p.add_argument(
        "--n-speakers",
        "--speakers",
        dest="n_speakers",
        type=int,
        default=Job.n_speakers,
        help="sources per input (a mixture manifest knows its own)",
    )
    p.add_argument(
        "--splits",
        default=",".join(Job.splits),
        help="mixture manifests only: comma-separated splits to separate (tr, cv, tt), or 'all'",
    )
    p.add_argument(
        "--inference",
        default=Job.inference,
        choices=["auto", "mask", "kmeans", "soft-kmeans", "blend"],
        help="auto: what the model file names for --speakers (the shipped model's choice was measured "
        "on recordings it never trained on), else a Chimera++ model's mask head, else k-means; "
        "blend: the mean of the mask head and soft masks around centroids the head seeds",
    )
    p.add_argument(
        "--kmeans",
        default=Job.kmeans,
        choices=["auto", "torch", "sklearn"],
        help="auto: batched torch on CUDA, scikit-learn on CPU",
    )
    p.add_argument(
        "--precision",
        default=Job.precision,
        choices=["auto", "fp32", "bf16", "int8"],
        help="auto: the network in bfloat16 on a CPU with AMX or AVX-512 BF16 (masks, k-means and "
        "outputs stay float32), float32 elsewhere; int8: dynamic int8 quantisation (CPU only, "
        "never auto; with the mask head within 0.02 dB of fp32 and fastest on short files, with "
        "k-means 0.1-0.2 dB lower; on a CPU without bf16, e.g. AVX2 only, the fastest choice: 2-4x fp32 "
        "with the mask head or blend, within 0.02 dB). A precision this CPU cannot run (bf16 on an "
        "AVX2-only CPU) is refused before any input (exit 2)",
    )
    p.add_argument(
        "--channel",
        type=int,
        default=Job.channel,
        metavar="N",
        help="separate channel N (counted from 1) of multi-channel inputs; default: their mean, or the "
        "loudest channel when the mean cancels (polarity-inverted channels); the manifest's downmix "
        "column says which",
    )
    p.add_argument(
        "--windows-per-batch",
        "--batch-size",
        dest="windows_per_batch",
        type=int,
        default=WindowConfig.windows_per_batch,
        help="inputs (or windows of long recordings) per network forward",
    )
    p.add_argument(
        "--window-seconds",
        type=float,
        default=WindowConfig.window_seconds,
        help="long recordings are cut in windows this long",
    )
    p.add_argument(
        "--overlap-seconds", type=float, default=WindowConfig.overlap_seconds, help="overlap of neighbouring windows"
    )
    p.add_argument("--files-per-batch", type=int, default=Job.files_per_batch, help="inputs per manifest commit")
    p.add_argument("--device", default=Job.device, help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    p.add_argument("--strict", action="store_true", help="exit 1 when any input failed")
    p.add_argument(
        "--retry-minutes",
        type=float,
        default=Job.retry_seconds / 60,
        help="how long a batch's transient faults (timeouts, throttling) are retried before its inputs are "
        "recorded as 'transient' (tried again by the next run; exit 75)",
    )
    p.add_argument(
        "--max-consecutive-failures",
        type=int,
        default=Job.max_consecutive_failures,
        help="failed inputs in a row that stop the run (exit 3): a lost mount or a broken model",
    )
    p.add_argument(
        "--stale-minutes",
        "--lock-stale-minutes",
        dest="stale_minutes",
        type=float,
        default=Job.stale_minutes,
        help="another run's lock whose heartbeat is older than this is taken over",
    )
    p.add_argument(
        "--break-lock", action="store_true", default=Job.break_lock, help="take OUT/.lock even if its owner looks alive"
    )
    p.add_argument("--summary-json", help="also write the run's summary (counts, speed, manifest I/O) here")
    # The command writes a page unless told not to; the library call (``ArchiveJobConfig.listen``) writes none.
    p.add_argument(
        "--listen",
        type=int,
        default=ARCHIVE_LISTEN_DEFAULT,
        metavar="N",
        help="write OUT/.listen/index.html: N inputs of this run to hear, and the failed ones (0 = off)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="separate batches on N local processes of one torch thread each (on 2 cores, 2 separated "
        "folders of short files 4-29 %% faster than one process; one long recording gains "
        "nothing); with --prefect: its threads or LocalCluster workers. Default: this process",
    )
    p.add_argument(
        "--prefect",
        action="store_true",
        help="run through the Prefect flow (one task per batch; the deepclust command, Prefect installed)",
    )
    p.add_argument(
        "--dask-address",
        default=None,
        help="run the flow on Dask: tcp://host:port (an existing cluster) or 'local' (implies --prefect)",
    )
    p.set_defaults(func=cmd_separate, needs_runners=True)


def plain_runner(workers: int | None):
    """Where the plain job's batches run: this process (None), or ``workers`` local processes."""
    if workers is None:
        return None
    if workers < 1:
        print("--workers takes a count of 1 or more", file=sys.stderr)
        raise SystemExit(2)
    from deepclust.archive.processes import batches_on_processes

    return batches_on_processes(workers)


def add_separate_archive(sub) -> None:
    add_separate(sub, "separate-archive")


def job_config_from_args(args):
    """The job's settings (``ArchiveJobConfig``) from ``separate``'s flags: the one place the command reads them."""
    from deepclust.archive.config import ArchiveJobConfig
    from deepclust.separation.long import WindowConfig

    window = WindowConfig(
        window_seconds=args.window_seconds,
        overlap_seconds=args.overlap_seconds,
        windows_per_batch=args.windows_per_batch,
    )
    splits = None if args.splits == "all" else tuple(s for s in args.splits.split(",") if s)
    return ArchiveJobConfig(
        n_speakers=args.n_speakers,
        files_per_batch=args.files_per_batch,
        window=window,
        device=args.device,
        kmeans=args.kmeans,
        inference=args.inference,
        precision=args.precision,
        channel=args.channel,
        splits=splits,
        retry_seconds=args.retry_minutes * 60,
        stale_minutes=args.stale_minutes,
        break_lock=args.break_lock,
        max_consecutive_failures=args.max_consecutive_failures,
        listen=args.listen,
    )


def refuse_what_stops_any_input(args) -> None:
    """For the Prefect paths, before a Prefect server or flow starts (which takes a minute and logs a traceback): an
    ``--input`` that is not there (retried through a restarting store, as the listing is) and, where batches run in
    this process, a ``--device`` this machine cannot use; each raised as the command's one plain line (exit 2). The
    plain job checks both itself before its lock (``separate_archive``); a Dask cluster's workers check their own
    device."""
    from deepclust.faults.transient import call_with_retries
    from deepclust.model.device import usable_device
    from deepclust.separation.inputs import require_input

    call_with_retries(
        lambda: require_input(args.input), what=f"listing {args.input}", budget_seconds=args.retry_minutes * 60
    )
    if not args.dask_address:
        usable_device(args.device)


def cmd_separate(args, runners: Runners | None = None) -> None:
    """``separate`` and ``separate-archive``: the same separation job (``deepclust.archive``), plain or as
    the Prefect flow (``--prefect``, ``--dask-address``: ``runners.separate_archive_flow``). Exit 0, 1 (``--strict``
    and failed inputs), 2 (a bad flag, or ``--prefect`` without the Prefect runner), 3 (the circuit breaker
    stopped the run) or 75 (transient faults outlasted the retries: run again)."""
    from deepclust.archive import BatchesFailedError, CircuitOpenError, separate_archive
    from deepclust.pipeline.driver import ProgressLine

    through_prefect = bool(args.prefect or args.dask_address)  # batches as tasks, on threads or on Dask
    if through_prefect and runners is None:
        print(
            f"{'--dask-address' if args.dask_address else '--prefect'} runs the separate-archive Prefect flow, "
            f"which this command line does not hold: run `deepclust {args.command}` (the console script) with "
            "Prefect installed (pip install 'deepclust[pipeline]'); `python -m deepclust` is the Prefect-free "
            "library command line",
            file=sys.stderr,
        )
        raise SystemExit(2)
    with settings_refused_plainly():  # a setting refused here (--channel 0, --window-seconds -1): exit 2
        config = job_config_from_args(args)
    args.model = model_or_pretrained(args.model)
    try:
        if through_prefect:
            refuse_what_stops_any_input(args)  # inside the try: a store down past --retry-minutes is exit 75
            summary = runners.separate_archive_flow(
                args.model, args.input, args.out, config, dask_address=args.dask_address, max_workers=args.workers
            )
        else:
            summary = separate_archive(
                args.model,
                args.input,
                args.out,
                config,
                progress=ProgressLine.callback("separate", to_stderr),
                map_batches=plain_runner(args.workers),
            )
    except CircuitOpenError as error:
        print(f"stopped: {error}", file=sys.stderr)
        raise SystemExit(EXIT_CIRCUIT_OPEN)
    except BatchesFailedError as error:  # (--workers N) the other batches are committed: say what the run did
        if error.summary:
            report(error.summary, args, exit=False)
        print(f"stopped: {error}", file=sys.stderr)
        raise SystemExit(1)
    except Exception as error:
        from deepclust.faults.transient import is_transient

        if not is_transient(error):
            raise
        print(
            f"stopped by a transient fault that retries did not cure ({type(error).__name__}: {error}); what was "
            "committed is kept: run again to finish",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_TEMPFAIL)
    report(summary, args)


def report(summary: dict, args, exit: bool = True) -> None:
    """Print the job's summary (failed and transient inputs on stderr), write ``--summary-json``, and (``exit``)
    exit 75 when transient faults are left, 1 on failed inputs with ``--strict``."""
    for relative_path, error in summary["failed_inputs"]:
        print(f"failed: {error}", file=sys.stderr)
    for relative_path, error in summary.get("transient_inputs", []):
        print(f"transient: {error}", file=sys.stderr)
    transient = f", {summary['transient']} transient" if summary.get("transient") else ""
    if not (summary["separated"] or summary["already_done"] or summary["failed"] or summary.get("transient")):
        from deepclust.audio.files import AUDIO_EXTENSIONS

        # An empty drop folder is not an error for a nightly job (exit 0), but a person who gave the wrong path
        # or a file of another kind should see why nothing happened.
        to_stderr(f"nothing to separate: {args.input} holds no audio file ({' '.join(AUDIO_EXTENSIONS)})")
    print(
        f"{summary['message']}: {summary['separated']} separated, {summary['already_done']} already done, "
        f"{summary['failed']} failed{transient}, {summary['real_time_factor']:.1f}x real time; "
        f"manifest: {summary['manifest_url']}"
    )
    if summary.get("listen"):  # the inputs the page holds: this run's, so none when it separated none
        print(
            f"listen: {summary['listen']} (a spot check of {summary.get('listen_inputs', 0)} inputs; open it in a "
            "browser)"
        )
    if args.summary_json:  # for scripts: counts, speed, manifest I/O, failed and transient inputs
        storage.write_text_atomic(args.summary_json, json.dumps(summary, indent=2, default=str) + "\n")
    if not exit:
        return
    if summary.get("transient"):
        raise SystemExit(EXIT_TEMPFAIL)
    if summary["failed"] and args.strict:
        raise SystemExit(1)
