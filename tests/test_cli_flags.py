"""Command-line flags are named as the config fields they set, an older spelling still parses the same, and every
default is the config's own (or, where no config holds it, the default of the library call's parameter)."""

from __future__ import annotations

import inspect

import pytest

from deepclust.archive.config import ArchiveJobConfig
from deepclust.cli import build_parser
from deepclust.corpora.sources import prepare_sources
from deepclust.features.extract import FeatureConfig
from deepclust.recipe.config import ReproduceConfig
from deepclust.recipe.reproduce import record_history, reproduce
from deepclust.reports.comparison import find_regression
from deepclust.separation.long import WindowConfig
from deepclust.stages.mixtures import MixStageConfig
from deepclust.training.config import TrainConfig

# Each command with its required arguments.
TRAIN = ["train", "--features", "f", "--out", "o"]
TRAIN_DYNAMIC = ["train-dynamic", "--sources", "a", "--out", "o"]
MIX = ["mix", "--corpus-manifest", "c", "--out", "o"]
FEATURES = ["features", "--mixtures", "m", "--out", "o"]
SEPARATE = ["separate", "--input", "i", "--out", "o"]
SEPARATE_ARCHIVE = ["separate-archive", "--input", "i", "--out", "o"]
REPRODUCE = ["reproduce"]

RENAMED = [  # (command and its required arguments, field spelling, older spelling, value)
    (TRAIN, "--max-epochs", "--epochs", "3"),
    (TRAIN, "--max-train-seconds", "--max-seconds", "60"),
    (TRAIN, "--curriculum-chunk-frames", "--curriculum-frames", "400"),
    (TRAIN_DYNAMIC, "--num-threads", "--threads", "2"),
    (TRAIN_DYNAMIC, "--speaker-counts", "--speakers", "2,3"),
    (["train-dynamic", "--out", "o", "--max-epochs", "1"], "--sources", "--source", "a"),
    (MIX, "--n-speakers", "--speakers", "3"),
    (MIX, "--test-speaker-counts", "--test-speakers", "2,3"),
    (MIX, "--mix-lists", "--list", "tr=a.txt"),
    (FEATURES, "--shard-format", "--format", "npz"),
    (SEPARATE, "--windows-per-batch", "--batch-size", "3"),
    (SEPARATE, "--n-speakers", "--speakers", "3"),
    (SEPARATE_ARCHIVE, "--stale-minutes", "--lock-stale-minutes", "5"),
    (REPRODUCE, "--max-train-seconds", "--train-seconds", "60"),
    (["demo"], "--max-workers", "--workers", "2"),
    (REPRODUCE, "--history-url", "--history", "h.parquet"),
    (REPRODUCE, "--regression-margin-db", "--regression-margin", "1.5"),
    (["corpus", "sources", "--out", "o"], "--sources", "--source", "a"),
]


@pytest.mark.parametrize("command, field_flag, old_flag, value", RENAMED)
def test_a_flag_spelled_as_its_field_and_its_older_spelling_parse_the_same(command, field_flag, old_flag, value):
    parser = build_parser()
    assert vars(parser.parse_args([*command, field_flag, value])) == vars(
        parser.parse_args([*command, old_flag, value])
    )


def test_defaults_are_read_from_the_configs_that_own_them():
    parser = build_parser()
    train = parser.parse_args(TRAIN)
    assert (train.max_epochs, train.device, train.seed) == (
        TrainConfig.max_epochs,
        TrainConfig.device,
        TrainConfig.seed,
    )
    dynamic = parser.parse_args(TRAIN_DYNAMIC)  # the TrainConfig flags both training commands share, one builder
    assert (dynamic.max_epochs, dynamic.learning_rate, dynamic.device, dynamic.seed, dynamic.precision) == (
        TrainConfig.max_epochs,
        TrainConfig.learning_rate,
        TrainConfig.device,
        TrainConfig.seed,
        TrainConfig.precision,
    )
    mix = parser.parse_args(MIX)
    assert mix.n_speakers == MixStageConfig.n_speakers
    assert mix.test_speaker_counts == MixStageConfig.test_speaker_counts
    assert parser.parse_args(FEATURES).shard_format == FeatureConfig.shard_format
    separate = parser.parse_args(SEPARATE)
    assert (separate.windows_per_batch, separate.window_seconds) == (
        WindowConfig.windows_per_batch,
        WindowConfig.window_seconds,
    )
    assert parser.parse_args(REPRODUCE).out == ReproduceConfig.run_root


