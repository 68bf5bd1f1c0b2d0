"""Dynamic mixing: fresh mixtures per batch by wsj0-2mix's level rules, seeded so a resumed run is exact."""

import numpy as np
import pytest
import torch
from training_fixtures import tiny_train_config

from deepclust.features.extract import FeatureConfig
from deepclust.mixing.p56 import active_level
from deepclust.model.blstm import ModelConfig
from deepclust.training.dynamic_mixing import (
    DynamicMixConfig,
    DynamicMixing,
    SourcePool,
    mixture_batch,
    split_cv_speakers,
)
from deepclust.training.dynamic_train import train_dynamic
from deepclust.training.train import fit


@pytest.fixture(scope="module")
def pool(corpus):
    return SourcePool(corpus[corpus["subset"] == "train"], 8000)


def test_same_seed_gives_the_same_batch_and_steps_differ(pool):
    source = DynamicMixing(pool, pool, FeatureConfig(), DynamicMixConfig(stats_mixtures=32), seed=0)
    first = list(source.training_batches([0, 3, 0], 50, 4, 2))
    again = list(source.training_batches([0, 3, 0], 50, 4, 2))
    for a, b in zip(first, again):
        for key in a:
            same = torch.equal(a[key], b[key]) if isinstance(a[key], torch.Tensor) else a[key] == b[key]
            assert same, key
    assert not torch.equal(first[0]["log_mag"], first[1]["log_mag"])
    assert first[0]["log_mag"].shape == (4, 50, 129) and first[0]["psa_target"].shape == (4, 2, 50, 129)


def test_sources_follow_the_wsj0_2mix_level_rules(pool):
    rng = np.random.default_rng(0)
    for _ in range(10):
        mixture, sources = pool.draw(rng, 2, 16000, max_snr_db=5.0, gain_db_range=(0.0, 0.0))
        assert np.allclose(mixture, sources.sum(0), atol=1e-6)  # no augmentation: the sum
        levels = [active_level(s.astype(np.float64), 8000)[0] for s in sources]
        if min(levels) <= 0:
            continue  # a crop of pure silence has no level to compare
        assert max(np.abs(sources.sum(0)).max(), np.abs(sources).max()) == pytest.approx(0.9, rel=1e-4)
    # Whole utterances (the test-set rule) keep the level difference exactly: 0 to 5 dB.
    for _ in range(10):
        sources, utterances = pool.draw_utterances(rng, 2)
        difference = 10 * np.log10(
            active_level(sources[0].astype(np.float64), 8000)[0] / active_level(sources[1].astype(np.float64), 8000)[0]
        )
        assert -0.6 <= difference <= 5.6, difference  # P.56 on a truncated utterance moves it a little
        assert utterances[0] != utterances[1]


def test_targets_are_the_ideal_binary_mask_and_weights_the_40_db_rule(pool):
    sources = np.stack([pool.draw(np.random.default_rng(i), 2, 8000, 5.0, (0.0, 0.0))[1] for i in range(2)])
    batch = mixture_batch(sources, FeatureConfig(), None)
    from deepclust.features.extract import compute_features

    expected = compute_features(sources[0].sum(0), sources[0])
    assert np.array_equal(batch["target"][0].numpy(), expected["target"].astype(np.int64))
    assert np.array_equal(batch["weight"][0].numpy(), expected["weight"])
    assert np.allclose(batch["log_mag"][0].numpy(), expected["log_mag"], atol=1e-5)


def test_cv_speakers_are_drawn_per_source_and_disjoint():
    speakers = [f"a/{i}" for i in range(40)] + [f"b/{i}" for i in range(10)]
    train, cv = split_cv_speakers(speakers, 0.1, seed=0)
    assert not set(train) & set(cv) and sorted(train + cv) == sorted(speakers)
    assert sum(s.startswith("a/") for s in cv) == 4 and sum(s.startswith("b/") for s in cv) == 1
    assert split_cv_speakers(speakers, 0.1, seed=0) == (train, cv)


def _tiny(max_epochs):
    return tiny_train_config(max_epochs, lr_halving_patience=1, lr_halving_epochs=(2,))


def test_a_stopped_and_resumed_run_ends_with_the_same_model(pool, tmp_path):
    model_config = ModelConfig.preset("chimera++", hidden=8, layers=1, emb_dim=4)
    mix = DynamicMixConfig(cv_mixtures=6, stats_mixtures=32)

    def run(out, epochs):
        source = DynamicMixing(pool, pool, FeatureConfig(), mix, seed=0)
        return fit(
            [], [], str(out), model_config, _tiny(epochs), feature_stats=source.feature_stats, batch_source=source
        )

    run(tmp_path / "straight", 3)
    run(tmp_path / "resumed", 1)
    run(tmp_path / "resumed", 3)  # a new process would do the same: everything comes from last.pt
    straight = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert [h["val_loss"] for h in straight["state"]["history"]] == [h["val_loss"] for h in resumed["state"]["history"]]


