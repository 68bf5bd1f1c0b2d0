"""Folder recipe on the real FSDD recordings and on a LibriSpeech-style tree of real LibriSpeech excerpts."""

import shutil
from pathlib import Path

import pytest

from deepclust.corpora import prepare_corpus
from deepclust.corpora.folder import prepare_folder, split_speakers

LIBRISPEECH_UTTERANCES = ("198-209-0000", "3436-172162-0000", "5703-47212-0000")


@pytest.fixture(scope="module")
def fsdd_manifest(fsdd_dir):
    return prepare_folder(fsdd_dir, "fsdd", test_speakers=["george", "lucas"])


@pytest.fixture()
def librispeech_root(tmp_path, librispeech_dir) -> Path:
    """``<spk>/<chapter>/<spk>-<chapter>-<idx>.ogg``, two utterances per reader, plus transcripts."""
    root = tmp_path / "LibriSpeech" / "train-clean-100"
    for name in LIBRISPEECH_UTTERANCES:
        speaker, chapter, _ = name.split("-")
        folder = root / speaker / chapter
        folder.mkdir(parents=True)
        for index in ("0000", "0001"):
            shutil.copyfile(librispeech_dir / f"{name}.ogg", folder / f"{speaker}-{chapter}-{index}.ogg")
        (folder / f"{speaker}-{chapter}.trans.txt").write_text(f"{speaker}-{chapter}-0000 SOME TEXT\n")
    return root


def test_fsdd_lists_all_recordings_with_test_speakers_held_out(fsdd_manifest):
    assert len(fsdd_manifest) == 3000
    assert fsdd_manifest["utterance_id"].is_unique
    assert set(fsdd_manifest["speaker"]) == {"george", "jackson", "lucas", "nicolas", "theo", "yweweler"}
    by_subset = fsdd_manifest.groupby("subset")["speaker"].unique().map(sorted).to_dict()
    assert by_subset == {"test": ["george", "lucas"], "train": ["jackson", "nicolas", "theo", "yweweler"]}
    assert (fsdd_manifest.groupby("speaker").size() == 500).all()
    assert fsdd_manifest.attrs["errors"] == []


def test_fsdd_rows_carry_probed_duration_rate_and_csv_gender(fsdd_manifest, fsdd_dir):
    row = fsdd_manifest.set_index("utterance_id").loc["7_theo_12"]
    # The manifest holds resolved absolute paths (a symlinked corpus folder resolves to its target).
    assert row["speaker"] == "theo" and row["path"] == str((fsdd_dir / "7_theo_12.wav").resolve())
    assert row["sample_rate"] == 8000
    assert 0.1 < row["duration"] < 2.5
    assert set(fsdd_manifest["gender"]) == {"m"}  # speakers.csv: all six FSDD speakers are male


def test_custom_regex_with_speaker_group(fsdd_dir):
    manifest = prepare_folder(
        fsdd_dir, r"[0-4]_(?P<speaker>theo|nicolas)_\d+\.wav", genders={"theo": "male"}, test_speakers=["nicolas"]
    )
    assert len(manifest) == 2 * 5 * 50
    assert manifest.groupby("speaker")["gender"].first().to_dict() == {"nicolas": None, "theo": "m"}
    assert manifest.groupby("speaker")["subset"].first().to_dict() == {"nicolas": "test", "theo": "train"}


def test_pattern_without_speaker_group_is_rejected(fsdd_dir):
    with pytest.raises(ValueError, match="speaker"):
        prepare_folder(fsdd_dir, r"\d_(\w+)_\d+\.wav")


def test_unknown_test_speaker_is_rejected(librispeech_root):
    with pytest.raises(ValueError, match="9999"):
        prepare_folder(librispeech_root, "librispeech", test_speakers=["9999"])


def test_librispeech_tree_speakers_genders_and_ids(librispeech_root):
    manifest = prepare_folder(
        librispeech_root, "librispeech", genders={"198": "female", "3436": "M"}, test_speakers=["198"]
    )
    assert sorted(manifest["utterance_id"]) == sorted(
        f"{n[:-4]}{i}" for n in LIBRISPEECH_UTTERANCES for i in ("0000", "0001")
    )
    per_speaker = manifest.groupby("speaker").agg(
        gender=("gender", "first"), subset=("subset", "first"), count=("utterance_id", "size")
    )
    assert per_speaker.to_dict("index") == {
        "198": {"gender": "f", "subset": "test", "count": 2},
        "3436": {"gender": "m", "subset": "train", "count": 2},
        "5703": {"gender": None, "subset": "train", "count": 2},
    }
    assert (manifest["sample_rate"] == 22050).all() and (manifest["duration"] > 1.0).all()
    assert not manifest["path"].str.endswith(".txt").any()


def test_unreadable_audio_is_skipped_and_reported(librispeech_root):
    broken = librispeech_root / "198" / "209" / "198-209-0002.flac"
    broken.write_bytes(b"fLaC but truncated")
    manifest = prepare_folder(librispeech_root, "librispeech", test_speakers=["198"])
    assert "198-209-0002" not in set(manifest["utterance_id"])
    assert len(manifest) == 6
    assert [e["path"] for e in manifest.attrs["errors"]] == [str(broken)]


def test_random_split_is_seeded_and_keeps_both_subsets(librispeech_root):
    first = prepare_folder(librispeech_root, "librispeech", test_fraction=0.25, seed=3)
    again = prepare_corpus("librispeech", root=librispeech_root, test_fraction=0.25, seed=3)
    assert first.equals(again)
    assert first.groupby("subset")["speaker"].nunique().to_dict() == {"test": 1, "train": 2}


def test_split_speakers_fraction_and_seed():
    speakers = [f"s{i:02d}" for i in range(20)]
    split = split_speakers(speakers, test_fraction=0.25, seed=0)
    assert sum(s == "test" for s in split.values()) == 5
    assert split == split_speakers(list(reversed(speakers)), test_fraction=0.25, seed=0)
    assert any(split_speakers(speakers, test_fraction=0.25, seed=k) != split for k in range(1, 5))