def _owner_default(func, name):
    return inspect.signature(func).parameters[name].default


SIGNATURE_OWNED = [  # (command, parsed attribute, the library call whose signature owns the default, its parameter)
    (TRAIN_DYNAMIC, "test_fraction", prepare_sources, "test_fraction"),
    (TRAIN_DYNAMIC, "split_seed", prepare_sources, "seed"),
    (REPRODUCE, "regression_margin_db", find_regression, "margin_db"),
    (["demo"], "regression_margin_db", find_regression, "margin_db"),
]


@pytest.mark.parametrize(
    "command, attribute, owner, parameter", SIGNATURE_OWNED, ids=[f"{c[0]}-{a}" for c, a, _, _ in SIGNATURE_OWNED]
)
def test_defaults_no_config_holds_are_read_from_the_library_call_that_owns_them(
    command, attribute, owner, parameter, monkeypatch
):
    default = _owner_default(owner, parameter)
    assert default is not inspect.Parameter.empty
    assert getattr(build_parser().parse_args(command), attribute) == default
    # Not a coincidence of equal literals: a changed owner changes the flag's default.
    moved = object()
    real_signature = inspect.signature

    def signature(func, *args, **kwargs):
        found = real_signature(func, *args, **kwargs)
        if func is not owner:
            return found
        return found.replace(
            parameters=[p.replace(default=moved) if p.name == parameter else p for p in found.parameters.values()]
        )

    monkeypatch.setattr(inspect, "signature", signature)
    assert getattr(build_parser().parse_args(command), attribute) is moved


# (parsed attribute, the ArchiveJobConfig field that owns its default, field value -> flag value)
JOB_CONFIG_OWNED = [
    (name, name, lambda value: value)
    for name in (
        "n_speakers",
        "files_per_batch",
        "device",
        "kmeans",
        "inference",
        "precision",
        "channel",
        "stale_minutes",
        "break_lock",
        "max_consecutive_failures",
    )
]
JOB_CONFIG_OWNED += [("retry_minutes", "retry_seconds", lambda seconds: seconds / 60), ("splits", "splits", ",".join)]


@pytest.mark.parametrize("command", [SEPARATE, SEPARATE_ARCHIVE], ids=lambda command: command[0])
@pytest.mark.parametrize("attribute, field, as_flag", JOB_CONFIG_OWNED, ids=[a for a, _, _ in JOB_CONFIG_OWNED])
def test_separate_reads_its_defaults_from_the_archive_job_config(command, attribute, field, as_flag, monkeypatch):
    """Each job flag's default is ``ArchiveJobConfig``'s, and the flags left alone build exactly the default config
    (the listening page aside: the command writes one unless told not to)."""
    from deepclust.cli.separate_commands import job_config_from_args

    parsed = build_parser().parse_args(command)
    assert getattr(parsed, attribute) == as_flag(getattr(ArchiveJobConfig, field))
    assert job_config_from_args(parsed) == ArchiveJobConfig(listen=parsed.listen)
    # Not a coincidence of equal literals: a changed owner changes the flag's default.
    moved = {"splits": ("cv",), "break_lock": True, "channel": 2}.get(field, 7)
    monkeypatch.setattr(ArchiveJobConfig, field, moved)
    assert getattr(build_parser().parse_args(command), attribute) == as_flag(moved)


