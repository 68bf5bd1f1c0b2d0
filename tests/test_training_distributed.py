"""Data-parallel training: ``torchrun --nproc-per-node 2`` on the CPU (gloo), on real FSDD mixtures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_training import fsdd_mixtures, write_feature_folder

from deepclust import storage
from deepclust.model import load_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_features(fsdd_dir, tmp_path_factory) -> str:
    """13 training mixtures in 3 shards (an odd count: the two ranks get 7 and 6), 4 validation ones."""
    splits = {
        "tr": fsdd_mixtures(fsdd_dir, 13, seed=1, indices=range(40)),
        "cv": fsdd_mixtures(fsdd_dir, 4, seed=2, indices=range(40, 50)),
    }
    folder = write_feature_folder(str(tmp_path_factory.mktemp("ddp-features")), splits, per_shard=5)
    return storage.join(folder, "manifest.parquet")


@pytest.mark.xdist_group("torchrun")
def test_torchrun_two_cpu_processes_train_one_model_in_sync(small_features, tmp_path):
    out = tmp_path / "model"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "deepclust.training.distributed",
        "--features",
        small_features,
        "--out",
        str(out),
        "--hidden",
        "8",
        "--layers",
        "1",
        "--emb-dim",
        "4",
        "--batch-size",
        "2",
        "--chunk-frames",
        "40",
        "--max-epochs",
        "2",
        "--device",
        "cpu",
    ]
    result = subprocess.run(
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["world_size"] == 2 and summary["epochs"] == 2

    # Rank 0 wrote the usual outputs; they load like a single-process model.
    loaded = load_model(str(out / "model.pt"))
    assert loaded.model_config.hidden == 8
    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    assert (out / "checkpoints" / "last.pt").exists()

    ranks = [json.loads((out / "ranks" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1] and {r["world_size"] for r in ranks} == {2}
    assert {r["backend"] for r in ranks} == {"gloo"}
    # Both ranks took steps on disjoint shares of every pass, together covering the training set...
    for key in ranks[0]["trained_on"]:
        first, second = set(ranks[0]["trained_on"][key]), set(ranks[1]["trained_on"][key])
        assert first and second and not first & second
        assert len(first | second) == 13
    # ...unequal ones (7 and 6 mixtures: DDP's join kept the extra steps from hanging)...
    assert ranks[0]["global_step"] != ranks[1]["global_step"]
    # ...and DDP kept the two replicas bit-identical.
    assert ranks[0]["parameter_checksum"] == ranks[1]["parameter_checksum"]
    assert ranks[0]["best_val_loss"] == ranks[1]["best_val_loss"]
