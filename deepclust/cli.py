"""``deepclust`` command line; each command mirrors a library call. ``deepclust COMMAND --help``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from dataclasses import dataclass
from typing import Callable

from deepclust import storage


@dataclass(frozen=True)
class Runners:
    """The Prefect paths of the command line, supplied from above the library (``flows.cli.main``, the
    ``deepclust`` console script); the library itself never imports ``flows/`` or Prefect.

    ``reproduce(config, max_workers=, log=, history_url=, regression_margin_db=) -> run record``: the recipe
    through the ``reproduce`` flow (``deepclust reproduce`` / ``demo`` without ``--no-prefect``).
    ``separate_archive(model_url, input_url, out_url, window=, retry_seconds=, dask_address=, **job) -> summary``:
    the archive job through the ``separate-archive`` flow (``deepclust separate --prefect`` / ``--dask-address``).
    Without runners (``python -m deepclust``), reproduce runs the stages by hand and ``--prefect`` is refused.
    """

    reproduce: Callable[..., dict]
    separate_archive: Callable[..., dict]


def _print(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _stage(plan) -> str:
    from deepclust.pipeline.driver import run_stage

    url = run_stage(plan, log=lambda m: print(m, file=sys.stderr))
    print(storage.absolute(url))
    return url


def cmd_corpus(args) -> None:
    """``deepclust corpus``: the corpus stage; prints the utterance manifest's URL."""
    from deepclust.stages.corpus import CorpusConfig, plan_corpus

    config = CorpusConfig(name=args.name, root=args.root, pattern=args.pattern,
                          test_speakers=args.test_speakers.split(",") if args.test_speakers else None,
                          seed=args.seed, utterances_per_speaker=args.utterances_per_speaker, sources=args.source)
    _stage(plan_corpus(args.out, config))


def _parse_lists(values) -> dict | None:
    if not values:
        return None
    lists = {}
    for value in values:
        split, _, url = value.partition("=")
        if split not in ("tr", "cv", "tt") or not url:
            raise SystemExit(f"--list expects tr=FILE, cv=FILE or tt=FILE, got {value!r}")
        lists[split] = url
    return lists


def cmd_mix(args) -> None:
    """``deepclust mix``: the mixtures stage (official lists or generated ones); prints the manifest's URL."""
    from deepclust.stages.mixtures import MixStageConfig, plan_mixtures

    config = MixStageConfig(n_speakers=args.speakers, sample_rate=args.sample_rate, mode=args.mode,
                            scale=args.scale, seed=args.seed, mix_lists=_parse_lists(args.list),
                            test_speaker_counts=tuple(int(n) for n in args.test_speakers.split(",")))
    _stage(plan_mixtures(args.out, args.corpus_manifest, config))


def cmd_features(args) -> None:
    """``deepclust features``: the features stage; prints the feature manifest's URL."""
    from deepclust.features.extract import FeatureConfig
    from deepclust.features.stft import StftConfig
    from deepclust.stages.features import plan_features

    config = FeatureConfig(stft=StftConfig(sample_rate=args.sample_rate), shard_format=args.format,
                           utterances_per_shard=args.utterances_per_shard)
    _stage(plan_features(args.out, args.mixtures, config))


def _model_config(args):
    """``--preset`` with the ``--emb-dim/--hidden/--layers`` overrides given on the command line."""
    from deepclust.model.blstm import ModelConfig

    overrides = {k: v for k, v in (("emb_dim", args.emb_dim), ("hidden", args.hidden), ("layers", args.layers))
                 if v is not None}
    return ModelConfig.preset(args.preset, **overrides)


def cmd_train(args) -> None:
    """``deepclust train``: the training stage on a feature manifest; prints the model file's URL."""
    from deepclust.stages.training import model_url_of, plan_training
    from deepclust.training.config import TrainConfig

    model_config = _model_config(args)
    train_config = TrainConfig(max_epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                               batch_size=args.batch_size, learning_rate=args.learning_rate, device=args.device,
                               seed=args.seed, max_train_seconds=args.max_seconds,
                               curriculum_chunk_frames=args.curriculum_frames, precision=args.precision,
                               compile=args.compile)
    url = _stage(plan_training(args.out, args.features, model_config, train_config))
    print(model_url_of(url))


