"""The stage commands: ``corpus``, ``mix``, ``features``, ``evaluate`` (each one recipe stage, run by the one driver
into ``OUT/<stage>/<key>/``) and ``listen``. Each flag is named as the config field it sets; an older spelling is
kept as an alias."""

from __future__ import annotations

from deepclust.cli.common import number_list, run_stage_printing_url, settings_refused_plainly


def add_corpus(sub) -> None:
    from deepclust.stages.corpus import CorpusConfig

    p = sub.add_parser("corpus", help="make an utterance manifest from a corpus (demo, wsj0, folder, sources)")
    p.add_argument("name", choices=["demo", "wsj0", "folder", "sources"])
    p.add_argument(
        "--sources",
        "--source",
        dest="sources",
        action="append",
        metavar="[NAME:]ROOT[=PATTERN]",
        help="sources only: a speaker-labelled folder (repeatable)",
    )
    p.add_argument("--root", help="corpus root (wsj0: the converted WSJ0 tree; folder: any speaker-labelled tree)")
    p.add_argument("--pattern", help="folder only: librispeech, vctk, fsdd, or a regex with a (?P<speaker>...) group")
    p.add_argument("--test-speakers", help="comma-separated speakers held out of training")
    p.add_argument("--utterances-per-speaker", type=int, help="demo only")
    p.add_argument("--seed", type=int, default=CorpusConfig.seed)
    p.add_argument("--out", required=True, help="run root; the manifest goes to OUT/corpus/<key>/")
    p.set_defaults(func=cmd_corpus)


def cmd_corpus(args) -> None:
    """``deepclust corpus``: the corpus stage; prints the utterance manifest's URL."""
    from deepclust.recipe.preflight import check_corpus
    from deepclust.stages.corpus import CorpusConfig, plan_corpus

    config = CorpusConfig(
        name=args.name,
        root=args.root,
        pattern=args.pattern,
        test_speakers=args.test_speakers.split(",") if args.test_speakers else None,
        seed=args.seed,
        utterances_per_speaker=args.utterances_per_speaker,
        sources=args.sources,
    )
    with settings_refused_plainly():  # a root or --source the corpus kind needs and lacks: one line, exit 2
        check_corpus(config, root_flag="--root")
    run_stage_printing_url(plan_corpus(args.out, config))


def add_mixtures(sub) -> None:
    from deepclust.stages.mixtures import MixStageConfig

    # Named for its stage, "mixtures" (one name per concept); "mix" is kept for one release (OLD_COMMAND_NAMES).
    p = sub.add_parser(
        "mixtures", aliases=["mix"], help="mixtures as the wsj0-2mix/3mix recipe (official lists or generated ones)"
    )
    p.add_argument("--corpus-manifest", required=True)
    p.add_argument(
        "--mix-lists",
        "--list",
        dest="mix_lists",
        action="append",
        metavar="SPLIT=FILE",
        help="official mix list, e.g. tr=mix_2_spk_tr.txt",
    )
    p.add_argument("--n-speakers", "--speakers", dest="n_speakers", type=int, default=MixStageConfig.n_speakers)
    p.add_argument(
        "--test-speaker-counts",
        "--test-speakers",
        dest="test_speaker_counts",
        type=number_list(int),
        default=MixStageConfig.test_speaker_counts,
        help="speaker counts of the test sets, e.g. 2,3",
    )
    p.add_argument("--sample-rate", type=int, default=MixStageConfig.sample_rate, choices=[8000, 16000])
    p.add_argument("--mode", default=MixStageConfig.mode, choices=["min", "max"])
    p.add_argument("--scale", type=float, default=MixStageConfig.scale, help="scales the 20k/5k/3k list sizes")
    p.add_argument("--seed", type=int, default=MixStageConfig.seed)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_mixtures)


