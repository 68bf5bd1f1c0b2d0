"""Training: chunk sampling, exact resume, seed determinism, and learning on real FSDD mixtures."""

import numpy as np
import pandas as pd
import pytest
import torch

from deepclust import storage
from deepclust.audio import read_audio
from deepclust.features.extract import FeatureConfig, compute_features
from deepclust.features.normalisation import RunningStats
from deepclust.features.shards import write_shard
from deepclust.model import DeepClusteringNet, ModelConfig, load_model
from deepclust.training import TrainConfig, fit, train
from deepclust.training.chunks import random_chunks, sequential_chunks, shuffle_buffered, validation_batches
from deepclust.training.steps import evaluate

TINY = ModelConfig(n_freq=129, hidden=16, layers=2, emb_dim=8, dropout=0.3)
SPEAKERS = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]


def fsdd_mixtures(fsdd_dir, count, seed, indices):
    """Two-speaker FSDD mixtures at 0-5 dB as feature items (IBM targets, 40 dB silence weights)."""
    rng = np.random.default_rng(seed)
    items = []
    for number in range(count):
        first, second = rng.choice(len(SPEAKERS), 2, replace=False)
        sources = []
        for speaker in (SPEAKERS[first], SPEAKERS[second]):
            path = fsdd_dir / f"{rng.integers(10)}_{speaker}_{rng.choice(indices)}.wav"
            audio, _ = read_audio(str(path), target_sr=8000)
            sources.append(audio / (np.sqrt(np.mean(audio**2)) + 1e-8))
        length = max(len(s) for s in sources)
        sources = np.stack([np.pad(s, (0, length - len(s))) for s in sources])
        sources[1] *= 10 ** (-rng.uniform(0, 5) / 20)
        mixture = sources.sum(0)
        scale = 0.9 / np.abs(mixture).max()
        features = compute_features(mixture * scale, sources * scale, FeatureConfig())
        items.append({"mixture_id": f"mix{seed}-{number}", **features})
    return items


@pytest.fixture(scope="module")
def fsdd_items(fsdd_dir):
    """Training mixtures from utterance indices 0-39, validation mixtures from 40-49 (same speakers).

    160 training mixtures (~1 s of features to compute): with fewer the small network overfits within
    a few hundred steps and the validation loss turns up again.
    """
    return {
        "tr": fsdd_mixtures(fsdd_dir, 160, seed=1, indices=range(40)),
        "cv": fsdd_mixtures(fsdd_dir, 16, seed=2, indices=range(40, 50)),
    }


def write_feature_folder(folder: str, items_by_split: dict, per_shard: int) -> str:
    """A feature folder as deepclust.features writes it (shards, manifest.parquet, stats.json from 'tr')."""
    rows, stats = [], RunningStats(129)
    for split, items in items_by_split.items():
        for index in range(0, len(items), per_shard):
            shard_url = storage.join(folder, "shards", f"{split}-{index:05d}.parquet")
            write_shard(items[index : index + per_shard], shard_url)
            for item in items[index : index + per_shard]:
                rows.append(
                    {
                        "mixture_id": item["mixture_id"],
                        "split": split,
                        "shard_url": shard_url,
                        "num_frames": item["log_mag"].shape[0],
                        "num_speakers": 2,
                        "status": "done",
                        "error": None,
                        "shard_sha256": storage.sha256_of(shard_url),
                    }
                )
                if split == "tr":
                    stats.update(item["log_mag"])
    stats_json = {**stats.result().to_dict(), "feature_config": FeatureConfig().to_dict()}
    storage.write_json(stats_json, storage.join(folder, "stats.json"))
    storage.write_parquet(pd.DataFrame(rows), storage.join(folder, "manifest.parquet"))
    return folder


@pytest.fixture(scope="module")
def feature_folder(fsdd_items, tmp_path_factory):
    # several shards per split, so shard order matters
    return write_feature_folder(str(tmp_path_factory.mktemp("features")), fsdd_items, per_shard=16)


def synthetic_item(frames, freq=129, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "mixture_id": f"u{seed}",
        "log_mag": rng.standard_normal((frames, freq)).astype(np.float32),
        "target": rng.integers(0, 2, (frames, freq)).astype(np.uint8),
        "weight": np.ones((frames, freq), np.float32),
    }


def test_short_utterance_is_padded_with_zero_weight():
    [chunk] = random_chunks(synthetic_item(7), 10, np.random.default_rng(0))
    assert chunk["log_mag"].shape == (10, 129)
    assert chunk["weight"][:7].all() and not chunk["weight"][7:].any()