def cmd_train_dynamic(args) -> None:
    """``deepclust train-dynamic``: dynamic mixing of speaker-labelled folders (the shipped model's recipe)."""
    from deepclust.corpora.sources import CorpusSource, prepare_sources
    from deepclust.training.config import TrainConfig
    from deepclust.training.augment import AugmentConfig
    from deepclust.training.dynamic_mixing import DynamicMixConfig
    from deepclust.training.dynamic_train import train_dynamic

    model_config = _model_config(args)
    train_config = TrainConfig(chunk_frames=args.chunk_frames, curriculum_chunk_frames=args.curriculum_frames,
                               max_epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, patience=args.patience,
                               batch_size=args.batch_size, learning_rate=args.learning_rate, device=args.device,
                               seed=args.seed, max_train_seconds=args.max_seconds, num_threads=args.threads,
                               dc_loss=args.dc_loss or ("whitened" if model_config.mask_heads else "classic"),
                               mask_loss_weight=args.mask_loss_weight,
                               lr_halving_patience=args.lr_halving_patience, snapshot_every=args.snapshot_every,
                               lr_halving_epochs=tuple(int(e) for e in args.lr_halving_epochs.split(",") if e),
                               precision=args.precision, compile=args.compile)
    mix_config = DynamicMixConfig(speaker_counts=tuple(int(n) for n in args.speakers.split(",")))
    augment = AugmentConfig(room_probability=args.room_probability, noise_probability=args.noise_probability,
                            channel_probability=args.channel_probability, noise_root=args.noise_root,
                            snr_db_range=(args.snr_db_min, args.snr_db_max))
    corpus = prepare_sources([CorpusSource.parse(text) for text in args.source], test_fraction=args.test_fraction,
                             seed=args.split_seed)
    command = "deepclust " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("deepclust") else None

    # Epoch lines (loss, time left) come through the library's logging (see main).
    result = train_dynamic(corpus, args.out, model_config, train_config, mix_config,
                           provenance={"command": command}, augment=augment, init_from=args.init_from)
    print(f"{result['stopped_reason']} after {result['epochs']} epochs ({result['global_step']} steps); "
          f"best validation loss {result['best_val_loss']:.4f}; model: {storage.absolute(result['model_url'])}")


def _model_or_pretrained(model: str | None) -> str:
    """The user's model file, or the shipped real-speech model (deepclust/pretrained)."""
    if model:
        return model
    from deepclust import pretrained

    pretrained.load()  # a clear error now if the installation lacks it
    print(f"model: the shipped real-speech model ({pretrained.path()})", file=sys.stderr)
    return pretrained.path()


def cmd_export_model(args) -> None:
    """``deepclust export-model``: a half-precision copy of a model file, for shipping."""
    from deepclust.model.export import export_half

    choices = dict(text.split("=", 1) for text in args.inference)
    bad = {k: v for k, v in choices.items() if not k.isdigit() or v not in ("mask", "kmeans", "soft-kmeans")}
    if bad:
        raise SystemExit(f"--inference takes K=METHOD with METHOD mask, kmeans or soft-kmeans; got {bad}")
    export_half(args.model, args.out, drop_extra=("skipped_sources",), set_extra={"inference": choices} if choices else None)
    print(storage.absolute(args.out))


EXIT_CIRCUIT_OPEN = 3  # the job stopped itself (device fault, or too many failures in a row)
EXIT_TEMPFAIL = 75  # sysexits' EX_TEMPFAIL: inputs hit transient faults; run again to finish them


