"""NIST SPHERE as LDC ships it (WSJ0's .wv1): every sph2pipe test file decodes bit for bit like sph2pipe,
damaged files are recorded bad inputs, and a WSJ0-shaped tree of them runs through the recipe."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from deepclust.audio import audio_info, read_audio
from deepclust.corpora.wsj0 import prepare_wsj0, resolve_wsj0_path
from deepclust.faults.errors import BadAudioError

NAMES = [
    "123_1pcbe_shn",
    "123_1pcle_shn",
    "123_1ulaw_shn",
    "123_2alaw",
    "123_2pcbe_shn",
    "123_2pcle_shn",
    "123_2ulaw_shn",
]


@pytest.fixture(scope="module")
def sphere_dir(corpora_dir) -> Path:
    return corpora_dir / "sphere-shorten"


@pytest.mark.parametrize("name", NAMES)
def test_every_sph2pipe_test_file_decodes_bit_exact(sphere_dir, name):
    decoded, rate = read_audio(sphere_dir / f"{name}.sph", mono=False)
    reference, reference_rate = sf.read(sphere_dir / "reference" / f"{name}.wav", dtype="int16", always_2d=True)
    assert rate == reference_rate == 20000
    assert np.array_equal(np.round(decoded * 32768).astype(np.int16), reference.T)
    assert audio_info(sphere_dir / f"{name}.sph") == (rate, reference.shape[0], reference.shape[1])


def test_wv1_suffix_is_read_as_sphere(sphere_dir, tmp_path):
    target = tmp_path / "01TO0300.WV1"
    shutil.copy(sphere_dir / "123_1pcle_shn.sph", target)
    assert np.array_equal(read_audio(target)[0], read_audio(sphere_dir / "123_1pcle_shn.sph")[0])


def test_damaged_sphere_files_are_bad_inputs_naming_the_file(sphere_dir, tmp_path):
    raw = (sphere_dir / "123_1pcle_shn.sph").read_bytes()
    truncated = tmp_path / "truncated.wv1"
    truncated.write_bytes(raw[: 1024 + 300])  # the header and a sliver of the shorten stream
    garbled = tmp_path / "garbled.sph"
    garbled.write_bytes(b"NIST_1A\n   1024\nsample_rate -i nonsense\n" + b"\0" * 2000)
    for path in (truncated, garbled):
        with pytest.raises(BadAudioError) as caught:
            read_audio(path)
        assert str(path) in str(caught.value) and "SPHERE" in caught.value.reason


# -- WSJ0 as the discs ship it ------------------------------------------------------------------------

# (subset, speaker folder, utterance file, fixture); the tree is written in the discs' upper case. WSJ0 is
# mono; 02co0301 is a two-channel test file whose channels cancel (one is the other negated): it is mixed
# from its loudest channel (deepclust.audio.downmix), never as the silence its mean is.
TREE = [
    ("si_tr_s", "01t", "01to0300.wv1", "123_1pcle_shn"),
    ("si_tr_s", "01t", "01to0301.wv1", "123_1ulaw_shn"),
    ("si_tr_s", "02c", "02co0300.wv1", "123_1pcbe_shn"),
    ("si_tr_s", "02c", "02co0301.wv1", "123_2ulaw_shn"),
    ("si_tr_s", "40a", "40ao0300.wv1", "123_1ulaw_shn"),
    ("si_tr_s", "40a", "40ao0301.wv1", "123_1pcle_shn"),
    ("si_dt_05", "050", "050o0300.wv1", "123_1pcbe_shn"),
    ("si_et_05", "440", "440o0300.wv1", "123_1pcle_shn"),
]
LISTS = {
    "tr": [
        "wsj0/si_tr_s/01t/01to0300.wv1 1.9857 wsj0/si_tr_s/02c/02co0300.wv1 -1.9857",
        "wsj0/si_tr_s/40a/40ao0300.wv1 0.5 wsj0/si_tr_s/02c/02co0301.wv1 -0.5",
    ],
    "cv": ["wsj0/si_tr_s/01t/01to0301.wv1 2.2 wsj0/si_tr_s/40a/40ao0301.wv1 -2.2"],
    "tt": ["wsj0/si_dt_05/050/050o0300.wv1 1.25 wsj0/si_et_05/440/440o0300.wv1 -1.25"],
}


@pytest.fixture(scope="module")
def ldc_tree(tmp_path_factory, sphere_dir) -> Path:
    root = tmp_path_factory.mktemp("ldc")
    for subset, speaker, name, fixture in TREE:
        folder = root / "WSJ0" / subset.upper() / speaker.upper()
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(sphere_dir / f"{fixture}.sph", folder / name.upper())
    return root


def test_ldc_tree_as_shipped_is_a_corpus_with_lower_case_ids(ldc_tree, sphere_dir):
    manifest = prepare_wsj0(ldc_tree)
    assert len(manifest) == len(TREE) and manifest.attrs["errors"] == []
    assert set(manifest["speaker"]) == {"01t", "02c", "40a", "050", "440"}
    row = manifest.set_index("utterance_id").loc["01to0300"]
    assert row["sample_rate"] == 20000 and row["subset"] == "si_tr_s"
    listed = resolve_wsj0_path(ldc_tree, "wsj0/si_tr_s/01t/01to0300.wv1")
    assert listed.endswith("WSJ0/SI_TR_S/01T/01TO0300.WV1")
    reference, _ = sf.read(sphere_dir / "reference" / "123_1pcle_shn.wav", dtype="int16")
    assert np.array_equal(np.round(read_audio(listed)[0] * 32768).astype(np.int16), reference)


def test_wrong_root_names_what_was_expected_and_where(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"wsj0/\{si_tr_s,si_dt_05,si_et_05\}/<speaker>/<utterance>\.wv1"):
        prepare_wsj0(tmp_path)


@pytest.mark.slow
def test_reproduce_runs_on_the_ldc_tree_with_official_lists(ldc_tree, tmp_path):
    """``deepclust reproduce --corpus wsj0`` on SPHERE files named by the official lists, tiny sizes."""
    import dataclasses

    from deepclust.cli import build_parser, reproduce_config_from_args
    from deepclust.recipe.reproduce import reproduce

    lists = tmp_path / "lists"
    lists.mkdir()
    for split, lines in LISTS.items():
        (lists / f"mix_2_spk_{split}.txt").write_text("\n".join(lines) + "\n")
    args = build_parser().parse_args(
        [
            "reproduce",
            "--corpus",
            "wsj0",
            "--wsj0-root",
            str(ldc_tree),
            "--mix-lists",
            str(lists),
            "--quick",
            "--set",
            "mixtures.test_speaker_counts=2",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    config = reproduce_config_from_args(args)
    config.mixtures.test_speaker_counts = (2,)
    config.train = dataclasses.replace(config.train, max_epochs=1, steps_per_epoch=2)
    record = reproduce(config, log=lambda message: None)
    mixtures = pd.read_parquet(record["stages"]["mixtures"]["manifest"]).set_index("mixture_id")
    assert sorted(mixtures["split"]) == ["cv", "tr", "tr", "tt"]
    assert (mixtures["status"] == "done").all(), mixtures["error"]
    results = pd.read_parquet(record["results"])
    assert set(results["system"]) >= {"model", "ibm"} and (results["status"] == "done").all()


def test_separate_archive_reads_sphere_inputs(sphere_dir, tmp_path):
    """Archive separation streams its inputs block by block; SPHERE inputs go through the same path."""
    import torch

    from deepclust.archive import separate_archive
    from deepclust.features.extract import FeatureConfig
    from deepclust.features.normalisation import FeatureStats
    from deepclust.model.blstm import DeepClusteringNet, ModelConfig
    from deepclust.model.checkpoint import save_model

    torch.manual_seed(0)
    model = tmp_path / "tiny.pt"
    save_model(
        str(model),
        DeepClusteringNet(ModelConfig(hidden=8, layers=1, emb_dim=4)),
        FeatureStats(np.zeros(129), np.ones(129)),
        FeatureConfig().to_dict(),
    )
    archive = tmp_path / "archive"
    archive.mkdir()
    shutil.copy(sphere_dir / "123_1pcle_shn.sph", archive / "a.wv1")
    (archive / "broken.sph").write_bytes((sphere_dir / "123_1pcbe_shn.sph").read_bytes()[:1100])
    summary = separate_archive(str(model), str(archive), str(tmp_path / "out"), n_speakers=2)
    assert summary["done"] == 1 and summary["failed"] == 1
    estimate, rate = sf.read(tmp_path / "out" / "a" / "s1.wav")
    assert rate == 8000 and len(estimate) == int(np.ceil(37120 * 8000 / 20000))
    assert "broken.sph" in summary["failed_inputs"][0][1] and "SPHERE" in summary["failed_inputs"][0][1]