def test_random_chunks_are_non_overlapping_windows_of_the_utterance():
    item = synthetic_item(35)
    chunks = random_chunks(item, 10, np.random.default_rng(3))
    assert len(chunks) == 3
    starts = [int(np.flatnonzero((item["log_mag"] == c["log_mag"][0]).all(1))[0]) for c in chunks]
    assert starts[1] - starts[0] == 10 and starts[2] - starts[1] == 10 and 0 <= starts[0] <= 5


def test_validation_chunks_cover_every_frame_once():
    item = synthetic_item(25)
    chunks = sequential_chunks(item, 10)
    assert [c["weight"].sum() for c in chunks] == [10 * 129, 10 * 129, 5 * 129]
    np.testing.assert_array_equal(np.concatenate([c["log_mag"] for c in chunks])[:25], item["log_mag"])


def test_silent_chunks_are_dropped():
    item = synthetic_item(30)
    item["weight"][10:20] = 0
    assert len(sequential_chunks(item, 10)) == 2


def test_shuffle_buffer_holds_at_most_its_size_and_yields_everything():
    held = []

    def stream():
        for value in range(100):
            held.append(value)
            yield value

    out = []
    for value in shuffle_buffered(stream(), 8, np.random.default_rng(0)):
        out.append(value)
        assert len(held) - len(out) <= 8
    assert sorted(out) == list(range(100)) and out != list(range(100))


def quick_config(**overrides):
    values = dict(
        chunk_frames=16,
        batch_size=4,
        steps_per_epoch=3,
        max_epochs=4,
        patience=100,
        seed=0,
        device="cpu",
        num_threads=1,
        shuffle_buffer=64,
    )
    return TrainConfig(**{**values, **overrides})


class Crash(RuntimeError):
    pass


def crash_after(epoch):
    def progress(record):
        if record["epoch"] == epoch:
            raise Crash(f"simulated crash after epoch {epoch}")

    return progress


def final_state(out):
    return torch.load(storage.join(out, "checkpoints", "last.pt"), weights_only=True)


@pytest.mark.parametrize("curriculum, crash_epoch", [(None, 2), (32, 3)])
def test_resume_continues_exactly_like_an_uninterrupted_run(feature_folder, tmp_path, curriculum, crash_epoch):
    # With a curriculum, max_epochs counts per curriculum phase: 2 epochs of 16-frame chunks, then 2 of 32.
    config = quick_config(curriculum_chunk_frames=curriculum, max_epochs=2 if curriculum else 4)
    straight = train(feature_folder, str(tmp_path / "straight"), TINY, config)
    assert [r["epoch"] for r in straight["history"]] == [1, 2, 3, 4]

    interrupted = str(tmp_path / "interrupted")
    with pytest.raises(Crash):
        train(feature_folder, interrupted, TINY, config, progress=crash_after(crash_epoch))
    resumed = train(feature_folder, interrupted, TINY, config)

    assert [r["val_loss"] for r in resumed["history"]] == [r["val_loss"] for r in straight["history"]]
    assert [r["chunk_frames"] for r in resumed["history"]] == ([16, 16, 32, 32] if curriculum else [16] * 4)
    # The phase keeps its saved name "stage" (history.csv's column, the checkpoint's run state): old runs still read.
    phases = [0, 0, 1, 1] if curriculum else [0] * 4
    assert pd.read_csv(storage.join(interrupted, "history.csv"))["stage"].tolist() == phases
    saved_state = final_state(interrupted)["state"]
    assert (saved_state["stage"], saved_state["stage_epochs"]) == (phases[-1], 2 if curriculum else 4)
    a, b = final_state(str(tmp_path / "straight"))["model"], final_state(interrupted)["model"]
    assert all(torch.equal(a[name], b[name]) for name in a)
    best_a = load_model(straight["model_url"]).model.state_dict()
    best_b = load_model(resumed["model_url"]).model.state_dict()
    assert all(torch.equal(best_a[name], best_b[name]) for name in best_a)


def test_finished_run_is_not_trained_again_but_a_larger_budget_continues(feature_folder, tmp_path):
    out = str(tmp_path / "run")
    first = train(feature_folder, out, TINY, quick_config(max_epochs=2))
    again = train(feature_folder, out, TINY, quick_config(max_epochs=2))
    assert again["history"] == first["history"] and again["stopped_reason"] == "max_epochs"
    longer = train(feature_folder, out, TINY, quick_config(max_epochs=3))
    assert len(longer["history"]) == 3
    assert pd.read_csv(storage.join(out, "history.csv"))["epoch"].tolist() == [1, 2, 3]


