"""Feature extraction: IBM targets, silence weights, shards + stats written from a mixture manifest."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from deepclust.features import (
    FeatureConfig,
    FeatureStats,
    RunningStats,
    StftConfig,
    compute_features,
    extract_features,
    istft_np,
    iter_features,
    iter_shard,
    log_magnitude,
    stft_np,
)

# Pairs of different speakers (FSDD file names: {digit}_{speaker}_{index}.wav).
PAIRS = [
    ("0_jackson_0", "1_theo_3"),
    ("2_nicolas_5", "3_yweweler_7"),
    ("4_george_9", "5_lucas_11"),
    ("6_jackson_13", "7_nicolas_15"),
    ("8_theo_17", "9_george_19"),
    ("1_yweweler_21", "2_lucas_23"),
    ("3_jackson_25", "4_theo_27"),
    ("5_nicolas_29", "6_yweweler_31"),
    ("7_george_33", "8_lucas_35"),
    ("9_jackson_37", "0_theo_39"),
]


def make_mixtures(fsdd_dir, out_dir, pairs, split_of=lambda i: "tr", seed=0):
    """Mix FSDD pairs at a random 0-5 dB SNR (shorter length), write float WAVs, return a manifest."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, (a, b) in enumerate(pairs):
        s1, sr = sf.read(fsdd_dir / f"{a}.wav", dtype="float32")
        s2, _ = sf.read(fsdd_dir / f"{b}.wav", dtype="float32")
        n = min(len(s1), len(s2))
        s1, s2 = s1[:n], s2[:n]
        snr_db = float(rng.uniform(0.0, 5.0))
        s2 = s2 * np.sqrt(np.mean(s1**2) / np.mean(s2**2)) * 10 ** (-snr_db / 20)
        scale = 0.9 / max(np.abs(s1 + s2).max(), 1e-9)
        s1, s2 = (s1 * scale).astype(np.float32), (s2 * scale).astype(np.float32)
        mixture = s1 + s2
        mixture_id = f"{a}_{snr_db:.2f}_{b}_{-snr_db:.2f}"
        paths = {}
        for kind, signal in (("mix", mixture), ("s1", s1), ("s2", s2)):
            (out_dir / kind).mkdir(parents=True, exist_ok=True)
            paths[kind] = str(out_dir / kind / f"{mixture_id}.wav")
            sf.write(paths[kind], signal, sr, subtype="FLOAT")  # float: s1 + s2 == mix exactly
        rows.append(
            {
                "mixture_id": mixture_id,
                "split": split_of(i),
                "mixture_path": paths["mix"],
                "source_paths": [paths["s1"], paths["s2"]],
                "utterance_ids": [a, b],
                "speakers": [a.split("_")[1], b.split("_")[1]],
                "genders": [None, None],
                "snrs_db": [snr_db, -snr_db],
                "num_speakers": 2,
                "sample_rate": sr,
                "num_samples": n,
                "mode": "min",
                "status": "done",
                "error": None,
            }
        )
    return pd.DataFrame(rows)


def _read_sources(row):
    mixture, _ = sf.read(row["mixture_path"], dtype="float32")
    sources = np.stack([sf.read(p, dtype="float32")[0] for p in row["source_paths"]])
    return mixture, sources