def test_train_dynamic_records_the_speakers_and_never_trains_on_test_speakers(corpus, tmp_path):
    result = train_dynamic(
        corpus,
        str(tmp_path),
        ModelConfig.preset("chimera++", hidden=8, layers=1, emb_dim=4),
        _tiny(1),
        DynamicMixConfig(cv_mixtures=4, stats_mixtures=16, cv_fraction=0.2),
    )
    extra = torch.load(result["model_url"], weights_only=True)["extra"]
    test = set(corpus.loc[corpus["subset"] == "test", "speaker"])
    assert test and set(extra["held_out_speakers"]) == test
    assert not (set(extra["training_speakers"]) | set(extra["cv_speakers"])) & test
    assert not set(extra["training_speakers"]) & set(extra["cv_speakers"])


def test_two_runs_of_one_config_write_byte_identical_model_files(corpus, tmp_path):
    """A reproduction run is a function of its inputs: same corpus, config and seed -> the same model.pt,
    byte for byte (CPU; on CUDA see docs/REPRODUCIBILITY.md)."""
    import hashlib

    def run(name):
        result = train_dynamic(
            corpus,
            str(tmp_path / name),
            ModelConfig.preset("chimera++", hidden=8, layers=1, emb_dim=4),
            _tiny(2),
            DynamicMixConfig(cv_mixtures=4, stats_mixtures=16, cv_fraction=0.2),
        )
        return hashlib.sha256(open(result["model_url"], "rb").read()).hexdigest()

    assert run("first") == run("second")


def test_speaker_count_weights_set_the_share_of_three_talker_batches(pool):
    def three_talker_share(weights):
        config = DynamicMixConfig(speaker_counts=(2, 3), speaker_count_weights=weights, stats_mixtures=8)
        source = DynamicMixing(pool, pool, FeatureConfig(), config, seed=0)
        talkers = [batch["psa_target"].shape[1] for batch in source.training_batches([0, 1, 0], 10, 1, 200)]
        assert set(talkers) == {2, 3}
        return talkers.count(3) / len(talkers)

    assert 0.15 < three_talker_share((3.0, 1.0)) < 0.35  # a quarter, 200 seeded draws
    assert 0.65 < three_talker_share((1.0, 3.0)) < 0.85
    with pytest.raises(ValueError, match="one weight per speaker count"):
        DynamicMixConfig(speaker_counts=(2, 3), speaker_count_weights=(1.0,))
    with pytest.raises(ValueError, match=">= 0 with a positive sum"):
        DynamicMixConfig(speaker_counts=(2, 3), speaker_count_weights=(1.0, -1.0))


def _two_source_pool() -> SourcePool:
    """Five talkers of two sources (ids ``source/speaker``), a second of noise each: enough to draw pairs."""
    rng = np.random.default_rng(0)
    talkers = ["a/1", "a/2", "b/1", "b/2", "b/3"]
    return SourcePool.from_waveforms([(f"{t}-u", t, rng.normal(0, 0.1, 8000)) for t in talkers], 8000)


def _sources_of(pool, chosen) -> set[str]:
    return {pool.speakers[i].split("/")[0] for i in chosen}


def test_same_source_mixtures_draw_all_talkers_of_one_source_in_proportion_to_its_speakers():
    pool = _two_source_pool()
    rng = np.random.default_rng(1)
    draws = [pool._choose_speakers(rng, 2, 1.0) for _ in range(400)]
    assert all(len(set(chosen)) == 2 and len(_sources_of(pool, chosen)) == 1 for chosen in draws)
    share_b = np.mean([_sources_of(pool, chosen) == {"b"} for chosen in draws])
    assert 0.5 < share_b < 0.7  # b holds 3 of the 5 talkers
    # Three talkers: only b has three, so every same-source draw is b's.
    assert all(_sources_of(pool, pool._choose_speakers(rng, 3, 1.0)) == {"b"} for _ in range(50))
    # Half the mixtures: more one-source pairs than the whole pool gives by chance (4 of 10 pairs).
    one_source = np.mean([len(_sources_of(pool, pool._choose_speakers(rng, 2, 0.5))) == 1 for _ in range(2000)])
    assert 0.62 < one_source < 0.78, one_source  # 0.5 + 0.5 * 0.4


def test_no_same_source_draws_consume_nothing_more_so_earlier_runs_batches_are_unchanged():
    pool = _two_source_pool()
    before, now = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(20):
        assert list(pool._choose_speakers(now, 2, 0.0)) == list(before.choice(len(pool.speakers), 2, replace=False))
    assert now.random() == before.random()


@pytest.mark.parametrize("setting", [{"same_source_probability": 1.0}, {"speed_probability": 1.0}])
def test_same_source_and_speed_settings_change_the_training_batches_only_not_the_validation_list(setting):
    pool = _two_source_pool()
    plain = DynamicMixing(pool, pool, FeatureConfig(), DynamicMixConfig(cv_mixtures=4, stats_mixtures=32), seed=0)
    config = DynamicMixConfig(cv_mixtures=4, stats_mixtures=32, **setting)
    changed = DynamicMixing(pool, pool, FeatureConfig(), config, seed=0)
    for a, b in zip(plain.validation_batches(20, 2), changed.validation_batches(20, 2)):
        assert torch.equal(a["log_mag"], b["log_mag"])
    first = [next(iter(source.training_batches([0], 20, 8, 2)))["log_mag"] for source in (plain, changed)]
    assert not torch.equal(*first)


def test_the_same_source_probability_is_a_share():
    with pytest.raises(ValueError, match="same_source_probability"):
        DynamicMixConfig(same_source_probability=1.5)