def test_resuming_with_another_model_config_is_refused(fsdd_items, tmp_path):
    out = str(tmp_path / "run")
    fit(fsdd_items["tr"][:4], fsdd_items["cv"][:2], out, TINY, quick_config(max_epochs=1))
    other = ModelConfig(n_freq=129, hidden=8, layers=1, emb_dim=4)
    with pytest.raises(ValueError, match="model config"):
        fit(fsdd_items["tr"][:4], fsdd_items["cv"][:2], out, other, quick_config(max_epochs=2))
    fit(fsdd_items["tr"][:4], fsdd_items["cv"][:2], out, other, quick_config(max_epochs=1), resume=False)


def test_time_budget_stops_at_an_epoch_boundary(fsdd_items, tmp_path):
    result = fit(
        fsdd_items["tr"][:8], fsdd_items["cv"][:2], str(tmp_path / "run"), TINY, quick_config(max_train_seconds=1e-9)
    )
    assert result["stopped_reason"] == "time budget" and len(result["history"]) == 1
    assert storage.exists(result["model_url"])
    # The run record flags it: a time-capped model is not the recipe's result.
    from deepclust.recipe.reproduce import training_outcome

    config = quick_config(max_train_seconds=1e-9)
    outcome = training_outcome({"stopped_reason": result["stopped_reason"], "epochs": 1}, config)
    assert outcome["time_capped"] and f"after 1 of {config.max_epochs} epochs" in outcome["message"]
    assert not training_outcome({"stopped_reason": "patience", "epochs": 3}, config)["time_capped"]


def test_same_seed_gives_the_same_model_and_another_seed_does_not(fsdd_items, tmp_path):
    def run(name, seed):
        out = str(tmp_path / name)
        fit(fsdd_items["tr"][:12], fsdd_items["cv"][:3], out, TINY, quick_config(max_epochs=2, seed=seed))
        return final_state(str(tmp_path / name))["model"]

    first, second, other = run("a", 0), run("b", 0), run("c", 1)
    assert all(torch.equal(first[name], second[name]) for name in first)
    # The shipped artefact itself, byte for byte (no timestamps or paths inside): issue 9's reproducibility.
    assert (tmp_path / "a" / "model.pt").read_bytes() == (tmp_path / "b" / "model.pt").read_bytes()
    assert not all(torch.equal(first[name], other[name]) for name in first)


def test_model_file_carries_the_feature_stats_and_config(feature_folder, tmp_path):
    manifest_url = storage.join(feature_folder, "manifest.parquet")  # the manifest or its folder: both work
    result = train(manifest_url, str(tmp_path / "run"), TINY, quick_config(max_epochs=1))
    loaded = load_model(result["model_url"])
    assert loaded.model_config == TINY and not loaded.model.training
    assert FeatureConfig.from_dict(loaded.feature_config) == FeatureConfig()
    stats = storage.read_json(storage.join(feature_folder, "stats.json"))
    np.testing.assert_allclose(loaded.feature_stats.mean, stats["mean"], rtol=1e-6)
    assert loaded.extra["best_val_loss"] == result["best_val_loss"]


def test_training_on_fsdd_mixtures_lowers_the_validation_loss(feature_folder, tmp_path):
    model_config = ModelConfig(n_freq=129, hidden=48, layers=2, emb_dim=10)
    config = quick_config(
        chunk_frames=40, batch_size=8, steps_per_epoch=60, max_epochs=5, patience=3, learning_rate=3e-3
    )
    records = []
    result = train(feature_folder, str(tmp_path / "run"), model_config, config, progress=records.append)

    # The untrained network, built exactly as train() builds it, on the same validation chunks.
    from deepclust.features.normalisation import FeatureStats
    from deepclust.features.shards import iter_features

    torch.manual_seed(config.seed)
    untrained = DeepClusteringNet(model_config)
    stats = FeatureStats.from_dict(storage.read_json(storage.join(feature_folder, "stats.json")))
    manifest = storage.join(feature_folder, "manifest.parquet")
    initial = evaluate(untrained, validation_batches(iter_features(manifest, "cv"), stats, 40, 8), torch.device("cpu"))

    assert records == result["history"] and result["history"][-1]["global_step"] == 300
    val_losses = [r["val_loss"] for r in result["history"]]
    assert result["best_val_loss"] < 0.5 * initial, (initial, val_losses)
    assert val_losses[-1] < val_losses[0], val_losses  # still improving after the first epoch, not just at init
    assert result["history"][-1]["train_loss"] < result["history"][0]["train_loss"]
