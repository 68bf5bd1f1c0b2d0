"""A network of another shape learns from a trained model (issue 31, arm (c)): the teacher's embeddings and
masks are extra targets of each training step, validation stays on the true targets, and the lineage says who
taught it."""

import hashlib

import pytest
import torch
from training_fixtures import tiny_train_config

from deepclust.model.blstm import ModelConfig
from deepclust.model.distillation_loss import affinity_matching_loss, distillation_loss
from deepclust.training.dynamic_mixing import DynamicMixConfig
from deepclust.training.dynamic_train import train_dynamic

TEACHER = ModelConfig.preset("chimera++", hidden=8, layers=1, emb_dim=4)
STUDENT = ModelConfig.preset("chimera++-conv2", hidden=6, layers=1, emb_dim=3)
MIX = DynamicMixConfig(cv_mixtures=4, stats_mixtures=16, cv_fraction=0.2)


def _config(epochs):
    return tiny_train_config(epochs)


def _unit(shape, seed):
    values = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    return values / values.norm(dim=-1, keepdim=True)


def test_matching_the_teacher_costs_nothing_for_its_own_outputs_in_any_rotation_and_something_otherwise():
    teacher = _unit((2, 50, 5), 0)
    rotation = torch.linalg.qr(torch.randn(5, 5, generator=torch.Generator().manual_seed(1)))[0]
    assert affinity_matching_loss(teacher @ rotation, teacher).item() == pytest.approx(0.0, abs=1e-5)
    assert affinity_matching_loss(_unit((2, 50, 3), 2), teacher).item() > 0.1  # other dimension, other geometry
    # The masks: the teacher's own masks in swapped order cost nothing (permutation-invariant); others do.
    embeddings = teacher.view(2, 10, 5, 5)
    masks = torch.rand(2, 2, 10, 5, generator=torch.Generator().manual_seed(3))
    magnitude, weight = torch.rand(2, 10, 5) + 0.1, torch.ones(2, 10, 5)
    same = distillation_loss(embeddings, masks.flip(1), embeddings, masks, weight, magnitude)
    assert same.item() == pytest.approx(0.0, abs=1e-5)
    assert distillation_loss(embeddings, 1 - masks, embeddings, masks, weight, magnitude).item() > 0.05


def test_a_student_of_another_network_learns_from_a_teacher_and_its_lineage_says_so(corpus, tmp_path):
    teacher = train_dynamic(corpus, str(tmp_path / "teacher"), TEACHER, _config(2), MIX)
    teacher_url = teacher["model_url"]
    alone = train_dynamic(corpus, str(tmp_path / "alone"), STUDENT, _config(1), MIX)
    taught = train_dynamic(
        corpus, str(tmp_path / "taught"), STUDENT, _config(1), MIX, teacher=teacher_url, teacher_weight=0.5
    )
    # Validation is on the true targets alone: the same untrained student scores the same either way...
    assert taught["initial_val_loss"] == pytest.approx(alone["initial_val_loss"], rel=1e-6)
    # ...while the training steps' loss includes the distance to the teacher.
    assert taught["history"][0]["train_loss"] != pytest.approx(alone["history"][0]["train_loss"], rel=1e-3)
    saved = torch.load(taught["model_url"], weights_only=True)
    teacher_saved = torch.load(teacher_url, weights_only=True)
    assert saved["model_config"]["front_end"] == "conv2"
    assert saved["feature_stats"] == teacher_saved["feature_stats"]  # it reads inputs as the teacher does
    lineage = saved["extra"]["lineage"]
    assert len(lineage) == len(teacher_saved["extra"]["lineage"]) + 1  # the teacher's chain, then this run
    link = lineage[-1]
    assert link["parent_sha256"] is None  # no weights inherited...
    assert link["taught_by"]["sha256"] == hashlib.sha256(open(teacher_url, "rb").read()).hexdigest()
    assert link["taught_by"]["model_config"] == TEACHER.to_dict() and link["taught_by"]["weight"] == 0.5


def test_a_teacher_that_heard_the_held_out_speakers_or_a_weight_outside_0_1_is_refused(corpus, tmp_path):
    from deepclust.corpora.sources import CorpusSource, prepare_sources

    teacher = train_dynamic(corpus, str(tmp_path / "teacher"), TEACHER, _config(1), MIX)["model_url"]
    with pytest.raises(ValueError, match="between 0 and 1"):
        train_dynamic(corpus, str(tmp_path / "w"), STUDENT, _config(1), MIX, teacher=teacher, teacher_weight=1.0)
    # Another split of the same speakers holds out some the teacher trained on.
    other_split = prepare_sources(
        [CorpusSource(corpus.attrs["sources"][0]["root"], "librispeech")], test_fraction=0.5, seed=7
    )
    with pytest.raises(ValueError, match="holds out"):
        train_dynamic(other_split, str(tmp_path / "leak"), STUDENT, _config(1), MIX, teacher=teacher)


def test_the_command_line_trains_a_conv2_student_of_a_teacher_file(corpus, tmp_path, capsys):
    from deepclust.cli import main

    teacher = train_dynamic(corpus, str(tmp_path / "teacher"), TEACHER, _config(1), MIX)["model_url"]
    root = corpus.attrs["sources"][0]["root"]
    tiny = ["--hidden", "6", "--layers", "1", "--emb-dim", "3", "--chunk-frames", "30", "--batch-size", "3"]
    tiny += ["--steps-per-epoch", "2", "--max-epochs", "1", "--compile", "off", "--room-probability", "0"]
    tiny += ["--noise-probability", "0", "--channel-probability", "0"]
    main(
        ["train-dynamic", "--source", f"{root}=librispeech", "--test-fraction", "0.25", "--split-seed", "0"]
        + ["--preset", "chimera++-conv2", *tiny, "--teacher", teacher, "--teacher-weight", "0.3"]
        + ["--out", str(tmp_path / "student")]
    )
    saved = torch.load(tmp_path / "student" / "model.pt", weights_only=True)
    assert saved["model_config"]["front_end"] == "conv2" and saved["model_config"]["hidden"] == 6
    assert saved["extra"]["lineage"][-1]["taught_by"]["weight"] == 0.3
    assert "model:" in capsys.readouterr().out
