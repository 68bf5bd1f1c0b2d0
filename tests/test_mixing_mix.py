"""Mixture creation as create_wav_2speakers.m / create_wav_3speakers.m, on real speech."""

import math

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from deepclust import storage
from deepclust.audio import resample
from deepclust.mixing.mix import MANIFEST_COLUMNS, MixConfig, create_mixtures
from deepclust.mixing.mixlist import MixEntry, mixture_id
from deepclust.mixing.p56 import active_level

LSB = 1.0 / 32768


def _read(path):
    x, sr = sf.read(path, dtype="float64")
    return x, sr


def _relative_snr_db(a, b, sr):
    return 10 * math.log10(active_level(a, sr)[0] / active_level(b, sr)[0])


@pytest.fixture(scope="module")
def fsdd_entries(fsdd_dir):
    f = lambda name: str(fsdd_dir / f"{name}.wav")  # noqa: E731
    return [
        MixEntry((f("3_jackson_0"), f("8_george_1")), (1.9857, -1.9857)),
        MixEntry((f("0_lucas_2"), f("7_nicolas_3")), (0.0312, -0.0312)),
        MixEntry((f("5_theo_4"), f("1_yweweler_5")), (2.5, -2.5)),
    ]


def _check_written(row, expect_sources):
    mixture, sr = _read(row["mixture_path"])
    sources = [_read(p)[0] for p in row["source_paths"]]
    assert sr == row["sample_rate"] and len(sources) == expect_sources == row["num_speakers"]
    assert all(s.size == mixture.size == row["num_samples"] for s in sources)
    # anti-clipping: the largest of |mix|, |s_k| is 0.9 (to within one 16-bit step)
    peak = max(np.abs(mixture).max(), *(np.abs(s).max() for s in sources))
    assert 0.9 - LSB <= peak <= 0.9 + LSB
    # the mixture is the sum of the written sources, up to rounding of each file to 16 bits
    assert np.abs(mixture - np.sum(sources, axis=0)).max() <= (expect_sources + 1) * 0.5 * LSB + 1e-9
    return mixture, sources, sr


def test_max_mode_reproduces_listed_snr(tmp_path, fsdd_entries):
    manifest = create_mixtures(fsdd_entries, "tt", tmp_path, MixConfig(mode="max"))
    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert (manifest["status"] == "done").all(), manifest["error"].tolist()
    for entry, (_, row) in zip(fsdd_entries, manifest.iterrows()):
        _, (s1, s2), sr = _check_written(row, 2)
        lengths = [sf.info(p).frames for p in entry.paths]
        assert row["num_samples"] == max(lengths)
        # after padding, anti-clip gain and 16-bit rounding the active levels still differ by the list
        assert _relative_snr_db(s1, s2, sr) == pytest.approx(entry.snrs_db[0] - entry.snrs_db[1], abs=0.05)


def test_min_mode_truncates_to_shortest_source(tmp_path, fsdd_entries):
    manifest = create_mixtures(fsdd_entries, "tr", tmp_path, MixConfig(mode="min"))
    for entry, (_, row) in zip(fsdd_entries, manifest.iterrows()):
        assert row["status"] == "done"
        _check_written(row, 2)
        assert row["num_samples"] == min(sf.info(p).frames for p in entry.paths)
        assert row["mixture_path"] == storage.join(str(tmp_path), "tr", "mix", f"{mixture_id(entry)}.wav")
        assert row["source_paths"] == [
            storage.join(str(tmp_path), "tr", f"s{k}", f"{mixture_id(entry)}.wav") for k in (1, 2)
        ]


def test_min_mode_sources_are_prefix_of_max_mode_sources(tmp_path, fsdd_entries):
    entry = fsdd_entries[0]
    row_min = create_mixtures([entry], "tt", tmp_path / "min", MixConfig(mode="min")).iloc[0]
    row_max = create_mixtures([entry], "tt", tmp_path / "max", MixConfig(mode="max")).iloc[0]
    s_min, s_max = _read(row_min["source_paths"][0])[0], _read(row_max["source_paths"][0])[0]
    # same normalisation and SNR gain; only the anti-clipping gain differs between the two
    ratio = np.dot(s_min, s_max[: s_min.size]) / np.dot(s_min, s_min)
    assert np.abs(s_max[: s_min.size] - ratio * s_min).max() < 3 * LSB


