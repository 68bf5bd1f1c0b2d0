"""Training that outlives a session: a warm start from a model file continues its counters and records
the lineage of every run that made the model."""

import hashlib

import pytest
import torch
from training_fixtures import tiny_train_config

from deepclust.corpora.sources import CorpusSource, prepare_sources
from deepclust.model.blstm import ModelConfig
from deepclust.training.dynamic_mixing import DynamicMixConfig
from deepclust.training.dynamic_train import train_dynamic

TINY = ModelConfig.preset("chimera++", hidden=8, layers=1, emb_dim=4)
MIX = DynamicMixConfig(cv_mixtures=4, stats_mixtures=16, cv_fraction=0.2)


def _config(epochs, **changes):
    return tiny_train_config(epochs, **changes)


def test_a_warm_start_continues_the_parent_and_records_the_lineage(corpus, tmp_path):
    parent = train_dynamic(
        corpus,
        str(tmp_path / "parent"),
        TINY,
        _config(2),
        MIX,
        provenance={"command": "deepclust train-dynamic (parent)"},
    )
    parent_url = parent["model_url"]
    parent_sha = hashlib.sha256(open(parent_url, "rb").read()).hexdigest()
    child = train_dynamic(
        corpus,
        str(tmp_path / "child"),
        TINY,
        _config(1, learning_rate=5e-4),
        MIX,
        provenance={"command": "deepclust train-dynamic --init-from parent"},
        init_from=parent_url,
    )
    saved = torch.load(child["model_url"], weights_only=True)
    extra, parent_extra = saved["extra"], torch.load(parent_url, weights_only=True)["extra"]
    # The counters go on (so the seeded batch stream continues instead of replaying the parent's batches).
    assert (extra["epoch"], extra["global_step"]) == (parent_extra["epoch"] + 1, parent_extra["global_step"] + 2)
    lineage = extra["lineage"]
    assert len(lineage) == 2
    assert lineage[0]["parent_sha256"] is None and lineage[0]["command"] == "deepclust train-dynamic (parent)"
    assert lineage[0]["result_sha256"] == parent_sha == lineage[1]["parent_sha256"]
    assert lineage[1]["steps"] == 2 and lineage[1]["epochs"] == 1 and lineage[1]["global_step"] == 6
    assert lineage[1]["command"].endswith("--init-from parent") and lineage[1]["seed"] == 0
    # model.pt stays a function of its inputs: the clock and host readings lie beside it, and a warm start
    # (or export-model) folds them into the link.
    assert lineage[1]["seconds"] is None and lineage[0]["seconds"] > 0 and lineage[0]["machine"]["cpu_count"]
    # The input normalisation is the parent's: the network was trained on those inputs.
    assert saved["feature_stats"] == torch.load(parent_url, weights_only=True)["feature_stats"]
    # A grandchild extends the chain by one link.
    grandchild = train_dynamic(
        corpus, str(tmp_path / "grandchild"), TINY, _config(1), MIX, init_from=child["model_url"]
    )
    chain = torch.load(grandchild["model_url"], weights_only=True)["extra"]["lineage"]
    assert (
        len(chain) == 3
        and chain[2]["parent_sha256"] == hashlib.sha256(open(child["model_url"], "rb").read()).hexdigest()
    )
    assert chain[1]["seconds"] > 0 and chain[1]["finished_at"]
    # The shipped form carries the whole chain with every reading.
    from deepclust.model.export import export_half

    exported = export_half(grandchild["model_url"], str(tmp_path / "shipped.pt"))
    assert [link["seconds"] > 0 for link in exported["lineage"]] == [True, True, True]


def test_a_warm_start_refuses_another_network_and_a_parent_that_heard_the_test_speakers(corpus, tmp_path):
    parent = train_dynamic(corpus, str(tmp_path / "parent"), TINY, _config(1), MIX)
    other = ModelConfig.preset("chimera++", hidden=12, layers=1, emb_dim=4)
    with pytest.raises(ValueError, match="same network"):
        train_dynamic(corpus, str(tmp_path / "wider"), other, _config(1), MIX, init_from=parent["model_url"])
    # A corpus split with another seed holds out speakers the parent trained on.
    resplit = prepare_sources(
        [CorpusSource(corpus.attrs["sources"][0]["root"], "librispeech")], test_fraction=0.25, seed=5
    )
    if set(resplit.loc[resplit["subset"] == "test", "speaker"]) == set(
        corpus.loc[corpus["subset"] == "test", "speaker"]
    ):
        pytest.skip("seed 5 happens to draw the same split")
    with pytest.raises(ValueError, match="holds out"):
        train_dynamic(resplit, str(tmp_path / "leak"), TINY, _config(1), MIX, init_from=parent["model_url"])


def test_a_warm_started_run_resumed_from_its_checkpoint_keeps_its_lineage(corpus, tmp_path):
    parent = train_dynamic(corpus, str(tmp_path / "parent"), TINY, _config(1), MIX)
    out = str(tmp_path / "child")
    train_dynamic(corpus, out, TINY, _config(1), MIX, init_from=parent["model_url"])
    resumed = train_dynamic(corpus, out, TINY, _config(2), MIX, init_from=parent["model_url"])  # resumes last.pt
    lineage = torch.load(resumed["model_url"], weights_only=True)["extra"]["lineage"]
    assert len(lineage) == 2 and lineage[1]["epochs"] == 2 and lineage[1]["steps"] == 4


def test_a_grown_network_starts_as_its_parent_and_its_lineage_says_it_grew(corpus, tmp_path):
    """Growth (issue 31): the parent's network plus a residual BLSTM layer whose projection starts at zero
    computes exactly the parent's function at step 0, then trains on; the link records what it grew from."""
    import dataclasses

    from deepclust.model.blstm import DeepClusteringNet
    from deepclust.model.checkpoint import load_model

    parent = train_dynamic(corpus, str(tmp_path / "parent"), TINY, _config(2), MIX)
    grown_config = dataclasses.replace(TINY, residual_layers=1)
    assert grown_config.grows(TINY) and not TINY.grows(grown_config)
    parent_model = load_model(parent["model_url"]).model.float().eval()
    grown = DeepClusteringNet(grown_config).eval()  # with the parent's weights, as the warm start loads them
    missing, unexpected = grown.load_state_dict(parent_model.state_dict(), strict=False)
    assert not unexpected and missing and all(key.startswith("residual.0.") for key in missing)
    inputs = torch.randn(2, 40, TINY.n_freq)
    with torch.no_grad():
        before, after = parent_model(inputs, heads=True), grown(inputs, heads=True)
    for head in ("embeddings", "masks"):
        torch.testing.assert_close(after[head], before[head], rtol=0, atol=0)

    child = train_dynamic(corpus, str(tmp_path / "child"), grown_config, _config(1), MIX, init_from=parent["model_url"])
    saved = torch.load(child["model_url"], weights_only=True)
    assert saved["model_config"]["residual_layers"] == 1
    assert saved["extra"]["lineage"][-1]["grown_from"] == TINY.to_dict()
    assert (
        load_model(child["model_url"]).model.residual[0].projection.weight.abs().sum() > 0
    )  # it trained the new layer
    with pytest.raises(ValueError, match="same network"):  # shrinking is no growth
        train_dynamic(corpus, str(tmp_path / "shrunk"), TINY, _config(1), MIX, init_from=child["model_url"])
