"""The training commands: ``train`` (the training stage on a feature manifest), ``train-dynamic`` (dynamic mixing of
speaker-labelled folders, the shipped model's recipe) and ``export-model``. Each flag is named as the config field it
sets (``TrainConfig``, ``ModelConfig``, ``AugmentConfig``, ``DynamicMixConfig``); an older spelling is kept as an
alias."""

from __future__ import annotations

import argparse
import sys

from deepclust import storage
from deepclust.cli.common import (
    model_config,
    model_overrides,
    number_list,
    precision_arguments,
    run_stage_printing_url,
    settings_refused_plainly,
)


def train_config_arguments(
    p, preset: str, batch_size: int, steps_per_epoch: int | None, steps_help: str | None = None
) -> None:
    """The flags ``train`` and ``train-dynamic`` share: the network (``--preset``, ``--emb-dim/--hidden/--layers``)
    and the ``TrainConfig`` fields both set, each default the config's own except where a command's recipe differs
    (``preset``, ``batch_size``, ``steps_per_epoch``: passed in). ``train_config_of`` reads them back."""
    from deepclust.model.blstm import _PRESETS as MODEL_PRESETS
    from deepclust.training.config import TrainConfig

    p.add_argument("--preset", default=preset, choices=sorted(MODEL_PRESETS))
    precision_arguments(p, TrainConfig)
    model_overrides(p)
    p.add_argument(
        "--curriculum-chunk-frames",
        "--curriculum-frames",
        dest="curriculum_chunk_frames",
        type=int,
        help="continue with chunks of this many frames (paper: 400)",
    )
    p.add_argument(
        "--max-epochs",
        "--epochs",
        dest="max_epochs",
        type=int,
        default=TrainConfig.max_epochs,
        help="epochs per curriculum phase at most",
    )
    p.add_argument("--steps-per-epoch", type=int, default=steps_per_epoch, help=steps_help)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--learning-rate", type=float, default=TrainConfig.learning_rate)
    p.add_argument(
        "--max-train-seconds",
        "--max-seconds",
        dest="max_train_seconds",
        type=float,
        help="wall-clock budget over the whole run, resumes included",
    )
    p.add_argument("--device", default=TrainConfig.device)
    p.add_argument("--seed", type=int, default=TrainConfig.seed)


def train_config_of(args, **fields):
    """The ``TrainConfig`` of ``train_config_arguments``' flags, with a command's own ``fields`` over them."""
    from deepclust.model.device import resolve_precision, usable_device
    from deepclust.training.config import TrainConfig

    config = TrainConfig(
        curriculum_chunk_frames=args.curriculum_chunk_frames,
        max_epochs=args.max_epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_train_seconds=args.max_train_seconds,
        device=args.device,
        seed=args.seed,
        precision=args.precision,
        compile=args.compile,
        **fields,
    )
    # A precision this machine cannot run is refused now, before any data is read (exit 2, one line).
    resolve_precision(config.precision, usable_device(config.device))
    return config


def add_train(sub) -> None:
    from deepclust.training.config import TrainConfig

    p = sub.add_parser("train", help="train the BLSTM embedding network")
    p.add_argument("--features", required=True, help="feature manifest URL")
    train_config_arguments(
        p,
        preset="paper",
        batch_size=TrainConfig.batch_size,
        steps_per_epoch=TrainConfig.steps_per_epoch,
        steps_help="default: one pass over the training set",
    )
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> None:
    """``deepclust train``: the training stage on a feature manifest; prints the model file's URL."""
    from deepclust.stages.train import model_url_of, plan_train

    with settings_refused_plainly():
        model, config = model_config(args), train_config_of(args)
    url = run_stage_printing_url(plan_train(args.out, args.features, model, config))
    print(model_url_of(url))