def test_16k_output_uses_8k_level_like_the_recipe(tmp_path, librispeech_dir):
    paths = (str(librispeech_dir / "198-209-0000.ogg"), str(librispeech_dir / "3436-172162-0000.ogg"))
    entry = MixEntry(paths, (1.2, -1.2))
    row16 = create_mixtures([entry], "tt", tmp_path / "16k", MixConfig(sample_rate=16000, mode="max")).iloc[0]
    row8 = create_mixtures([entry], "tt", tmp_path / "8k", MixConfig(sample_rate=8000, mode="max")).iloc[0]
    assert row16["status"] == row8["status"] == "done"
    _, (a16, b16), sr16 = _check_written(row16, 2)
    _, (a8, b8), sr8 = _check_written(row8, 2)
    assert (sr16, sr8) == (16000, 8000)
    assert row16["num_samples"] == pytest.approx(2 * row8["num_samples"], abs=2)
    # the listed SNR holds at 8 kHz, and the 16 kHz files are the same mixture (measured at 8 kHz)
    assert _relative_snr_db(a8, b8, 8000) == pytest.approx(2.4, abs=0.05)
    a16_8, b16_8 = resample(a16, 16000, 8000), resample(b16, 16000, 8000)
    assert _relative_snr_db(a16_8, b16_8, 8000) == pytest.approx(2.4, abs=0.05)


def test_16k_with_level_measured_at_output_rate(tmp_path, librispeech_dir):
    paths = (str(librispeech_dir / "5703-47212-0000.ogg"), str(librispeech_dir / "198-209-0000.ogg"))
    entry = MixEntry(paths, (0.7, -0.7))
    config = MixConfig(sample_rate=16000, mode="max", level_sample_rate=None)
    row = create_mixtures([entry], "cv", tmp_path, config).iloc[0]
    _, (a, b), sr = _check_written(row, 2)
    assert _relative_snr_db(a, b, sr) == pytest.approx(1.4, abs=0.05)


def test_three_speakers(tmp_path, fsdd_dir):
    f = lambda name: str(fsdd_dir / f"{name}.wav")  # noqa: E731
    entry = MixEntry((f("2_jackson_7"), f("4_lucas_8"), f("9_theo_9")), (1.1, -1.1, 2.0))
    for mode in ("min", "max"):
        row = create_mixtures([entry], "tt", tmp_path / mode, MixConfig(mode=mode, n_speakers=3)).iloc[0]
        assert row["status"] == "done" and row["num_speakers"] == 3
        _, (s1, s2, s3), sr = _check_written(row, 3)
        assert storage.exists(storage.join(str(tmp_path / mode), "tt", "s3", f"{mixture_id(entry)}.wav"))
        if mode == "max":
            assert _relative_snr_db(s1, s2, sr) == pytest.approx(2.2, abs=0.05)
            assert _relative_snr_db(s3, s2, sr) == pytest.approx(3.1, abs=0.05)


def test_bad_source_gives_failed_row_and_batch_goes_on(tmp_path, fsdd_entries, fsdd_dir):
    not_audio = tmp_path / "corrupt.wav"
    not_audio.write_text("this is not a RIFF file\n")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(4000), 8000, subtype="PCM_16")
    entries = [
        fsdd_entries[0],
        MixEntry((str(not_audio), fsdd_entries[1].paths[1]), (1.0, -1.0)),
        MixEntry((fsdd_entries[2].paths[0], str(silent)), (0.5, -0.5)),
        MixEntry((fsdd_entries[1].paths[0], str(tmp_path / "missing.wav")), (0.5, -0.5)),
        fsdd_entries[2],
    ]
    out = tmp_path / "out"
    manifest = create_mixtures(entries, "tt", out, MixConfig())
    assert manifest["status"].tolist() == ["done", "failed", "failed", "failed", "done"]
    assert str(not_audio) in manifest["error"][1]
    assert "silent" in manifest["error"][2]
    assert "missing.wav" in manifest["error"][3]
    assert manifest["error"][0] is None and manifest["error"][4] is None
    assert not storage.exists(manifest["mixture_path"][1])
    # the manifest on storage is the one returned, with list columns intact
    stored = storage.read_parquet(storage.join(str(out), "tt", "manifest.parquet"))
    assert stored["mixture_id"].tolist() == manifest["mixture_id"].tolist()
    assert list(stored["snrs_db"][0]) == [1.9857, -1.9857]
    assert list(stored["source_paths"][4]) == manifest["source_paths"][4]


def test_resolver_and_corpus_manifest_fill_speakers(tmp_path, fsdd_dir):
    listed = ("fsdd/jackson/3_jackson_0.wv1", "fsdd/george/8_george_1.wv1")
    real = {p: str(fsdd_dir / (p.split("/")[-1].replace(".wv1", ".wav"))) for p in listed}
    corpus = pd.DataFrame(
        [
            dict(
                utterance_id="3_jackson_0",
                path=real[listed[0]],
                speaker="jackson",
                gender="m",
                duration=0.5,
                sample_rate=8000,
                subset="train",
            )
        ]
    )
    row = create_mixtures(
        [MixEntry(listed, (1.0, -1.0))],
        "tr",
        tmp_path,
        MixConfig(),
        path_resolver=real.__getitem__,
        corpus_manifest=corpus,
    ).iloc[0]
    assert row["status"] == "done"
    assert row["mixture_id"] == "3_jackson_0_1_8_george_1_-1"
    assert row["utterance_ids"] == ["3_jackson_0", "8_george_1"]
    assert row["speakers"] == ["jackson", "george"]  # from the manifest, else the parent folder
    assert row["genders"] == ["m", None]