def test_the_regression_margin_is_passed_on_to_find_regression_unchanged():
    """``--regression-margin-db`` reads ``find_regression``'s margin (the check that gives it its meaning); the recipe
    calls that hand it on keep the same default, so reproduce from Python and from the command line agree."""
    margin = build_parser().parse_args(REPRODUCE).regression_margin_db
    assert margin == _owner_default(find_regression, "margin_db")
    assert _owner_default(reproduce, "regression_margin_db") == margin
    assert _owner_default(record_history, "margin_db") == margin


def test_default_of_refuses_a_parameter_without_a_default():
    from deepclust.cli.common import default_of

    assert default_of(prepare_sources, "seed") == _owner_default(prepare_sources, "seed")
    with pytest.raises(TypeError, match="no default"):
        default_of(prepare_sources, "sources")
    with pytest.raises(KeyError):
        default_of(prepare_sources, "no_such_parameter")


def test_the_inference_flags_offer_every_method_the_separator_has():
    from deepclust.cli.training_commands import INFERENCE_METHODS
    from deepclust.separation.separator import INFERENCES, METHODS

    separate = build_parser()._subparsers._group_actions[0].choices["separate"]
    assert tuple(next(a for a in separate._actions if a.dest == "inference").choices) == INFERENCES
    assert INFERENCE_METHODS == METHODS


@pytest.mark.parametrize(
    "given, said",
    [
        ("2=softmax", "'2=softmax': K=METHOD with METHOD one of mask, kmeans, soft-kmeans, blend"),
        ("two=mask", "'two=mask': K=METHOD with K a number of speakers (1 or more)"),
        ("0=mask", "'0=mask': K=METHOD with K a number of speakers"),
        ("2", "'2': K=METHOD with METHOD one of"),
    ],
)
def test_export_model_refuses_an_inference_choice_naming_the_part_that_is_wrong(given, said, tmp_path, capsys):
    argv = ["export-model", "--model", "m.pt", "--out", str(tmp_path / "x.pt"), "--inference", given]
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(argv)
    assert stopped.value.code == 2  # a usage error, as argparse gives (was exit 1)
    assert said in capsys.readouterr().err


def test_export_model_reads_inference_choices_as_speaker_counts_and_methods():
    argv = [
        "export-model",
        "--model",
        "m.pt",
        "--out",
        "x.pt",
        "--inference",
        "2=blend",
        "--inference",
        "3=soft-kmeans",
    ]
    assert dict(build_parser().parse_args(argv).inference) == {"2": "blend", "3": "soft-kmeans"}


def test_the_recorded_command_is_the_one_typed_for_the_console_script_and_the_module(monkeypatch):
    from deepclust.cli.training_commands import invoked_command

    monkeypatch.setattr("sys.argv", ["/venv/bin/deepclust", "train-dynamic", "--seed", "0"])
    assert invoked_command() == "deepclust train-dynamic --seed 0"
    monkeypatch.setattr("sys.argv", ["/repo/deepclust/__main__.py", "train-dynamic", "--seed", "0"])
    assert invoked_command() == "python -m deepclust train-dynamic --seed 0"
    monkeypatch.setattr("sys.argv", ["/usr/lib/python3/pytest", "-x"])
    assert invoked_command() is None


def test_list_flags_parse_to_tuples_and_a_bad_item_is_a_usage_error_naming_it(capsys):
    parsed = build_parser().parse_args(
        [*TRAIN_DYNAMIC, "--speaker-counts", "2,3", "--speaker-count-weights", "3,1", "--lr-halving-epochs", "4,8"]
    )
    assert (parsed.speaker_counts, parsed.speaker_count_weights, parsed.lr_halving_epochs) == (
        (2, 3),
        (3.0, 1.0),
        (4, 8),
    )
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args([*TRAIN_DYNAMIC, "--speaker-counts", "2,x"])
    assert stopped.value.code == 2
    assert "'x' is not a number of type int" in capsys.readouterr().err