def add_train_dynamic(sub) -> None:
    from deepclust.cli.common import default_of
    from deepclust.corpora.sources import prepare_sources
    from deepclust.training import dynamic_train
    from deepclust.training.augment import AugmentConfig
    from deepclust.training.config import TrainConfig
    from deepclust.training.dynamic_mixing import DynamicMixConfig

    p = sub.add_parser("train-dynamic", help="train on fresh mixtures of speaker-labelled folders (dynamic mixing)")
    p.add_argument(
        "--sources",
        "--source",
        dest="sources",
        action="append",
        required=True,
        metavar="[NAME:]ROOT[=PATTERN]",
        help="a speaker-labelled folder (repeatable); PATTERN: a preset or regex, default from its name",
    )
    p.add_argument(
        "--test-fraction",
        type=float,
        default=default_of(prepare_sources, "test_fraction"),
        help="speakers held out per source (never trained on)",
    )
    p.add_argument(
        "--split-seed",
        type=int,
        default=default_of(prepare_sources, "seed"),
        help="seed of the train/test speaker split",
    )
    p.add_argument(
        "--speaker-counts",
        "--speakers",
        dest="speaker_counts",
        type=number_list(int),
        default=DynamicMixConfig.speaker_counts,
        help="speaker counts of the training mixtures, e.g. 2 or 2,3",
    )
    p.add_argument(
        "--speaker-count-weights",
        type=number_list(float),
        default=DynamicMixConfig.speaker_count_weights,
        help="relative share of batches of each speaker count, e.g. 3,1 with --speaker-counts 2,3 (default: equal)",
    )
    p.add_argument(
        "--same-source-probability",
        type=float,
        default=DynamicMixConfig.same_source_probability,
        help="share of training mixtures whose talkers all come from one --source (one corpus, so one kind of "
        "microphone and room): the network must separate them by voice alone (0-1; 0 draws talkers from the "
        "whole pool)",
    )
    p.add_argument(
        "--speed-probability",
        type=float,
        default=DynamicMixConfig.speed_probability,
        help="share of talkers in training mixtures played faster or slower (pitch and tempo together, by one of "
        "--speed-factors): each speed of a talker is a new voice (0-1; 0: as recorded)",
    )
    p.add_argument(
        "--speed-factors",
        type=number_list(float),
        default=DynamicMixConfig.speed_factors,
        help="the speeds of --speed-probability, e.g. 0.95,1.05 (default 0.9,0.95,1.05,1.1)",
    )
    train_config_arguments(
        p, preset="chimera++", batch_size=dynamic_train.BATCH_SIZE, steps_per_epoch=dynamic_train.STEPS_PER_EPOCH
    )
    p.add_argument(
        "--init-from",
        metavar="MODEL",
        help="warm start: begin from this model file's weights (same "
        "network) with a fresh optimiser; the new file records the lineage",
    )
    p.add_argument(
        "--teacher",
        metavar="MODEL",
        help="learn from this model file too: its embeddings and masks of each training batch are extra "
        "targets (any network, e.g. a conv2 student of the shipped BLSTM); the lineage records it",
    )
    p.add_argument(
        "--teacher-weight",
        type=float,
        default=0.5,
        help="with --teacher: the share of each step's loss on matching the teacher (0-1, exclusive)",
    )
    p.add_argument(
        "--room-probability",
        type=float,
        default=AugmentConfig.room_probability,
        help="share of mixtures in a simulated room (early reflections as targets); 0 = off",
    )
    p.add_argument(
        "--noise-probability",
        type=float,
        default=AugmentConfig.noise_probability,
        help="share of mixtures with background noise; 0 = off",
    )
    p.add_argument("--noise-root", help="a folder of noise recordings (else coloured noise only)")
    p.add_argument("--snr-db-min", type=float, default=AugmentConfig.snr_db_range[0])
    p.add_argument("--snr-db-max", type=float, default=AugmentConfig.snr_db_range[1])
    p.add_argument(
        "--channel-probability",
        type=float,
        default=AugmentConfig.channel_probability,
        help="share of mixtures through a random band limit and EQ (phones, cheap microphones); 0 = off",
    )
    p.add_argument("--dc-loss", choices=["classic", "whitened"], help="default: whitened with a mask head")
    p.add_argument("--mask-loss-weight", type=float, default=TrainConfig.mask_loss_weight)
    p.add_argument(
        "--waveform-loss-weight",
        type=float,
        default=TrainConfig.waveform_loss_weight,
        help="share of the mask term on the negative SNR of the resynthesised waveforms instead of the "
        "PSA loss (0-1; a fine-tuning objective, see deepclust.model.waveform_loss)",
    )
    p.add_argument("--chunk-frames", type=int, default=TrainConfig.chunk_frames)
    p.add_argument("--patience", type=int, default=TrainConfig.patience)
    p.add_argument(
        "--lr-halving-patience", type=int, help="halve the learning rate after this many epochs without improvement"
    )
    p.add_argument(
        "--lr-halving-epochs",
        type=number_list(int),
        default=(),
        help="halve the learning rate after these epochs, e.g. 10,12",
    )
    p.add_argument("--snapshot-every", type=int, help="keep the model of every N-th epoch in OUT/snapshots/")
    p.add_argument(
        "--num-threads",
        "--threads",
        dest="num_threads",
        type=int,
        help="torch threads (per process with --processes; default: torch's choice)",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="data-parallel processes on this machine (one per core; on the 2-core dev machine one process with "
        "two threads measured faster); the effective batch is PROCESSES x --batch-size",
    )
    p.add_argument("--out", required=True, help="model.pt, checkpoints/last.pt, history.csv, corpus.parquet")
    p.set_defaults(func=cmd_train_dynamic)


