"""Named recipes: the paper's preset is the library's paper defaults at full size, every preset is reached from the
command line by name (the default following the corpus), ``--set`` changes any field and is recorded, and
``--print-config`` shows the resolved config without running anything or reading any data."""

from __future__ import annotations

import dataclasses
import json

import pytest

from deepclust import cli
from deepclust.features.extract import FeatureConfig
from deepclust.model.blstm import ModelConfig
from deepclust.recipe.config import ReproduceConfig, demo_config
from deepclust.recipe.presets import PRESETS, preset_config
from deepclust.stages.evaluate import EvaluateConfig
from deepclust.stages.mixtures import MixStageConfig
from deepclust.training.config import TrainConfig


def printed_config(capsys, *argv) -> dict:
    cli.main(["reproduce", *argv, "--print-config"])
    return json.loads(capsys.readouterr().out)


def test_the_paper_preset_is_the_librarys_paper_defaults_at_full_size():
    paper = preset_config("paper")
    assert paper.mixtures == MixStageConfig(test_speaker_counts=(2, 3))  # 20k/5k/3k, min, 8 kHz, + the 3-speaker test
    assert paper.features == FeatureConfig() and paper.evaluate == EvaluateConfig()
    assert paper.model == ModelConfig() == ModelConfig.preset("paper")
    assert paper.train == TrainConfig(curriculum_chunk_frames=400)  # no step budget, no time cap, early stopping
    assert paper.separate.inference == "kmeans"
    assert preset_config("dpcl++").model == ModelConfig.preset("dpcl++")
    assert dataclasses.replace(preset_config("dpcl++"), model=paper.model, preset="paper") == paper


def test_print_config_of_a_wsj0_run_shows_the_full_paper_recipe_and_touches_nothing(capsys, tmp_path):
    out = tmp_path / "run"
    config = printed_config(
        capsys,
        "--corpus",
        "wsj0",
        "--wsj0-root",
        str(tmp_path / "no-such-wsj0"),
        "--mix-lists",
        str(tmp_path / "no-such-lists"),
        "--out",
        str(out),
    )
    assert config["preset"] == "paper" and config["overrides"] == []
    assert config["corpus"]["name"] == "wsj0" and config["corpus"]["root"] == str(tmp_path / "no-such-wsj0")
    assert config["mixtures"]["sizes"] == {"tr": 20000, "cv": 5000, "tt": 3000}
    assert config["mixtures"]["mix_lists"] == {
        split: str(tmp_path / "no-such-lists" / f"mix_2_spk_{split}.txt") for split in ("tr", "cv", "tt")
    } | {"mix_3_spk_tt": str(tmp_path / "no-such-lists" / "mix_3_spk_tt.txt")}
    train = config["train"]
    assert (train["chunk_frames"], train["curriculum_chunk_frames"]) == (100, 400)
    assert train["max_train_seconds"] is None and train["steps_per_epoch"] is None
    assert config["model"] == ModelConfig.preset("paper").to_dict()
    assert not out.exists()  # ran nothing, and read nothing: the corpus and lists do not exist


@pytest.mark.parametrize(
    "corpus_flags, preset",
    [
        ([], "demo"),
        (["--corpus", "wsj0", "--wsj0-root", "w"], "paper"),
        (["--corpus", "folder", "--root", "f"], "paper"),
        (["--corpus", "sources", "--sources", "a"], "paper"),
    ],
)
def test_the_default_preset_follows_the_corpus(capsys, corpus_flags, preset):
    assert printed_config(capsys, *corpus_flags)["preset"] == preset


def test_every_preset_is_reached_by_name_and_reads_back_from_its_json_form(capsys):
    for name in PRESETS:
        config = printed_config(capsys, "--preset", name, "--out", "runs/x")
        assert config["preset"] == name
        assert ReproduceConfig.from_dict(config) == preset_config(name, "runs/x")


def test_quick_is_the_quick_preset_and_demo_config_is_the_demo_preset(capsys):
    as_json = lambda config: json.loads(json.dumps(config.to_dict()))  # noqa: E731
    assert printed_config(capsys, "--quick", "--out", "o") == as_json(demo_config("o", quick=True))
    assert printed_config(capsys, "--out", "o") == as_json(demo_config("o"))
    with pytest.raises(SystemExit) as stop:
        cli.main(["reproduce", "--quick", "--preset", "paper", "--print-config"])
    assert stop.value.code == 2 and "--quick is the quick preset" in capsys.readouterr().err


def test_set_changes_any_field_after_the_shorthands_and_both_are_recorded(capsys):
    config = printed_config(
        capsys,
        "--corpus",
        "wsj0",
        "--wsj0-root",
        "w",
        "--scale",
        "0.5",
        "--device",
        "cpu",
        "--set",
        "train.max_epochs=20",
        "--set",
        "mixtures.sizes.tr=100",
        "--set",
        "train.curriculum_chunk_frames=null",
        "--set",
        "mixtures.scale=0.25",
        "--set",
        "mixtures.test_speaker_counts=2",
        "--set",
        "separate.splits=tt,cv",
    )
    assert config["train"]["max_epochs"] == 20 and config["train"]["curriculum_chunk_frames"] is None
    assert config["mixtures"]["sizes"] == {"tr": 100, "cv": 5000, "tt": 3000}
    assert config["mixtures"]["scale"] == 0.25  # --set comes after the --scale shorthand, so it wins
    assert config["mixtures"]["test_speaker_counts"] == [2] and config["separate"]["splits"] == ["tt", "cv"]
    assert config["train"]["device"] == config["separate"]["device"] == "cpu"
    assert config["overrides"] == [
        "mixtures.scale=0.5",
        "train.device=cpu",
        "separate.device=cpu",
        "train.max_epochs=20",
        "mixtures.sizes.tr=100",
        "train.curriculum_chunk_frames=null",
        "mixtures.scale=0.25",
        "mixtures.test_speaker_counts=2",
        "separate.splits=tt,cv",
    ]


@pytest.mark.parametrize(
    "override, said",
    [
        ("train.max_epoch=3", "train has no field 'max_epoch'; its fields: chunk_frames"),
        ("train.max_epochs=many", "expected int, got 'many'"),
        ("train.amp=1", "expected bool, got 1"),
        ("train.max_epochs=null", "expected int, got None"),
        ("corpus.root.x=1", "corpus.root is a value"),
        ("train.max_epochs", "expected FIELD.PATH=VALUE"),
        ("preset=demo", "choose the preset with --preset"),
        ("train.precision=fp16", "precision must be 'auto', 'fp32' or 'bf16'"),
    ],
)
def test_a_wrong_override_exits_2_naming_the_field_and_runs_nothing(capsys, tmp_path, override, said):
    with pytest.raises(SystemExit) as stop:
        cli.main(["reproduce", "--set", override, "--out", str(tmp_path / "run"), "--no-prefect"])
    assert stop.value.code == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_chimera_is_refused_as_a_recipe_preset_with_the_reason(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["reproduce", "--preset", "chimera++", "--print-config"])
    assert stop.value.code == 2 and "train-dynamic" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "--preset", "papers", "--print-config"])
    assert "choose one of paper, dpcl++, demo, quick" in capsys.readouterr().err
