"""WSJ0 recipe on a miniature WSJ0 tree made of real FSDD speech written under WSJ0 names at 16 kHz."""

from pathlib import Path

import pytest

from deepclust.audio import read_audio, write_audio
from deepclust.corpora import prepare_corpus
from deepclust.corpora.wsj0 import missing_wsj0_files, prepare_wsj0, resolve_wsj0_path

# FSDD speaker -> (WSJ0 speaker id, subset)
SPEAKERS = {
    "george": ("01t", "si_tr_s"),
    "jackson": ("02c", "si_tr_s"),
    "lucas": ("40a", "si_tr_s"),
    "nicolas": ("22g", "si_tr_s"),
    "theo": ("050", "si_dt_05"),
    "yweweler": ("440", "si_et_05"),
}
SPKRINFO = """;
; speaker information for WSJ0 (miniature copy for tests)
;  ID  Sex  Session  Date
01t  M  1  28-aug-91
02c  F  1  29-aug-91
40a  F  1  30-aug-91
050  M  1  01-sep-91
440  F  1  02-sep-91
"""  # 22g is deliberately missing: its gender must come out as None
UTTERANCES_PER_SPEAKER = 3


def _utterance_name(wsj_speaker: str, index: int) -> str:
    return f"{wsj_speaker}o030{index}"


@pytest.fixture(scope="module")
def wsj0_root(tmp_path_factory, fsdd_dir) -> Path:
    root = tmp_path_factory.mktemp("wsj0_corpus")
    for fsdd_speaker, (wsj_speaker, subset) in SPEAKERS.items():
        for index in range(UTTERANCES_PER_SPEAKER):
            x, sr = read_audio(fsdd_dir / f"{index}_{fsdd_speaker}_0.wav", target_sr=16000)
            suffix = ".wav"
            if (wsj_speaker, index) == ("01t", 1):
                suffix = ".WAV"  # converted on a case-preserving system
            if (wsj_speaker, index) == ("02c", 2):
                suffix = ".wv1"  # left unconverted, but libsndfile can read it
            write_audio(root / "wsj0" / subset / wsj_speaker / (_utterance_name(wsj_speaker, index) + suffix), x, sr)
    (root / "wsj0" / "doc").mkdir()
    (root / "wsj0" / "doc" / "spkrinfo.txt").write_text(SPKRINFO)
    (root / "wsj0" / "si_tr_s" / "01t" / "readme.txt").write_text("not audio")
    return root


def test_manifest_lists_every_utterance_with_subset_from_folder(wsj0_root):
    manifest = prepare_wsj0(wsj0_root)
    assert len(manifest) == len(SPEAKERS) * UTTERANCES_PER_SPEAKER
    assert manifest["utterance_id"].is_unique
    row = manifest.set_index("utterance_id").loc["01to0300"]
    assert row["speaker"] == "01t" and row["subset"] == "si_tr_s"
    assert row["sample_rate"] == 16000 and 0.1 < row["duration"] < 2.5
    assert Path(row["path"]).is_absolute() and Path(row["path"]).exists()
    subsets = manifest.groupby("subset")["speaker"].unique().map(sorted).to_dict()
    assert subsets == {"si_tr_s": ["01t", "02c", "22g", "40a"], "si_dt_05": ["050"], "si_et_05": ["440"]}
    assert manifest.attrs["errors"] == []


def test_upper_case_wav_and_wv1_files_are_included(wsj0_root):
    paths = prepare_wsj0(wsj0_root).set_index("utterance_id")["path"]
    assert paths["01to0301"].endswith(".WAV")
    assert paths["02co0302"].endswith(".wv1")


def test_genders_come_from_spkrinfo_and_unlisted_speakers_are_none(wsj0_root):
    genders = prepare_wsj0(wsj0_root).groupby("speaker")["gender"].first().to_dict()
    assert genders == {"01t": "m", "02c": "f", "40a": "f", "050": "m", "440": "f", "22g": None}


def test_root_may_point_at_the_wsj0_folder_itself(wsj0_root):
    nested = prepare_wsj0(wsj0_root)
    direct = prepare_wsj0(wsj0_root / "wsj0")
    assert direct.drop(columns="path").equals(nested.drop(columns="path"))
    assert prepare_corpus("wsj0", root=wsj0_root).equals(nested)


def test_without_spkrinfo_genders_are_none(wsj0_root, tmp_path):
    wav = next((wsj0_root / "wsj0" / "si_et_05").rglob("*.wav"))
    target = tmp_path / "wsj0" / "si_et_05" / "440" / wav.name
    target.parent.mkdir(parents=True)
    target.write_bytes(wav.read_bytes())
    manifest = prepare_wsj0(tmp_path)
    assert manifest["gender"].tolist() == [None]


def test_unreadable_file_is_reported_not_silently_dropped(wsj0_root, tmp_path):
    good = next((wsj0_root / "wsj0" / "si_dt_05").rglob("*.wav"))
    speaker_dir = tmp_path / "wsj0" / "si_dt_05" / "050"
    speaker_dir.mkdir(parents=True)
    (speaker_dir / good.name).write_bytes(good.read_bytes())
    (speaker_dir / "050o0309.wav").write_bytes(b"RIFF this is not a wave file")
    manifest = prepare_wsj0(tmp_path)
    assert manifest["utterance_id"].tolist() == [good.stem]
    assert [Path(e["path"]).name for e in manifest.attrs["errors"]] == ["050o0309.wav"]
    assert manifest.attrs["errors"][0]["reason"]


