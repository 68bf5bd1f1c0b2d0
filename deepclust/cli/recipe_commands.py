"""The whole recipe: ``deepclust reproduce`` and ``demo`` (every stage, through the ``reproduce`` flow when
``Runners.reproduce`` is handed in, else by hand) and ``compare`` (two runs side by side)."""

from __future__ import annotations

import sys

from deepclust import storage
from deepclust.cli.common import Runners, default_of

HELP = {
    "reproduce": "run every stage end to end (cached; reruns reuse finished stages)",
    "demo": "reproduce on the offline demo corpus (the README's main job)",
}


def add_reproduce(sub, name: str = "reproduce") -> None:
    from deepclust.recipe.config import ReproduceConfig
    from deepclust.recipe.presets import PRESETS, default_preset
    from deepclust.reports.comparison import find_regression

    p = sub.add_parser(name, help=HELP[name])
    p.add_argument("--out", default=ReproduceConfig.run_root, help="run root (local folder or s3:// URL)")
    p.add_argument("--corpus", default="demo", choices=["demo", "wsj0", "folder", "sources"])
    p.add_argument(
        "--preset",
        help=f"named recipe: {', '.join(PRESETS)} (default: {default_preset('wsj0')} for "
        f"wsj0, folder and sources, {default_preset('demo')} for the demo corpus)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD.PATH=VALUE",
        help="change one field of the resolved config, e.g. --set train.max_epochs=20 (repeatable; "
        "--print-config shows every field)",
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config as JSON and exit (runs nothing, reads no data)",
    )
    p.add_argument(
        "--sources",
        "--source",
        dest="sources",
        action="append",
        metavar="[NAME:]ROOT[=PATTERN]",
        help="--corpus sources: a speaker-labelled folder (repeatable), ids namespaced NAME/...",
    )
    p.add_argument("--wsj0-root")
    p.add_argument(
        "--mix-lists",
        help="folder holding the official mix_2_spk_{tr,cv,tt}.txt (and mix_3_spk_tt.txt for the 3-speaker test set)",
    )
    p.add_argument("--root", help="folder corpus root")
    p.add_argument("--pattern")
    p.add_argument("--test-speakers")
    p.add_argument("--scale", type=float, help="same as --set mixtures.scale=SCALE")
    p.add_argument(
        "--max-train-seconds",
        "--train-seconds",
        dest="max_train_seconds",
        type=float,
        help="training wall-clock budget (same as --set train.max_train_seconds=S)",
    )
    p.add_argument("--device", help="same as --set train.device=D --set separate.device=D")
    p.add_argument("--quick", action="store_true", help="the quick preset: a smoke test in a minute or two")
    p.add_argument(
        "--max-workers",
        "--workers",
        dest="max_workers",
        type=int,
        help="units run in parallel by the flow's task runner",
    )
    p.add_argument("--no-prefect", action="store_true", help="run the stages by hand, without Prefect")
    p.add_argument(
        "--history-url",
        "--history",
        dest="history_url",
        help="run history table (Parquet URL); default: OUT/../history.parquet",
    )
    p.add_argument(
        "--regression-margin-db",
        "--regression-margin",
        dest="regression_margin_db",
        type=float,
        default=default_of(find_regression, "margin_db"),  # the margin reproduce passes on to it
        help="exit 1 when 2-speaker SDRi falls this many dB below the best earlier run of the same config and corpus",
    )
    p.set_defaults(func=cmd_reproduce, needs_runners=True)


def add_demo(sub) -> None:
    add_reproduce(sub, "demo")