def cmd_separate(args, runners: Runners | None = None) -> None:
    """``separate`` and ``separate-archive``: the same separation job (``deepclust.archive``), plain or as
    the Prefect flow (``--prefect``, ``--dask-address``: ``runners.separate_archive``). Exit 0, 1 (``--strict``
    and failed inputs), 2 (a bad flag, or ``--prefect`` without the Prefect runner), 3 (the circuit breaker
    stopped the run) or 75 (transient faults outlasted the retries: run again)."""
    from deepclust.archive import CircuitOpenError, separate_archive
    from deepclust.separation.long import WindowConfig

    through_prefect = bool(args.prefect or args.dask_address)  # batches as tasks, on threads or on Dask
    if through_prefect and runners is None:
        print(f"{'--dask-address' if args.dask_address else '--prefect'} runs the separate-archive Prefect flow, "
              f"which this command line does not hold: run `deepclust {args.command}` (the console script) with "
              "Prefect installed (pip install 'deepclust[pipeline]'); `python -m deepclust` is the Prefect-free "
              "library command line", file=sys.stderr)
        raise SystemExit(2)
    window = WindowConfig(window_seconds=args.window_seconds, overlap_seconds=args.overlap_seconds,
                          windows_per_batch=args.batch_size)
    splits = None if args.splits == "all" else tuple(s for s in args.splits.split(",") if s)
    if args.channel is not None and args.channel < 1:
        print("--channel counts channels from 1", file=sys.stderr)
        raise SystemExit(2)
    args.model = _model_or_pretrained(args.model)
    job = dict(n_speakers=args.speakers, files_per_batch=args.files_per_batch, device=args.device, splits=splits,
               inference=args.inference, stale_minutes=args.lock_stale_minutes, break_lock=args.break_lock,
               max_consecutive_failures=args.max_consecutive_failures, kmeans=args.kmeans,
               precision=args.precision, listen=args.listen, channel=args.channel)
    try:
        if through_prefect:
            summary = runners.separate_archive(args.model, args.input, args.out, window=window,
                                               retry_seconds=args.retry_minutes * 60, dask_address=args.dask_address,
                                               **job)
        else:
            summary = separate_archive(args.model, args.input, args.out, window=window,
                                       progress=_progress_printer("separate"),
                                       retry_seconds=args.retry_minutes * 60, **job)
    except CircuitOpenError as error:
        print(f"stopped: {error}", file=sys.stderr)
        raise SystemExit(EXIT_CIRCUIT_OPEN)
    except Exception as error:
        from deepclust.transient import is_transient

        if not is_transient(error):
            raise
        print(f"stopped by a transient fault that retries did not cure ({type(error).__name__}: {error}); what was "
              "committed is kept: run again to finish", file=sys.stderr)
        raise SystemExit(EXIT_TEMPFAIL)
    for relative_path, error in summary["failed_inputs"]:
        print(f"failed: {error}", file=sys.stderr)
    for relative_path, error in summary.get("transient_inputs", []):
        print(f"transient: {error}", file=sys.stderr)
    transient = f", {summary['transient']} transient" if summary.get("transient") else ""
    print(f"{summary['message']}: {summary['separated']} separated, {summary['already_done']} already done, "
          f"{summary['failed']} failed{transient}, {summary['real_time_factor']:.1f}x real time; "
          f"manifest: {summary['manifest_url']}")
    if summary.get("listen"):
        print(f"listen: {summary['listen']} (a spot check of {args.listen} inputs; open it in a browser)")
    if args.summary_json:  # for scripts: counts, speed, manifest I/O, failed and transient inputs
        storage.write_text_atomic(args.summary_json, json.dumps(summary, indent=2, default=str) + "\n")
    if summary.get("transient"):
        raise SystemExit(EXIT_TEMPFAIL)
    if summary["failed"] and args.strict:
        raise SystemExit(1)


def _progress_printer(name: str):
    """``progress(done, total)`` printing ``[name] done/total inputs, s, time left`` lines on stderr."""
    import time

    began = time.perf_counter()

    def progress(done: int, total: int) -> None:
        elapsed = time.perf_counter() - began
        left = f", ~{elapsed / done * (total - done):.0f} s left" if 0 < done < total else ""
        print(f"[{name}] {done}/{total} inputs, {elapsed:.0f} s{left}", file=sys.stderr)

    return progress