def test_compute_features_shapes_dtypes_and_definitions(fsdd_dir, tmp_path):
    row = make_mixtures(fsdd_dir, tmp_path, PAIRS[:1]).iloc[0]
    mixture, sources = _read_sources(row)
    features = compute_features(mixture, sources, FeatureConfig())
    frames = 1 + len(mixture) // 64
    assert features["log_mag"].shape == (frames, 129) and features["log_mag"].dtype == np.float32
    assert features["target"].shape == (frames, 129) and features["target"].dtype == np.uint8
    assert features["weight"].shape == (frames, 129) and features["weight"].dtype == np.float32

    X = stft_np(mixture)
    S = np.abs(stft_np(sources))
    np.testing.assert_allclose(features["log_mag"], np.log(np.abs(X) + 1e-8), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(features["target"], np.argmax(S, axis=0))
    assert set(np.unique(features["target"])) == {0, 1}
    # Weight: within 40 dB of the utterance's maximum mixture magnitude.
    mag_db = 20 * np.log10(np.abs(X) + 1e-30)
    expected = (mag_db >= mag_db.max() - 40.0).astype(np.float32)
    assert np.mean(features["weight"] != expected) < 1e-3  # only bins exactly at the threshold may differ
    assert 0.05 < features["weight"].mean() < 0.95  # speech has both loud and near-silent bins
    # A looser threshold keeps more bins.
    looser = compute_features(mixture, sources, FeatureConfig(silence_db=60.0))
    assert looser["weight"].sum() > features["weight"].sum()


def test_target_follows_the_louder_source(fsdd_dir):
    s, _ = sf.read(fsdd_dir / "0_jackson_0.wav", dtype="float32")
    sources = np.stack([s, 0.01 * s[::-1]])
    features = compute_features(sources.sum(0), sources)
    weighted = features["target"][features["weight"] > 0]
    assert (weighted == 0).mean() > 0.9
    swapped = compute_features(sources.sum(0), sources[::-1])
    assert (swapped["target"][features["weight"] > 0] == 1).mean() > 0.9


def test_compute_features_rejects_mismatched_sources():
    with pytest.raises(ValueError, match="sources"):
        compute_features(np.zeros(800, np.float32), np.zeros((2, 700), np.float32))


def test_log_magnitude_matches_compute_features_for_numpy_and_torch(fsdd_dir, tmp_path):
    row = make_mixtures(fsdd_dir, tmp_path, PAIRS[1:2]).iloc[0]
    mixture, sources = _read_sources(row)
    expected = compute_features(mixture, sources)["log_mag"]
    np.testing.assert_array_equal(log_magnitude(mixture), expected)
    batched = log_magnitude(torch.from_numpy(np.stack([mixture, mixture])))
    assert torch.is_tensor(batched) and batched.shape == (2, *expected.shape)
    np.testing.assert_allclose(batched[1].numpy(), expected, rtol=1e-6, atol=1e-6)


def test_oracle_ideal_binary_mask_from_targets_improves_sdr_by_over_10db(fsdd_dir, tmp_path):
    """The issue's sanity check: IBM from `target`, applied to the mixture STFT, gives > 10 dB SDRi."""
    from mir_eval.separation import bss_eval_sources

    manifest = make_mixtures(fsdd_dir, tmp_path, PAIRS)
    improvements = []
    for _, row in manifest.iterrows():
        mixture, sources = _read_sources(row)
        target = compute_features(mixture, sources)["target"]
        X = stft_np(mixture)
        masks = np.stack([(target == k) for k in range(len(sources))]).astype(np.float32)
        estimates = istft_np(masks * X[None], length=len(mixture))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            sdr, _, _, _ = bss_eval_sources(sources.astype(np.float64), estimates.astype(np.float64))
            sdr_mix, _, _, _ = bss_eval_sources(
                sources.astype(np.float64), np.stack([mixture, mixture]).astype(np.float64)
            )
        improvements.append(np.mean(sdr - sdr_mix))
    assert np.mean(improvements) > 10.0, f"IBM SDR improvement {np.mean(improvements):.2f} dB"


def test_extract_features_writes_shards_manifest_and_train_only_stats(fsdd_dir, tmp_path):
    splits = ["tr", "tr", "tr", "tr", "tr", "cv", "cv", "tt"]
    manifest = make_mixtures(fsdd_dir, tmp_path / "mix", PAIRS[:8], split_of=lambda i: splits[i])
    config = FeatureConfig(utterances_per_shard=2)
    out = tmp_path / "features"
    features = extract_features(manifest, str(out), config)

    assert list(features.columns[:5]) == ["mixture_id", "split", "shard_url", "num_frames", "num_speakers"]
    assert features["mixture_id"].tolist() == manifest["mixture_id"].tolist()
    assert (features["status"] == "done").all()
    assert (features["num_speakers"] == 2).all()
    shard_names = sorted(p.name for p in (out / "shards").iterdir())
    assert shard_names == [
        "cv-00000.parquet",
        "tr-00000.parquet",
        "tr-00001.parquet",
        "tr-00002.parquet",
        "tt-00000.parquet",
    ]
    shards = pd.read_parquet(out / "shards.parquet")
    assert shards["num_utterances"].sum() == 8
    assert set(shards.columns) >= {"shard_url", "split", "num_utterances", "sha256"}
    assert pd.read_parquet(out / "manifest.parquet").equals(features)

    # num_frames matches the shard contents, and iter_features yields each split's utterances.
    for split in ("tr", "cv", "tt"):
        items = list(iter_features(str(out / "manifest.parquet"), split))
        expected = features[features["split"] == split]
        assert [i["mixture_id"] for i in items] == expected["mixture_id"].tolist()
        assert [i["log_mag"].shape[0] for i in items] == expected["num_frames"].tolist()

    # stats.json comes from "tr" only.
    stats = json.loads((out / "stats.json").read_text())
    train = np.concatenate([i["log_mag"] for i in iter_features(str(out / "manifest.parquet"), "tr")])
    everything = np.concatenate(
        [i["log_mag"] for s in ("tr", "cv", "tt") for i in iter_features(str(out / "manifest.parquet"), s)]
    )
    loaded = FeatureStats.from_dict(stats)
    assert stats["num_frames"] == train.shape[0]
    np.testing.assert_allclose(loaded.mean, train.mean(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(loaded.std, train.std(axis=0), rtol=1e-4, atol=1e-5)
    assert not np.allclose(loaded.mean, everything.mean(axis=0), rtol=1e-5, atol=1e-5)


def test_bad_mixture_file_is_recorded_and_skipped(fsdd_dir, tmp_path):
    manifest = make_mixtures(fsdd_dir, tmp_path / "mix", PAIRS[:3])
    bad_path = manifest.loc[1, "mixture_path"]
    with open(bad_path, "wb") as handle:
        handle.write(b"this is not a wav file")
    # A row the mixing stage already marked failed is dropped without being read.
    failed = manifest.iloc[[2]].assign(
        mixture_id="mixing-failed", mixture_path=str(tmp_path / "none.wav"), status="failed"
    )
    manifest = pd.concat([manifest, failed], ignore_index=True)

    out = tmp_path / "features"
    features = extract_features(manifest, str(out), FeatureConfig(shard_format="npz"))
    assert "mixing-failed" not in features["mixture_id"].tolist()
    bad = features[features["mixture_id"] == manifest.loc[1, "mixture_id"]].iloc[0]
    assert bad["status"] == "failed"
    assert bad_path in bad["error"] and pd.isna(bad["shard_url"])
    good = features[features["status"] == "done"]
    assert len(good) == 2
    items = list(iter_shard(good["shard_url"].iloc[0]))
    assert [i["mixture_id"] for i in items] == good["mixture_id"].tolist()
    assert pd.read_parquet(out / "shards.parquet")["num_utterances"].tolist() == [2]


def test_splits_argument_limits_extraction_and_no_train_means_no_stats(fsdd_dir, tmp_path):
    manifest = make_mixtures(fsdd_dir, tmp_path / "mix", PAIRS[:3], split_of=lambda i: ["tr", "tt", "tt"][i])
    # As the pipeline passes it: read back from Parquet (list columns become numpy arrays).
    manifest.to_parquet(tmp_path / "mixtures.parquet")
    manifest = pd.read_parquet(tmp_path / "mixtures.parquet")
    out = tmp_path / "features"
    features = extract_features(manifest, str(out), FeatureConfig(), splits=["tt"])
    assert features["split"].tolist() == ["tt", "tt"]
    assert not (out / "stats.json").exists()


def test_running_stats_match_numpy_and_merge_and_round_trip(fsdd_dir):
    rng = np.random.default_rng(0)
    blocks = [rng.normal(3.0, 2.0, size=(n, 129)) for n in (5, 40, 1, 17)]
    whole = np.concatenate(blocks)
    stats = RunningStats()
    for block in blocks:
        stats.update(block)
    result = stats.result()
    np.testing.assert_allclose(result.mean, whole.mean(0), rtol=1e-6)
    np.testing.assert_allclose(result.std, whole.std(0), rtol=1e-5)
    left, right = RunningStats(), RunningStats()
    for block in blocks[:2]:
        left.update(block)
    for block in blocks[2:]:
        right.update(block)
    merged = RunningStats.from_dict(json.loads(json.dumps(left.to_dict()))).merge(right).result()
    np.testing.assert_allclose(merged.mean, result.mean, rtol=1e-6)
    np.testing.assert_allclose(merged.std, result.std, rtol=1e-6)
    restored = FeatureStats.from_dict(json.loads(json.dumps(result.to_dict())))
    np.testing.assert_array_equal(restored.mean, result.mean)
    normalised = restored.apply(whole.astype(np.float32))
    np.testing.assert_allclose(normalised.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(normalised.std(0), 1.0, atol=1e-4)
    as_tensor = restored.apply(torch.from_numpy(whole[None].astype(np.float32)))  # (batch, frames, freq)
    np.testing.assert_allclose(as_tensor[0].numpy(), normalised, rtol=1e-6, atol=1e-6)


def test_feature_config_round_trips_through_json():
    config = FeatureConfig(stft=StftConfig(sample_rate=16000), silence_db=30.0, shard_format="npz")
    assert FeatureConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert FeatureConfig().stft.n_freq == 129 and FeatureConfig().silence_db == 40.0


@pytest.mark.parametrize("sources, dim", [(2, 0), (3, 0), (2, 1), (4, 1)])
def test_dominant_source_equals_argmax_ties_included(sources, dim):
    from deepclust.features.extract import dominant_source

    generator = torch.Generator().manual_seed(sources)
    shape = [5, 7, 9]
    shape.insert(dim, sources)
    # Magnitudes on a coarse grid, so that ties between sources are common.
    magnitudes = torch.randint(0, 3, shape, generator=generator).float()
    assert (magnitudes.amax(dim) == magnitudes.amin(dim)).any()  # some bins tie in every source
    index = dominant_source(magnitudes, dim=dim)
    assert index.dtype == torch.int64
    assert torch.equal(index, magnitudes.argmax(dim))