def reproduce_config_from_args(args):
    """The ``ReproduceConfig`` of ``reproduce``/``demo``: ``deepclust.recipe.resolve.resolve_recipe`` of the
    command line's preset, corpus, mix-list folder and overrides (the shorthand flags first, then ``--set``, each
    recorded in the config). Raises ``ValueError`` naming what is wrong."""
    from deepclust.recipe.resolve import resolve_recipe
    from deepclust.stages.corpus import CorpusConfig

    preset = args.preset
    if args.quick:
        if preset not in (None, "quick"):
            raise ValueError(f"--quick is the quick preset; it cannot be combined with --preset {preset}")
        preset = "quick"
    corpus = None  # the demo corpus, at the preset's own size
    if args.corpus != "demo":
        corpus = CorpusConfig(
            name=args.corpus,
            root=args.wsj0_root or args.root,
            pattern=args.pattern,
            test_speakers=args.test_speakers.split(",") if args.test_speakers else None,
            sources=args.sources,
        )
    shorthand = []
    if args.scale is not None:
        shorthand.append(f"mixtures.scale={args.scale}")
    if args.max_train_seconds is not None:
        shorthand.append(f"train.max_train_seconds={args.max_train_seconds}")
    if args.device:
        shorthand += [f"train.device={args.device}", f"separate.device={args.device}"]
    return resolve_recipe(preset, args.out, corpus, mix_lists=args.mix_lists, overrides=[*shorthand, *args.overrides])


def cmd_reproduce(args, runners: Runners | None = None) -> None:
    """``deepclust reproduce`` / ``demo``: resolve the config (``--print-config`` prints it and stops), check the
    inputs (exit 2 naming what is missing or malformed, before any stage), then every stage through Prefect
    (``runners.reproduce``) or by hand (with ``--no-prefect``, or without runners), then the summary; exit 1 on a
    quality regression."""
    import json

    from deepclust.recipe import reproduce as recipe
    from deepclust.recipe.config import request_label
    from deepclust.recipe.preflight import check_inputs

    try:
        config = reproduce_config_from_args(args)
        if args.print_config:
            print(json.dumps(config.to_dict(), indent=2))
            return
        check_inputs(config)
    except ValueError as error:  # a bad preset, --set or input (RecipeInputError): say it, run nothing
        print(f"deepclust {args.command}: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    log = lambda message: print(message, file=sys.stderr)  # noqa: E731
    log(f"{request_label(config.preset, config.overrides)} -> {config.run_root}")
    history = {"history_url": args.history_url, "regression_margin_db": args.regression_margin_db}
    if args.no_prefect or runners is None:
        record = recipe.reproduce(config, log=log, **history)
    else:
        # The Prefect flows (a server if PREFECT_API_URL is set, else Prefect's ephemeral mode); both paths share
        # the stage store, so either resumes what the other started.
        import logging

        # Prefect prints the library's log lines itself (and sends them to the UI): no second console copy.
        library_log = logging.getLogger("deepclust")
        for handler in list(library_log.handlers):
            if getattr(handler, "deepclust_console", False):
                library_log.removeHandler(handler)
        record = runners.reproduce(config, max_workers=args.max_workers, log=log, **history)
    recipe.print_summary(record)
    if args.command == "demo":
        _demo_real_example(storage.join(args.out, "real_example"))
    if (record.get("history") or {}).get("regression"):
        raise SystemExit(1)


def _demo_real_example(out_url: str) -> None:
    """The demo's last step: the shipped real-speech model on an embedded real two-talker recording."""
    from deepclust.evaluation.real_example import separate_example

    result = separate_example(out_url)
    print(
        f"\nReal speech: the shipped model ({result['inference']}) separated two LibriSpeech readers it never "
        f"heard ({result['mixture']}): SDRi {result['sdri']:.1f} dB, SI-SDRi {result['si_sdri']:.1f} dB, "
        f"in {result['seconds']:.2f} s.\nOutputs: {', '.join(result['outputs'])}"
    )


def add_compare(sub) -> None:
    p = sub.add_parser("compare", help="two runs side by side: config differences and results per condition")
    p.add_argument("run_a", help="run root or run.json")
    p.add_argument("run_b", help="run root or run.json")
    p.add_argument("--out", help="also write the Markdown here")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args) -> None:
    """``deepclust compare A B``: two runs' config differences and results side by side."""
    from deepclust.reports.comparison import compare_runs

    comparison = compare_runs(args.run_a, args.run_b)
    print(comparison["markdown"])
    if args.out:
        storage.write_text_atomic(args.out, comparison["markdown"] + "\n")