def cmd_evaluate(args) -> None:
    """``deepclust evaluate``: the evaluation stage; prints the headline table."""
    from deepclust.stages.evaluation import EvaluateConfig, plan_evaluation

    config = EvaluateConfig(backend=args.backend, oracles=tuple(o for o in args.oracles.split(",") if o))
    url = _stage(plan_evaluation(args.out, args.separated, args.mixtures, config))
    from deepclust.reports.summary import headline, markdown_table, summarise

    print(markdown_table(headline(summarise(storage.read_parquet(url)))))


def cmd_listen(args) -> None:
    """``deepclust listen``: the listening page of an evaluation (stage folder, its manifest or results.parquet)."""
    from deepclust.reports.listen import listen_to_evaluation

    print(listen_to_evaluation(args.evaluation, args.out))


def reproduce_config_from_args(args):
    """The ``ReproduceConfig`` of ``reproduce``/``demo``: the demo config with the command line's changes."""
    from deepclust.recipe.config import demo_config
    from deepclust.stages.corpus import CorpusConfig

    config = demo_config(args.out, quick=args.quick)
    if args.corpus != "demo":
        config.corpus = CorpusConfig(name=args.corpus, root=args.wsj0_root or args.root, pattern=args.pattern,
                                     test_speakers=args.test_speakers.split(",") if args.test_speakers else None,
                                     sources=args.source)
    if args.mix_lists:
        folder = args.mix_lists
        config.mix.mix_lists = {s: storage.join(folder, f"mix_{config.mix.n_speakers}_spk_{s}.txt")
                                for s in ("tr", "cv", "tt")}
    if args.scale is not None:
        config.mix.scale = args.scale
    if args.train_seconds is not None:
        config.train = dataclasses.replace(config.train, max_train_seconds=args.train_seconds)
    if args.device:
        config.train = dataclasses.replace(config.train, device=args.device)
        config.separate.device = args.device
    return config


def cmd_reproduce(args, runners: Runners | None = None) -> None:
    """``deepclust reproduce`` / ``demo``: every stage through Prefect (``runners.reproduce``) or by hand (with
    ``--no-prefect``, or without runners), then the summary; exit 1 on a quality regression."""
    from deepclust.recipe.reproduce import print_summary, reproduce

    config = reproduce_config_from_args(args)
    log = lambda message: print(message, file=sys.stderr)  # noqa: E731
    history = {"history_url": args.history, "regression_margin_db": args.regression_margin}
    if args.no_prefect or runners is None:
        record = reproduce(config, log=log, **history)
    else:
        # The Prefect flows (a server if PREFECT_API_URL is set, else Prefect's ephemeral mode); both paths share
        # the stage store, so either resumes what the other started.
        import logging

        # Prefect prints the library's log lines itself (and sends them to the UI): no second console copy.
        library_log = logging.getLogger("deepclust")
        for handler in list(library_log.handlers):
            if getattr(handler, "deepclust_console", False):
                library_log.removeHandler(handler)
        record = runners.reproduce(config, max_workers=args.workers, log=log, **history)
    print_summary(record)
    if args.command == "demo":
        _demo_real_example(storage.join(args.out, "real_example"))
    if (record.get("history") or {}).get("regression"):
        raise SystemExit(1)


def cmd_compare(args) -> None:
    """``deepclust compare A B``: two runs' config differences and results side by side."""
    from deepclust.reports.history import compare_runs

    comparison = compare_runs(args.run_a, args.run_b)
    print(comparison["markdown"])
    if args.out:
        storage.write_text_atomic(args.out, comparison["markdown"] + "\n")


def _demo_real_example(out_url: str) -> None:
    """The demo's last step: the shipped real-speech model on an embedded real two-talker recording."""
    from deepclust.real_example import separate_example

    result = separate_example(out_url)
    print(f"\nReal speech: the shipped model ({result['inference']}) separated two LibriSpeech readers it never "
          f"heard ({result['mixture']}): SDRi {result['sdri']:.1f} dB, SI-SDRi {result['si_sdri']:.1f} dB, "
          f"in {result['seconds']:.2f} s.\nOutputs: {', '.join(result['outputs'])}")