def parse_mix_lists(values) -> dict | None:
    """``["tr=FILE", ...]`` as ``{"tr": FILE, ...}`` (``MixStageConfig.mix_lists``); exits naming a bad one."""
    if not values:
        return None
    lists = {}
    for value in values:
        split, _, url = value.partition("=")
        if split not in ("tr", "cv", "tt") or not url:
            raise SystemExit(f"--list expects tr=FILE, cv=FILE or tt=FILE, got {value!r}")
        lists[split] = url
    return lists


def cmd_mixtures(args) -> None:
    """``deepclust mixtures``: the mixtures stage (official lists or generated ones); prints the manifest's URL."""
    from deepclust.stages.mixtures import MixStageConfig, plan_mixtures

    config = MixStageConfig(
        n_speakers=args.n_speakers,
        sample_rate=args.sample_rate,
        mode=args.mode,
        scale=args.scale,
        seed=args.seed,
        mix_lists=parse_mix_lists(args.mix_lists),
        test_speaker_counts=args.test_speaker_counts,
    )
    run_stage_printing_url(plan_mixtures(args.out, args.corpus_manifest, config))


def add_features(sub) -> None:
    from deepclust.features.extract import FeatureConfig
    from deepclust.features.stft import StftConfig

    p = sub.add_parser("features", help="log-magnitude, IBM targets and weights as shards")
    p.add_argument("--mixtures", required=True, help="mixture manifest URL")
    p.add_argument(
        "--shard-format",
        "--format",
        dest="shard_format",
        default=FeatureConfig.shard_format,
        choices=["parquet", "npz"],
    )
    p.add_argument("--sample-rate", type=int, default=StftConfig.sample_rate)
    p.add_argument("--utterances-per-shard", type=int, default=FeatureConfig.utterances_per_shard)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_features)


def cmd_features(args) -> None:
    """``deepclust features``: the features stage; prints the feature manifest's URL."""
    from deepclust.features.extract import FeatureConfig
    from deepclust.features.stft import StftConfig
    from deepclust.stages.features import plan_features

    config = FeatureConfig(
        stft=StftConfig(sample_rate=args.sample_rate),
        shard_format=args.shard_format,
        utterances_per_shard=args.utterances_per_shard,
    )
    run_stage_printing_url(plan_features(args.out, args.mixtures, config))


def add_evaluate(sub) -> None:
    from deepclust.stages.evaluate import EvaluateConfig

    p = sub.add_parser("evaluate", help="BSS-eval and SI-SDR tables, with IBM/IRM oracle rows")
    p.add_argument("--mixtures", required=True, help="mixture manifest URL")
    p.add_argument("--separated", required=True, help="separation manifest URL")
    p.add_argument("--backend", default=EvaluateConfig.backend, choices=["fast", "mir_eval"])
    p.add_argument("--oracles", default=",".join(EvaluateConfig.oracles))
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args) -> None:
    """``deepclust evaluate``: the evaluation stage; prints the headline table."""
    from deepclust import storage
    from deepclust.reports.summary import headline, markdown_table, summarise_by_condition
    from deepclust.stages.evaluate import EvaluateConfig, plan_evaluate

    config = EvaluateConfig(backend=args.backend, oracles=tuple(o for o in args.oracles.split(",") if o))
    url = run_stage_printing_url(plan_evaluate(args.out, args.separated, args.mixtures, config))
    print(markdown_table(headline(summarise_by_condition(storage.read_parquet(url), url))))


def add_listen(sub) -> None:
    p = sub.add_parser("listen", help="a static HTML page to hear an evaluation's best, median and worst mixtures")
    p.add_argument(
        "--evaluation", required=True, help="an evaluation stage folder, its manifest.parquet or its results.parquet"
    )
    p.add_argument("--out", help="folder of the page (default: the evaluation stage folder, beside report.md)")
    p.set_defaults(func=cmd_listen)


def cmd_listen(args) -> None:
    """``deepclust listen``: the listening page of an evaluation (stage folder, its manifest or results.parquet)."""
    from deepclust.reports.listen import listen_to_evaluation

    print(listen_to_evaluation(args.evaluation, args.out))
