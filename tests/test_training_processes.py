"""``train-dynamic --processes 2``: two real one-thread processes (gloo over a file store) train one model in
sync, each on its own batches, and rank 0 writes the usual files; a process that fails stops the run with an
error naming it."""

import hashlib

import pytest
import torch

from deepclust.model.blstm import ModelConfig
from deepclust.training.config import TrainConfig
from deepclust.training.dynamic_mixing import DynamicMixConfig
from deepclust.training.dynamic_train import train_dynamic
from deepclust.training.processes import train_dynamic_on_processes

TINY = ModelConfig.preset("chimera++", hidden=8, layers=1, emb_dim=4)
MIX = DynamicMixConfig(cv_mixtures=4, stats_mixtures=16, cv_fraction=0.2)


def _config(**changes):
    return TrainConfig(
        chunk_frames=30,
        batch_size=3,
        steps_per_epoch=2,
        max_epochs=2,
        patience=9,
        device="cpu",
        seed=0,
        dc_loss="whitened",
        **changes,
    )


def _weights_digest(url):
    digest = hashlib.sha256()
    for name, tensor in torch.load(url, weights_only=True)["state_dict"].items():
        digest.update(name.encode() + tensor.numpy().tobytes())
    return digest.hexdigest()


@pytest.mark.xdist_group("torchrun")
def test_two_processes_train_one_model_in_sync_on_more_mixtures_than_one(corpus, tmp_path):
    result = train_dynamic_on_processes(
        2,
        1,
        corpus_manifest=corpus,
        out_url=str(tmp_path / "two"),
        model_config=TINY,
        train_config=_config(),
        mix_config=MIX,
        provenance={"command": "deepclust train-dynamic --processes 2"},
    )
    # Both replicas end bit-identical (DDP averaged every step's gradients over the two).
    assert len(result["parameter_checksums"]) == 2 and len(set(result["parameter_checksums"])) == 1
    assert result["epochs"] == 2 and result["global_step"] == 4
    saved = torch.load(result["model_url"], weights_only=True)["extra"]
    assert saved["processes"] == 2 and saved["lineage"][-1]["processes"] == 2
    assert (tmp_path / "two" / "corpus.parquet").exists() and (tmp_path / "two" / "checkpoints" / "last.pt").exists()
    # The second process's batches count: the model is not the one a single process makes from rank 0's batches.
    single = train_dynamic(corpus, str(tmp_path / "one"), TINY, _config(), MIX)
    assert torch.load(single["model_url"], weights_only=True)["extra"]["processes"] == 1
    assert _weights_digest(single["model_url"]) != _weights_digest(result["model_url"])


@pytest.mark.xdist_group("torchrun")
def test_a_failing_process_stops_the_run_with_an_error_naming_it(corpus, tmp_path):
    with pytest.raises(RuntimeError, match="process [01] of 2.*not-a-model.pt"):
        train_dynamic_on_processes(
            2,
            1,
            corpus_manifest=corpus,
            out_url=str(tmp_path / "bad"),
            model_config=TINY,
            train_config=_config(),
            mix_config=MIX,
            init_from=str(tmp_path / "not-a-model.pt"),
        )