def _add_separation_parser(sub, name: str, helptext: str) -> None:
    from deepclust.archive import FILES_PER_BATCH, MAX_CONSECUTIVE_FAILURES
    from deepclust.separation.inputs import MIXTURE_SPLITS
    from deepclust.storage_lock import FolderLock
    from deepclust.transient import RETRY_BUDGET_SECONDS
    from deepclust.separation.long import WindowConfig
    from deepclust.reports.listen import ARCHIVE_LISTEN_DEFAULT

    p = sub.add_parser(name, help=helptext)
    p.add_argument("--model", help="model file (default: the shipped real-speech model)")
    p.add_argument("--input", required=True,
                   help="audio file, folder, s3://bucket/prefix (any audio, rate, channels, length) or a mixture "
                        "manifest (deepclust mix's manifest.parquet: its output can be passed to evaluate)")
    p.add_argument("--out", required=True,
                   help="folder or s3:// prefix: OUT/<relative path>/s1.wav .. sK.wav and OUT/manifest.parquet; "
                        "S3 endpoint and keys from FSSPEC_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY")
    p.add_argument("--speakers", type=int, default=2, help="sources per input (a mixture manifest knows its own)")
    p.add_argument("--splits", default=",".join(MIXTURE_SPLITS),
                   help="mixture manifests only: comma-separated splits to separate (tr, cv, tt), or 'all'")
    p.add_argument("--inference", default="auto", choices=["auto", "mask", "kmeans", "soft-kmeans"],
                   help="auto: a Chimera++ model's mask head when it has one for --speakers, else k-means")
    p.add_argument("--kmeans", default="auto", choices=["auto", "torch", "sklearn"],
                   help="auto: batched torch on CUDA, scikit-learn on CPU")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="auto: the network in bfloat16 on a CPU with AMX or AVX-512 BF16 (masks, k-means and "
                        "outputs stay float32), float32 elsewhere")
    p.add_argument("--channel", type=int, metavar="N",
                   help="separate channel N (counted from 1) of multi-channel inputs; default: their mean, or the "
                        "loudest channel when the mean cancels (polarity-inverted channels); the manifest's downmix "
                        "column says which")
    p.add_argument("--batch-size", type=int, default=WindowConfig.windows_per_batch,
                   help="inputs (or windows of long recordings) per network forward")
    p.add_argument("--window-seconds", type=float, default=WindowConfig.window_seconds,
                   help="long recordings are cut in windows this long")
    p.add_argument("--overlap-seconds", type=float, default=WindowConfig.overlap_seconds,
                   help="overlap of neighbouring windows")
    p.add_argument("--files-per-batch", type=int, default=FILES_PER_BATCH, help="inputs per manifest commit")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    p.add_argument("--strict", action="store_true", help="exit 1 when any input failed")
    p.add_argument("--retry-minutes", type=float, default=RETRY_BUDGET_SECONDS / 60,
                   help="how long a batch's transient faults (timeouts, throttling) are retried before its inputs are "
                        "recorded as 'transient' (tried again by the next run; exit 75)")
    p.add_argument("--max-consecutive-failures", type=int, default=MAX_CONSECUTIVE_FAILURES,
                   help="failed inputs in a row that stop the run (exit 3): a lost mount or a broken model")
    p.add_argument("--lock-stale-minutes", type=float, default=FolderLock.STALE_MINUTES,
                   help="another run's lock whose heartbeat is older than this is taken over")
    p.add_argument("--break-lock", action="store_true", help="take OUT/.lock even if its owner looks alive")
    p.add_argument("--summary-json", help="also write the run's summary (counts, speed, manifest I/O) here")
    p.add_argument("--listen", type=int, default=ARCHIVE_LISTEN_DEFAULT, metavar="N",
                   help="write OUT/.listen/index.html: N inputs of this run to hear, and the failed ones (0 = off)")
    p.add_argument("--prefect", action="store_true",
                   help="run through the Prefect flow (one task per batch; the deepclust command, Prefect installed)")
    p.add_argument("--dask-address", default=None,
                   help="run the flow on Dask: tcp://host:port (an existing cluster) or 'local' (implies --prefect)")
    p.set_defaults(func=cmd_separate)


