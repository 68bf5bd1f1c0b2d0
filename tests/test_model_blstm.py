"""The embedding network's shapes, unit norm, presets, and model files."""

import numpy as np
import pytest
import torch

from deepclust.model import DeepClusteringNet, ModelConfig, load_model, save_model


def test_output_shape_and_unit_norm():
    torch.manual_seed(0)
    model = DeepClusteringNet(ModelConfig(n_freq=17, hidden=8, layers=2, emb_dim=5))
    embeddings = model(torch.randn(3, 11, 17))
    assert embeddings.shape == (3, 11, 17, 5)
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(3, 11, 17))


@pytest.mark.bf16
def test_embeddings_stay_float32_unit_norm_under_autocast():
    model = DeepClusteringNet(ModelConfig(n_freq=17, hidden=8, layers=2, emb_dim=5))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embeddings = model(torch.randn(2, 6, 17))
    assert embeddings.dtype == torch.float32
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(2, 6, 17))


def test_presets_follow_the_papers():
    paper = ModelConfig.preset("paper")
    assert (paper.n_freq, paper.hidden, paper.layers, paper.emb_dim, paper.dropout) == (129, 300, 2, 20, 0.0)
    plus = ModelConfig.preset("dpcl++")
    assert (plus.hidden, plus.layers, plus.emb_dim, plus.dropout) == (300, 4, 20, 0.3)
    assert ModelConfig.preset("paper", emb_dim=40).emb_dim == 40
    with pytest.raises(ValueError):
        ModelConfig.preset("nope")


def test_wrong_input_shape_names_the_expected_one():
    model = DeepClusteringNet(ModelConfig(n_freq=17, hidden=4, layers=1, emb_dim=2))
    with pytest.raises(ValueError, match="17"):
        model(torch.randn(2, 5, 16))


def test_model_file_round_trips(tmp_path):
    from deepclust.features.normalisation import FeatureStats

    torch.manual_seed(0)
    config = ModelConfig(n_freq=17, hidden=8, layers=2, emb_dim=5, dropout=0.3)
    model = DeepClusteringNet(config)
    stats = FeatureStats(mean=np.arange(17, dtype=np.float32), std=np.full(17, 2.0, dtype=np.float32))
    url = str(tmp_path / "sub" / "model.pt")
    save_model(url, model, stats, {"sample_rate": 8000, "stft": {"n_fft": 256}}, {"best_val_loss": np.float32(0.5)})
    loaded = load_model(url)
    assert loaded.model_config == config
    assert not loaded.model.training
    assert loaded.feature_config["sample_rate"] == 8000
    assert loaded.extra["best_val_loss"] == 0.5
    np.testing.assert_array_equal(loaded.feature_stats.mean, stats.mean)
    np.testing.assert_array_equal(loaded.feature_stats.std, stats.std)
    x = torch.randn(1, 4, 17)
    model.eval()
    torch.testing.assert_close(loaded.model(x), model(x), rtol=0, atol=0)


def test_loading_a_foreign_file_says_what_it_is(tmp_path):
    url = str(tmp_path / "other.pt")
    torch.save({"format": "something-else"}, url)
    with pytest.raises(ValueError, match="not a deepclust model"):
        load_model(url)


def test_the_half_frame_rate_front_end_keeps_every_frame_and_ignores_padding():
    """conv2: the BLSTM runs at half the frame rate, the heads still give one output per frame, odd lengths
    included, and a padded item gets the embeddings it gets alone (the sequences are packed)."""
    torch.manual_seed(0)
    model = DeepClusteringNet(ModelConfig.preset("chimera++-conv2", hidden=16, emb_dim=4)).eval()
    log_mag = torch.randn(2, 51, 129)
    outputs = model(log_mag, lengths=torch.tensor([51, 37]), heads=True)
    assert outputs["embeddings"].shape == (2, 51, 129, 4) and outputs["masks"].shape == (2, 2, 51, 129)
    alone = model(log_mag[1:, :37], heads=True)
    assert torch.allclose(outputs["embeddings"][1, :37], alone["embeddings"][0], atol=1e-5)
    with pytest.raises(ValueError, match="front_end"):
        ModelConfig(front_end="conv4")


def test_training_flops_grow_with_the_network():
    from deepclust.model.blstm import training_flops_per_frame

    base = training_flops_per_frame(ModelConfig.preset("chimera++"))
    assert 25e6 < base < 35e6  # 2 x 300 BLSTM + heads: ~29 MFLOP per frame for a training step
    assert training_flops_per_frame(ModelConfig.preset("chimera++-3x400")) > 2 * base
