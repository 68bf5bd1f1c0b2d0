"""The shipped real-speech model: compact, honest about its speakers, used by default, and it separates people."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from deepclust import pretrained
from deepclust.evaluation.real_example import example_paths, separate_example
from deepclust.features.extract import FeatureConfig
from deepclust.features.normalisation import FeatureStats
from deepclust.model.blstm import DeepClusteringNet, ModelConfig
from deepclust.model.checkpoint import load_model, save_model
from deepclust.model.export import export_half
from deepclust.separation.separator import Separator

REPO = Path(__file__).resolve().parents[1]
# The example's two readers are held out; the shipped model must clearly separate them (measured:
# see deepclust/pretrained/MODEL_CARD.md), far above the ~0 dB of an untrained or synthetic-voice model.
MIN_EXAMPLE_SDRI_DB = 4.0


def test_shipped_model_is_compact_half_precision_and_lists_its_speakers():
    path = Path(pretrained.path())
    assert path.is_file() and path.stat().st_size < 25e6
    payload = torch.load(path, weights_only=True)
    assert {v.dtype for v in payload["state_dict"].values() if v.is_floating_point()} == {torch.float16}
    extra = payload["extra"]
    heard = set(extra["training_speakers"]) | set(extra["cv_speakers"])
    assert heard and not heard & set(extra["held_out_speakers"])
    # The embedded example's readers are among the held-out speakers.
    assert {"librispeech-speakers/103", "librispeech-speakers/460"} <= set(extra["held_out_speakers"])
    assert extra["command"].startswith(("deepclust train-dynamic", "python -m deepclust train-dynamic"))
    card = (path.parent / "MODEL_CARD.md").read_text()
    assert extra["command"] in card


def test_shipped_model_separates_the_real_example(tmp_path):
    from deepclust.separation.separator import METHOD_NAMES

    result = separate_example(str(tmp_path / "out"))
    assert result["inference"] == METHOD_NAMES[pretrained.load().extra["inference"]["2"]]  # what the file chose
    assert result["sdri"] > MIN_EXAMPLE_SDRI_DB, result
    assert all(Path(p).is_file() for p in result["outputs"])


def test_separate_without_model_uses_the_shipped_one(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "deepclust.cli", "separate", "--input", example_paths()["mixture"], "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "shipped real-speech model" in result.stderr
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert list(manifest["status"]) == ["done"] and len(manifest["outputs"].iloc[0]) == 2


def test_half_precision_export_loads_and_separates_like_the_original(tmp_path, librispeech_dir):
    torch.manual_seed(0)
    model = DeepClusteringNet(ModelConfig.preset("chimera++", hidden=16, layers=1, emb_dim=4))
    original = tmp_path / "model.pt"
    save_model(
        str(original),
        model,
        FeatureStats(np.zeros(129), np.ones(129)),
        FeatureConfig().to_dict(),
        {"training_speakers": ["a"]},
    )
    half = tmp_path / "half.pt"
    export_half(str(original), str(half))
    assert half.stat().st_size < 0.6 * original.stat().st_size
    assert load_model(str(half)).extra["training_speakers"] == ["a"]
    waveform = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    a = Separator(str(original), device="cpu").separate(waveform, 2)
    b = Separator(str(half), device="cpu").separate(waveform, 2)
    assert np.abs(a - b).max() < 1e-2 * np.abs(a).max()


def test_mask_inference_needs_a_mask_head_for_that_many_speakers(tmp_path):
    model = DeepClusteringNet(ModelConfig.preset("chimera++", hidden=8, layers=1, emb_dim=4))
    url = tmp_path / "m.pt"
    save_model(str(url), model, FeatureStats(np.zeros(129), np.ones(129)), FeatureConfig().to_dict())
    waveform = np.random.default_rng(1).standard_normal(4000).astype(np.float32) * 0.1
    auto = Separator(str(url), device="cpu")
    assert auto.uses_mask_head(2) and not auto.uses_mask_head(3)
    assert auto.separate(waveform, 3).shape == (3, 4000)  # three speakers: k-means on the embeddings
    with pytest.raises(ValueError, match="mask head for 3"):
        Separator(str(url), device="cpu", inference="mask").separate(waveform, 3)
    assert not Separator(str(url), device="cpu", inference="kmeans").uses_mask_head(2)