def _precision_arguments(p, config) -> None:
    """``--precision`` and ``--compile``, read by training (and ``--precision`` by separation)."""
    p.add_argument("--precision", default=config.precision, choices=["auto", "fp32", "bf16"],
                   help="auto: bfloat16 on a CPU with AMX or AVX-512 BF16, float32 on other CPUs, amp on CUDA")
    if hasattr(config, "compile"):
        p.add_argument("--compile", default=config.compile, choices=["auto", "on", "off"],
                       help="torch.compile the heads and losses (auto: runs of 1,000 steps or more)")


def build_parser() -> argparse.ArgumentParser:
    """The ``deepclust`` argument parser, one sub-command per library call."""
    # Every default below is read from the typed config that owns it (one place per default).
    from deepclust.features.extract import FeatureConfig
    from deepclust.features.stft import StftConfig
    from deepclust.stages.evaluation import EvaluateConfig
    from deepclust.stages.mixtures import MixStageConfig
    from deepclust.training import dynamic_train
    from deepclust.model.blstm import _PRESETS as MODEL_PRESETS
    from deepclust.training.augment import AugmentConfig
    from deepclust.training.config import TrainConfig

    parser = argparse.ArgumentParser(prog="deepclust", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("corpus", help="make an utterance manifest from a corpus (demo, wsj0, folder)")
    p.add_argument("name", choices=["demo", "wsj0", "folder", "sources"])
    p.add_argument("--source", action="append", metavar="[NAME:]ROOT[=PATTERN]",
                   help="sources only: a speaker-labelled folder (repeatable)")
    p.add_argument("--root", help="corpus root (wsj0: the converted WSJ0 tree; folder: any speaker-labelled tree)")
    p.add_argument("--pattern", help="folder only: librispeech, vctk, fsdd, or a regex with a (?P<speaker>...) group")
    p.add_argument("--test-speakers", help="comma-separated speakers held out of training")
    p.add_argument("--utterances-per-speaker", type=int, help="demo only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="run root; the manifest goes to OUT/corpus/<key>/")
    p.set_defaults(func=cmd_corpus)

    p = sub.add_parser("mix", help="mixtures as the wsj0-2mix/3mix recipe (official lists or generated ones)")
    p.add_argument("--corpus-manifest", required=True)
    p.add_argument("--list", action="append", metavar="SPLIT=FILE", help="official mix list, e.g. tr=mix_2_spk_tr.txt")
    p.add_argument("--speakers", type=int, default=2)
    p.add_argument("--test-speakers", default="2", help="speaker counts of the test sets, e.g. 2,3")
    p.add_argument("--sample-rate", type=int, default=MixStageConfig.sample_rate, choices=[8000, 16000])
    p.add_argument("--mode", default=MixStageConfig.mode, choices=["min", "max"])
    p.add_argument("--scale", type=float, default=MixStageConfig.scale, help="scales the 20k/5k/3k list sizes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_mix)

    p = sub.add_parser("features", help="log-magnitude, IBM targets and weights as shards")
    p.add_argument("--mixtures", required=True, help="mixture manifest URL")
    p.add_argument("--format", default=FeatureConfig.shard_format, choices=["parquet", "npz"])
    p.add_argument("--sample-rate", type=int, default=StftConfig.sample_rate)
    p.add_argument("--utterances-per-shard", type=int, default=FeatureConfig.utterances_per_shard)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("train", help="train the BLSTM embedding network")
    p.add_argument("--features", required=True, help="feature manifest URL")
    p.add_argument("--preset", default="paper", choices=sorted(MODEL_PRESETS))
    _precision_arguments(p, TrainConfig)
    p.add_argument("--emb-dim", type=int)
    p.add_argument("--hidden", type=int)
    p.add_argument("--layers", type=int)
    p.add_argument("--epochs", type=int, default=TrainConfig.max_epochs)
    p.add_argument("--steps-per-epoch", type=int, default=TrainConfig.steps_per_epoch,
                   help="default: one pass over the training set")
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--learning-rate", type=float, default=TrainConfig.learning_rate)
    p.add_argument("--curriculum-frames", type=int, help="continue with chunks of this many frames (paper: 400)")
    p.add_argument("--max-seconds", type=float, help="wall-clock budget")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("train-dynamic", help="train on fresh mixtures of speaker-labelled folders (dynamic mixing)")
    p.add_argument("--source", action="append", required=True, metavar="[NAME:]ROOT[=PATTERN]",
                   help="a speaker-labelled folder (repeatable); PATTERN: a preset or regex, default from its name")
    p.add_argument("--test-fraction", type=float, default=0.25, help="speakers held out per source (never trained on)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/test speaker split")
    p.add_argument("--speakers", default="2", help="speaker counts of the training mixtures, e.g. 2 or 2,3")
    p.add_argument("--preset", default="chimera++", choices=sorted(MODEL_PRESETS))
    _precision_arguments(p, TrainConfig)
    p.add_argument("--init-from", metavar="MODEL", help="warm start: begin from this model file's weights (same "
                   "network) with a fresh optimiser; the new file records the lineage")
    p.add_argument("--room-probability", type=float, default=AugmentConfig.room_probability,
                   help="share of mixtures in a simulated room (early reflections as targets); 0 = off")
    p.add_argument("--noise-probability", type=float, default=AugmentConfig.noise_probability,
                   help="share of mixtures with background noise; 0 = off")
    p.add_argument("--noise-root", help="a folder of noise recordings (else coloured noise only)")
    p.add_argument("--snr-db-min", type=float, default=AugmentConfig.snr_db_range[0])
    p.add_argument("--snr-db-max", type=float, default=AugmentConfig.snr_db_range[1])
    p.add_argument("--channel-probability", type=float, default=AugmentConfig.channel_probability,
                   help="share of mixtures through a random band limit and EQ (phones, cheap microphones); 0 = off")
    p.add_argument("--emb-dim", type=int)
    p.add_argument("--hidden", type=int)
    p.add_argument("--layers", type=int)
    p.add_argument("--dc-loss", choices=["classic", "whitened"], help="default: whitened with a mask head")
    p.add_argument("--mask-loss-weight", type=float, default=TrainConfig.mask_loss_weight)
    p.add_argument("--chunk-frames", type=int, default=TrainConfig.chunk_frames)
    p.add_argument("--curriculum-frames", type=int, help="continue with chunks of this many frames (paper: 400)")
    p.add_argument("--epochs", type=int, default=TrainConfig.max_epochs, help="epochs per curriculum stage at most")
    p.add_argument("--steps-per-epoch", type=int, default=dynamic_train.STEPS_PER_EPOCH)
    p.add_argument("--patience", type=int, default=TrainConfig.patience)
    p.add_argument("--lr-halving-patience", type=int, help="halve the learning rate after this many epochs "
                   "without improvement")
    p.add_argument("--lr-halving-epochs", default="", help="halve the learning rate after these epochs, e.g. 10,12")
    p.add_argument("--batch-size", type=int, default=dynamic_train.BATCH_SIZE)
    p.add_argument("--learning-rate", type=float, default=TrainConfig.learning_rate)
    p.add_argument("--snapshot-every", type=int, help="keep the model of every N-th epoch in OUT/snapshots/")
    p.add_argument("--max-seconds", type=float, help="safety cap on wall-clock time")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="model.pt, checkpoints/last.pt, history.csv, corpus.parquet")
    p.set_defaults(func=cmd_train_dynamic)

    p = sub.add_parser("export-model", help="a trained model file with half-precision weights (for shipping)")
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--inference", action="append", default=[], metavar="K=METHOD",
                   help="what --inference auto uses for K speakers (mask, kmeans, soft-kmeans), e.g. 2=soft-kmeans: "
                        "choose by benchmarks/bench_quality_real.py on sets the model never trained on")
    p.set_defaults(func=cmd_export_model)

    for name, helptext in (
            ("separate", "separate one audio file, a folder, an s3:// prefix or a mixture manifest (resumable)"),
            ("separate-archive", "the same as separate, named for large archives (folder or s3:// prefix)")):
        _add_separation_parser(sub, name, helptext)

    p = sub.add_parser("evaluate", help="BSS-eval and SI-SDR tables, with IBM/IRM oracle rows")
    p.add_argument("--mixtures", required=True, help="mixture manifest URL")
    p.add_argument("--separated", required=True, help="separation manifest URL")
    p.add_argument("--backend", default=EvaluateConfig.backend, choices=["fast", "mir_eval"])
    p.add_argument("--oracles", default=",".join(EvaluateConfig.oracles))
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("listen", help="a static HTML page to hear an evaluation's best, median and worst mixtures")
    p.add_argument("--evaluation", required=True,
                   help="an evaluation stage folder, its manifest.parquet or its results.parquet")
    p.add_argument("--out", help="folder of the page (default: the evaluation stage folder, beside report.md)")
    p.set_defaults(func=cmd_listen)

    for name, helptext in (("reproduce", "run every stage end to end (cached; reruns reuse finished stages)"),
                           ("demo", "reproduce on the offline demo corpus (the README's main job)")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--out", default="runs/demo", help="run root (local folder or s3:// URL)")
        p.add_argument("--corpus", default="demo", choices=["demo", "wsj0", "folder", "sources"])
        p.add_argument("--source", action="append", metavar="[NAME:]ROOT[=PATTERN]",
                       help="--corpus sources: a speaker-labelled folder (repeatable), ids namespaced NAME/...")
        p.add_argument("--wsj0-root")
        p.add_argument("--mix-lists", help="folder holding the official mix_2_spk_{tr,cv,tt}.txt")
        p.add_argument("--root", help="folder corpus root")
        p.add_argument("--pattern")
        p.add_argument("--test-speakers")
        p.add_argument("--scale", type=float)
        p.add_argument("--train-seconds", type=float, help="training wall-clock budget")
        p.add_argument("--device")
        p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test in a minute or two")
        p.add_argument("--workers", type=int, help="units run in parallel by the flow's task runner")
        p.add_argument("--no-prefect", action="store_true", help="run the stages by hand, without Prefect")
        p.add_argument("--history", help="run history table (Parquet URL); default: OUT/../history.parquet")
        p.add_argument("--regression-margin", type=float, default=0.5,
                       help="exit 1 when 2-speaker SDRi falls this many dB below the best earlier run of the same "
                            "config and corpus")
        p.set_defaults(func=cmd_reproduce)
    p = sub.add_parser("compare", help="two runs side by side: config differences and results per condition")
    p.add_argument("run_a", help="run root or run.json")
    p.add_argument("run_b", help="run root or run.json")
    p.add_argument("--out", help="also write the Markdown here")
    p.set_defaults(func=cmd_compare)
    return parser


def main(argv=None, runners: Runners | None = None) -> None:
    """The library's command line (``python -m deepclust``); the ``deepclust`` console script is ``flows.cli.main``,
    which calls this with the Prefect ``runners``. Exits (``SystemExit``) with the command's code."""
    import logging

    args = build_parser().parse_args(argv)
    # The ephemeral Prefect server this command may start would try to send analytics (and log an ERROR
    # on an offline machine): off, unless the user has chosen otherwise.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The library reports progress (training epochs, loss, time left) through logging: show it on the
    # console, so a person watching a long stage sees it move.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.deepclust_console = True
    library_log = logging.getLogger("deepclust")
    if not library_log.handlers:
        library_log.addHandler(handler)
        library_log.setLevel(logging.INFO)
    if args.func in (cmd_separate, cmd_reproduce):  # the two commands with a Prefect path
        args.func(args, runners)
    else:
        args.func(args)


if __name__ == "__main__":
    main()