def cmd_train_dynamic(args) -> None:
    """``deepclust train-dynamic``: dynamic mixing of speaker-labelled folders (the shipped model's recipe)."""
    from deepclust.corpora.sources import CorpusSource, prepare_sources
    from deepclust.training.augment import AugmentConfig
    from deepclust.training.dynamic_mixing import DynamicMixConfig
    from deepclust.training.processes import train_dynamic_on_processes

    with settings_refused_plainly():  # a value a config refuses: one plain line, exit 2
        model = model_config(args)
        train_config = train_config_of(
            args,
            chunk_frames=args.chunk_frames,
            patience=args.patience,
            num_threads=args.num_threads,
            dc_loss=args.dc_loss or ("whitened" if model.mask_heads else "classic"),
            mask_loss_weight=args.mask_loss_weight,
            waveform_loss_weight=args.waveform_loss_weight,
            lr_halving_patience=args.lr_halving_patience,
            snapshot_every=args.snapshot_every,
            lr_halving_epochs=args.lr_halving_epochs,
        )
        mix_config = DynamicMixConfig(
            speaker_counts=args.speaker_counts,
            speaker_count_weights=args.speaker_count_weights,
            same_source_probability=args.same_source_probability,
            speed_probability=args.speed_probability,
            speed_factors=args.speed_factors,
        )
        augment = AugmentConfig(
            room_probability=args.room_probability,
            noise_probability=args.noise_probability,
            channel_probability=args.channel_probability,
            noise_root=args.noise_root,
            snr_db_range=(args.snr_db_min, args.snr_db_max),
        )
    corpus = prepare_sources(
        [CorpusSource.parse(text) for text in args.sources], test_fraction=args.test_fraction, seed=args.split_seed
    )
    command = invoked_command()

    # Epoch lines (loss, time left) come through the library's logging (see deepclust.cli.main).
    result = train_dynamic_on_processes(
        args.processes,
        args.num_threads,
        corpus_manifest=corpus,
        out_url=args.out,
        model_config=model,
        train_config=train_config,
        mix_config=mix_config,
        provenance={"command": command},
        augment=augment,
        init_from=args.init_from,
        teacher=args.teacher,
        teacher_weight=args.teacher_weight,
    )
    print(
        f"{result['stopped_reason']} after {result['epochs']} epochs ({result['global_step']} steps); "
        f"best validation loss {result['best_val_loss']:.4f}; model: {storage.absolute(result['model_url'])}"
    )


def add_export_model(sub) -> None:
    p = sub.add_parser("export-model", help="a trained model file with half-precision weights (for shipping)")
    p.add_argument(
        "--model",
        required=True,
        action="append",
        help="the model file; repeated (snapshots of one run, oldest first, e.g. OUT/snapshots/epoch-*.pt): "
        "their weights are averaged, and the facts and lineage are the last one's",
    )
    p.add_argument("--out", required=True)
    p.add_argument(
        "--inference",
        action="append",
        default=[],
        type=inference_choice,
        metavar="K=METHOD",
        help=f"what --inference auto uses for K speakers ({', '.join(INFERENCE_METHODS)}), e.g. 2=blend: "
        "choose by benchmarks/bench_quality_real.py on sets the model never trained on",
    )
    p.set_defaults(func=cmd_export_model)


def invoked_command() -> str | None:
    """The command line this process was started with, as a person would type it again (a model file records it in
    its lineage): ``deepclust ...`` for the console script, ``python -m deepclust ...`` for the module; None when
    the CLI was called from Python (``main(argv)``), where no command line exists."""
    if not sys.argv:
        return None
    first = sys.argv[0].replace("\\", "/")
    if first.endswith("/deepclust") or first == "deepclust":
        return " ".join(["deepclust", *sys.argv[1:]])
    if first.endswith("deepclust/__main__.py"):
        return " ".join(["python -m deepclust", *sys.argv[1:]])
    return None


# What a model file may name for --inference auto (deepclust.separation.separator.METHODS, kept here as text so
# that the command line starts without torch; tests/test_cli_flags.py holds the two equal).
INFERENCE_METHODS = ("mask", "kmeans", "soft-kmeans", "blend")


def inference_choice(text: str) -> tuple[str, str]:
    """An argparse ``type`` for one ``--inference K=METHOD``: ``"2=blend"`` -> ``("2", "blend")``, or argparse's
    usage error (exit 2) saying which part is wrong."""
    k, _, method = text.partition("=")
    if not k.strip().isdigit() or int(k) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: K=METHOD with K a number of speakers (1 or more), e.g. 2=mask")
    if method not in INFERENCE_METHODS:
        raise argparse.ArgumentTypeError(f"{text!r}: K=METHOD with METHOD one of {', '.join(INFERENCE_METHODS)}")
    return str(int(k)), method


def cmd_export_model(args) -> None:
    """``deepclust export-model``: a half-precision copy of a model file, for shipping."""
    from deepclust.model.export import export_half

    choices = dict(args.inference)
    export_half(
        args.model, args.out, drop_extra=("skipped_sources",), set_extra={"inference": choices} if choices else None
    )
    print(storage.absolute(args.out))