def test_missing_corpus_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        prepare_wsj0(tmp_path)


def test_resolve_maps_listed_wv1_path_to_converted_wav(wsj0_root):
    resolved = resolve_wsj0_path(wsj0_root, "wsj0/si_tr_s/01t/01to0300.wv1")
    assert resolved == str(wsj0_root / "wsj0" / "si_tr_s" / "01t" / "01to0300.wav")
    # root pointing at wsj0/ itself, and a listed path without the wsj0/ prefix
    assert resolve_wsj0_path(wsj0_root / "wsj0", "si_tr_s/01t/01to0300.wv1") == resolved


def test_resolve_finds_upper_case_wav_and_unconverted_wv1(wsj0_root):
    assert resolve_wsj0_path(wsj0_root, "wsj0/si_tr_s/01t/01to0301.wv1").endswith("01to0301.WAV")
    assert resolve_wsj0_path(wsj0_root, "wsj0/si_tr_s/02c/02co0302.wv1").endswith("02co0302.wv1")


def test_resolve_missing_file_names_both_candidates(wsj0_root):
    with pytest.raises(FileNotFoundError) as error:
        resolve_wsj0_path(wsj0_root, "wsj0/si_tr_s/01t/01to0399.wv1")
    assert "01to0399.wav" in str(error.value) and "01to0399.wv1" in str(error.value)


def test_missing_files_are_those_whose_utterance_the_tree_lacks_in_any_case_or_suffix(wsj0_root):
    listed = [
        "wsj0/si_tr_s/01t/01to0301.wv1",  # converted to 01to0301.WAV
        "wsj0/si_tr_s/02c/02co0302.wv1",  # left as .wv1
        "wsj0/si_dt_05/050/050o0300.wv1",
        "wsj0/si_tr_s/01t/01to0399.wv1",
        "wsj0/si_tr_s/01t/01to0399.wv1",
        "wsj0/si_et_05/440/440o0398.wv1",
        "wsj0/si_tr_s/01t/readme.wv1",
    ]
    assert missing_wsj0_files(wsj0_root, listed) == [
        "wsj0/si_tr_s/01t/01to0399.wv1",
        "wsj0/si_et_05/440/440o0398.wv1",
        "wsj0/si_tr_s/01t/readme.wv1",
    ]
    assert missing_wsj0_files(wsj0_root / "wsj0", listed[:3]) == []


def test_official_mix_lists_drive_the_pipeline_on_a_wsj0_tree(wsj0_root, tmp_path):
    """The wsj0-2mix path end to end up to features: official lists name .wv1 files of the original
    WSJ0; the stages resolve them to the converted WAVs, mix at 8 kHz and write features."""
    import numpy as np
    import pandas as pd

    from deepclust.features.extract import FeatureConfig
    from deepclust.mixing.p56 import active_level
    from deepclust.pipeline.driver import run_stage
    from deepclust.stages.corpus import CorpusConfig, plan_corpus
    from deepclust.stages.features import plan_features
    from deepclust.stages.mixtures import MixStageConfig, plan_mixtures

    lists = {
        "tr": [
            "wsj0/si_tr_s/01t/01to0300.wv1 1.9857 wsj0/si_tr_s/02c/02co0300.wv1 -1.9857",
            "wsj0/si_tr_s/40a/40ao0301.wv1 0.5 wsj0/si_tr_s/22g/22go0301.wv1 -0.5",
        ],
        "cv": ["wsj0/si_tr_s/01t/01to0302.wv1 2.2 wsj0/si_tr_s/40a/40ao0302.wv1 -2.2"],
        "tt": ["wsj0/si_dt_05/050/050o0300.wv1 1.25 wsj0/si_et_05/440/440o0300.wv1 -1.25"],
    }
    urls = {}
    for split, lines in lists.items():
        urls[split] = str(tmp_path / f"mix_2_spk_{split}.txt")
        (tmp_path / f"mix_2_spk_{split}.txt").write_text("\n".join(lines) + "\n")
    root = str(tmp_path / "run")
    corpus = run_stage(plan_corpus(root, CorpusConfig(name="wsj0", root=str(wsj0_root))))
    # 'max' mode: the recipe normalises whole sources, so only zero-padded (not truncated) written
    # sources keep the listed relative level exactly.
    mixtures_url = run_stage(plan_mixtures(root, corpus, MixStageConfig(mix_lists=urls, mode="max")))
    mixtures = pd.read_parquet(mixtures_url)
    assert (mixtures["status"] == "done").all() and len(mixtures) == 4
    assert sorted(mixtures["split"]) == ["cv", "tr", "tr", "tt"]
    assert set(mixtures["sample_rate"]) == {8000}
    first = mixtures.set_index("mixture_id").loc["01to0300_1.9857_02co0300_-1.9857"]
    assert list(first["speakers"]) == ["01t", "02c"] and list(first["genders"]) == ["m", "f"]
    levels = [10 * np.log10(active_level(read_audio(p)[0], 8000)[0]) for p in first["source_paths"]]
    assert abs((levels[0] - levels[1]) - 2 * 1.9857) < 0.05
    features = pd.read_parquet(run_stage(plan_features(root, mixtures_url, FeatureConfig())))
    assert sorted(features["split"]) == ["cv", "tr", "tr"] and (features["status"] == "done").all()
