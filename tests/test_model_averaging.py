"""Checkpoint averaging at export: the mean of one run's last snapshots, shipped with the facts of the newest and
the list of the files it averaged; files of different networks are refused."""

import hashlib

import pytest
import torch
from training_fixtures import tiny_train_config

from deepclust.model.blstm import ModelConfig
from deepclust.model.checkpoint import load_model
from deepclust.model.export import export_half
from deepclust.training.dynamic_mixing import DynamicMixConfig
from deepclust.training.dynamic_train import train_dynamic

TINY = ModelConfig.preset("chimera++", hidden=8, layers=1, emb_dim=4)
MIX = DynamicMixConfig(cv_mixtures=4, stats_mixtures=16, cv_fraction=0.2)


def _train(corpus, out, epochs, snapshot_every=1, model=TINY):
    config = tiny_train_config(epochs, snapshot_every=snapshot_every)
    return train_dynamic(corpus, out, model, config, MIX, provenance={"command": "deepclust train-dynamic (test)"})


def test_export_of_several_snapshots_ships_the_mean_of_their_weights_with_the_newest_facts(corpus, tmp_path):
    run = tmp_path / "run"
    _train(corpus, str(run), 3)
    snapshots = [str(run / "snapshots" / f"epoch-{e:03d}.pt") for e in (2, 3)]
    weights = [torch.load(s, weights_only=True)["state_dict"] for s in snapshots]
    extra = export_half(snapshots, str(tmp_path / "averaged.pt"))
    shipped = torch.load(tmp_path / "averaged.pt", weights_only=True)
    for key, value in shipped["state_dict"].items():
        expected = (weights[0][key] + weights[1][key]) / 2
        assert value.dtype == torch.float16
        torch.testing.assert_close(value.float(), expected.half().float(), rtol=0, atol=0)
    # The two epochs really differ, so the mean is neither of them.
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert [(a["epoch"], a["sha256"]) for a in extra["averaged_from"]] == [
        (e, hashlib.sha256(open(s, "rb").read()).hexdigest()) for e, s in zip((2, 3), snapshots)
    ]
    assert extra["epoch"] == 3 and extra["lineage"][-1]["averaged_epochs"] == [2, 3]
    # The run folder's clock and host readings reach the snapshot's link (they lie above snapshots/).
    assert extra["lineage"][-1]["seconds"] > 0 and extra["lineage"][-1]["machine"]["cpu_count"]
    assert load_model(str(tmp_path / "averaged.pt")).model_config == TINY
    # The command line does the same with --model repeated.
    from deepclust.cli import main

    main(
        [
            "export-model",
            "--model",
            snapshots[0],
            "--model",
            snapshots[1],
            "--out",
            str(tmp_path / "cli.pt"),
            "--inference",
            "2=blend",
        ]
    )
    by_cli = torch.load(tmp_path / "cli.pt", weights_only=True)
    assert all(torch.equal(by_cli["state_dict"][k], v) for k, v in shipped["state_dict"].items())
    assert by_cli["extra"]["inference"] == {"2": "blend"} and len(by_cli["extra"]["averaged_from"]) == 2


def test_snapshots_exported_after_the_run_went_on_carry_their_own_seconds_not_the_runs_latest(corpus, tmp_path):
    """A run's run_facts.json moves on with it; a snapshot of an earlier epoch keeps the readings of its epoch."""
    import json
    import os

    import pandas as pd

    run = tmp_path / "run"
    _train(corpus, str(run), 3)
    history = pd.read_csv(run / "history.csv")
    until_2 = round(float(history.loc[history["epoch"] <= 2, "seconds"].sum()), 3)
    assert until_2 < json.loads((run / "run_facts.json").read_text())["seconds"]
    snapshots = [str(run / "snapshots" / f"epoch-{e:03d}.pt") for e in (1, 2)]
    link = export_half(snapshots, str(tmp_path / "early.pt"))["lineage"][-1]
    own = json.loads((run / "snapshots" / "epoch-002.facts.json").read_text())
    assert link["global_step"] == own["global_step"] == 4
    assert link["seconds"] == pytest.approx(until_2, abs=1e-3) and link["finished_at"] == own["finished_at"]
    # A run written before snapshots had their own readings: seconds from the history, the date left unknown.
    os.remove(run / "snapshots" / "epoch-002.facts.json")
    facts = json.loads((run / "run_facts.json").read_text())
    facts.pop("global_step")
    (run / "run_facts.json").write_text(json.dumps(facts))
    old = export_half(snapshots, str(tmp_path / "old.pt"))["lineage"][-1]
    assert old["seconds"] == pytest.approx(until_2, abs=1e-3) and old["finished_at"] is None
    assert old["machine"]["cpu_count"] == facts["machine"]["cpu_count"]


def test_export_refuses_to_average_different_networks_naming_the_file(corpus, tmp_path):
    _train(corpus, str(tmp_path / "a"), 1)
    _train(corpus, str(tmp_path / "b"), 1, model=ModelConfig.preset("chimera++", hidden=12, layers=1, emb_dim=4))
    a, b = str(tmp_path / "a" / "model.pt"), str(tmp_path / "b" / "model.pt")
    with pytest.raises(ValueError, match=f"{a}: its model_config differs"):
        export_half([a, b], str(tmp_path / "out.pt"))
    assert not (tmp_path / "out.pt").exists()


def test_snapshots_of_two_sibling_runs_average_into_one_file_whose_lineage_names_both(corpus, tmp_path):
    parent = tmp_path / "parent"
    _train(corpus, str(parent), 1)
    runs = []
    for seed in (1, 2):  # two warm starts from one parent: one network on one input normalisation
        run = tmp_path / f"sibling-{seed}"
        config = tiny_train_config(3, snapshot_every=1, seed=seed)
        command = f"deepclust train-dynamic --seed {seed} (test)"
        train_dynamic(
            corpus, str(run), TINY, config, MIX, provenance={"command": command}, init_from=str(parent / "model.pt")
        )
        runs.append(run)
    files = [str(run / "snapshots" / f"epoch-{e:03d}.pt") for run in runs for e in (2, 3)]
    lineage = export_half(files, str(tmp_path / "soup.pt"))["lineage"]
    link = lineage[-1]
    assert "--seed 2" in link["command"] and link["averaged_epochs"] == [2, 3]
    [sibling] = link["averaged_with"]
    assert "--seed 1" in sibling["command"] and sibling["averaged_epochs"] == [2, 3]
    assert sibling["parent_sha256"] == link["parent_sha256"]  # one parent: the chain below them is one
    one_run = export_half(files[2:], str(tmp_path / "one.pt"))["lineage"][-1]
    assert "averaged_with" not in one_run and one_run["averaged_epochs"] == [2, 3]
