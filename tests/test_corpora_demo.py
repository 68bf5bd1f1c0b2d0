"""The eSpeak NG demo corpus: speakers, split, determinism, caching and the audio itself."""

import hashlib
from pathlib import Path

import numpy as np
import pytest

from deepclust.audio import read_audio
from deepclust.corpora import prepare_corpus
from deepclust.corpora.demo import MARKER, prepare_demo
from deepclust.corpora.espeak import EspeakEngine

PER_VOICE = 2


def _checksums(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.wav"))}


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo_a")
    prepare_demo(root, seed=0, utterances_per_voice=PER_VOICE)
    return root


@pytest.fixture(scope="module")
def demo_manifest(demo_root):
    return prepare_demo(demo_root, seed=0, utterances_per_voice=PER_VOICE)


def test_at_least_24_speakers_of_both_genders(demo_manifest):
    speakers = demo_manifest.groupby("speaker")["gender"].first()
    assert len(speakers) >= 24
    assert set(speakers) == {"m", "f"} and min((speakers == "m").sum(), (speakers == "f").sum()) >= 12
    assert (demo_manifest.groupby("speaker").size() == PER_VOICE).all()
    assert demo_manifest["utterance_id"].is_unique


def test_test_speakers_are_disjoint_from_training_and_cover_both_genders(demo_manifest):
    train = set(demo_manifest.loc[demo_manifest["subset"] == "train", "speaker"])
    test = set(demo_manifest.loc[demo_manifest["subset"] == "test", "speaker"])
    assert set(demo_manifest["subset"]) == {"train", "test"}
    assert train.isdisjoint(test) and len(test) >= 4 and len(train) >= 20
    test_genders = demo_manifest.loc[demo_manifest["subset"] == "test"].groupby("speaker")["gender"].first()
    assert set(test_genders) == {"m", "f"}
    accents = {s.rsplit("_", 1)[0] for s in test}
    assert len(accents) == len(test)  # one held-out voice per accent


def test_files_are_8khz_speech_of_sensible_length(demo_manifest):
    assert (demo_manifest["sample_rate"] == 8000).all()
    assert demo_manifest["duration"].between(2.0, 4.0).all()
    for path in demo_manifest["path"].iloc[::7]:
        x, sr = read_audio(path)
        assert sr == 8000 and 2.0 <= len(x) / sr <= 4.0
        frames = x[: len(x) // 200 * 200].reshape(-1, 200)  # 25 ms frames
        frame_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
        assert frame_db.max() > -25  # loud enough to be speech, not near-silence
        assert np.mean(frame_db > frame_db.max() - 30) > 0.5  # mostly active, not a click in silence
    texts = demo_manifest["text"].str.split()
    assert texts.map(len).between(5, 10).all()


def _median_f0(x: np.ndarray, sr: int) -> float:
    """Median autocorrelation pitch (Hz, 60-400) over loud 40 ms frames."""
    n = int(0.04 * sr)
    estimates = []
    for start in range(0, len(x) - n, n):
        frame = x[start : start + n] - x[start : start + n].mean()
        if np.sqrt(np.mean(frame**2)) < 0.05:
            continue
        ac = np.correlate(frame, frame, "full")[n - 1 :]
        lag = np.argmax(ac[sr // 400 : sr // 60]) + sr // 400
        estimates.append(sr / lag)
    return float(np.median(estimates))


def test_female_voices_have_higher_pitch_than_male_voices(demo_manifest):
    first = demo_manifest.groupby("speaker").first()
    f0 = {s: _median_f0(*read_audio(p)) for s, p in first["path"].items()}
    male = np.median([f0[s] for s in first.index[first["gender"] == "m"]])
    female = np.median([f0[s] for s in first.index[first["gender"] == "f"]])
    assert female > 1.3 * male


def test_same_seed_gives_identical_audio_in_another_folder(demo_root, demo_manifest, tmp_path):
    with EspeakEngine() as engine:  # other synthesis in the process must not change the corpus
        engine.synthesise("something else entirely", "en-us+f2")
    other = prepare_corpus("demo", root=tmp_path, seed=0, utterances_per_voice=PER_VOICE)
    assert _checksums(tmp_path) == _checksums(demo_root)
    assert other.drop(columns="path").equals(demo_manifest.drop(columns="path"))
    recorded = dict(zip(other["speaker"] + "/" + other["utterance_id"] + ".wav", other["sha256"]))
    assert recorded == _checksums(tmp_path)


def test_other_seed_gives_other_sentences(demo_manifest, tmp_path):
    other = prepare_demo(tmp_path, seed=1, utterances_per_voice=1)
    assert len(other) == other["speaker"].nunique()
    assert set(other["text"]).isdisjoint(set(demo_manifest["text"]))


def test_rerun_reuses_files(demo_root, demo_manifest):
    mtimes = {p: p.stat().st_mtime_ns for p in demo_root.rglob("*")}
    again = prepare_demo(demo_root, seed=0, utterances_per_voice=PER_VOICE)
    assert {p: p.stat().st_mtime_ns for p in demo_root.rglob("*")} == mtimes
    assert again.equals(demo_manifest)


def test_half_made_corpus_is_rebuilt(demo_root, tmp_path):
    prepare_demo(tmp_path, seed=0, utterances_per_voice=PER_VOICE)
    (tmp_path / MARKER).unlink()  # as if interrupted before the marker was written
    victim = next(tmp_path.rglob("*.wav"))
    victim.unlink()
    manifest = prepare_demo(tmp_path, seed=0, utterances_per_voice=PER_VOICE)
    assert victim.exists() and (tmp_path / MARKER).exists()
    assert _checksums(tmp_path) == _checksums(demo_root)
    assert len(manifest) == len(_checksums(tmp_path))


def test_moved_corpus_reports_paths_in_its_new_folder(demo_root, tmp_path):
    moved = tmp_path / "moved"
    import shutil

    shutil.copytree(demo_root, moved)
    manifest = prepare_demo(moved, seed=0, utterances_per_voice=PER_VOICE)
    assert all(Path(p).is_relative_to(moved) and Path(p).exists() for p in manifest["path"])
