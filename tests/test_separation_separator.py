"""Separator end to end with a tiny randomly initialised model (quality is tested with training)."""

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from deepclust.audio import read_audio
from deepclust.features.extract import FeatureConfig
from deepclust.features.normalisation import FeatureStats
from deepclust.model.blstm import DeepClusteringNet, ModelConfig
from deepclust.model.checkpoint import load_model, save_model
from deepclust.separation.separator import Separator, head_seeded_soft_masks

FILES = ["0_george_0.wav", "4_lucas_17.wav", "9_nicolas_33.wav"]


@pytest.fixture(scope="module")
def tiny_model_url(tmp_path_factory):
    torch.manual_seed(0)
    model = DeepClusteringNet(ModelConfig(hidden=16, layers=2, emb_dim=6))
    stats = FeatureStats(mean=np.full(129, -4.0), std=np.full(129, 2.0))
    url = str(tmp_path_factory.mktemp("model") / "tiny.pt")
    save_model(url, model, stats, FeatureConfig().to_dict(), {"note": "untrained"})
    return url


@pytest.fixture(scope="module")
def mixtures(fsdd_dir):
    # Different lengths on purpose: the batch is padded.
    return [read_audio(fsdd_dir / name)[0] for name in FILES]


def masks_of(estimates, mixture, separator):
    """Recover the binary masks (as cluster labels) from the separated signals' spectra."""
    from deepclust.features.stft import stft

    spectra = stft(torch.from_numpy(np.ascontiguousarray(estimates)), separator.stft_config).abs()
    return spectra.argmax(0).flatten().numpy()


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("kmeans", ["torch", "sklearn"])
def test_separate_returns_k_signals_as_long_as_the_input(tiny_model_url, mixtures, k, kmeans):
    separator = Separator(tiny_model_url, kmeans=kmeans)
    assert separator.sample_rate == 8000
    for mixture in mixtures:
        estimates = separator.separate(mixture, k)
        assert estimates.shape == (k, len(mixture)) and estimates.dtype == np.float32
        # Binary masks that tile the time-frequency plane: the estimates add up to the mixture.
        np.testing.assert_allclose(estimates.sum(0), mixture, atol=1e-4)
        assert np.all(np.abs(estimates).sum(1) > 0)


@pytest.mark.parametrize("k", [2, 3])
def test_separate_batch_equals_separate_per_item(tiny_model_url, mixtures, k):
    # float32: bf16 GEMMs round differently for other batch shapes (bounded in the bf16 test below).
    separator = Separator(load_model(tiny_model_url, "cpu"), precision="fp32")
    batch = separator.separate_batch(mixtures, k)
    assert len(batch) == len(mixtures)
    for mixture, batched in zip(mixtures, batch):
        single = separator.separate(mixture, k)
        assert batched.shape == single.shape == (k, len(mixture))
        agreement = adjusted_rand_score(masks_of(single, mixture, separator), masks_of(batched, mixture, separator))
        assert agreement > 0.98


def test_padded_batch_embeddings_equal_single_embeddings(tiny_model_url, mixtures):
    # The BLSTM's backward pass must not see the padding of shorter utterances (float32: exact to 1e-5).
    separator = Separator(tiny_model_url, precision="fp32")
    batch = separator.embed_batch(mixtures)
    for i, mixture in enumerate(mixtures):
        single = separator.embed(mixture)
        frames = batch["frame_counts"][i]
        assert single.shape == (frames, 129, 6)
        np.testing.assert_allclose(batch["embeddings"][i, :frames].numpy(), single, atol=1e-5)
        assert not batch["valid"][i, frames:].any()


@pytest.mark.bf16
def test_bf16_embeddings_stay_close_to_float32_whatever_the_batch(tiny_model_url, mixtures):
    """bf16 (the default on AMX CPUs) rounds the network's products to 8 bits of mantissa: the unit
    embeddings move by at most a few hundredths, padded or not; masks, k-means and outputs stay float32."""
    fp32 = Separator(tiny_model_url, precision="fp32")
    bf16 = Separator(tiny_model_url, precision="bf16")
    batch = bf16.embed_batch(mixtures)
    assert batch["embeddings"].dtype == torch.float32
    for i, mixture in enumerate(mixtures):
        frames = batch["frame_counts"][i]
        reference = fp32.embed(mixture)
        assert np.abs(batch["embeddings"][i, :frames].numpy() - reference).max() < 0.05
        assert np.abs(bf16.embed(mixture) - reference).max() < 0.05
        assert bf16.separate(mixture, 2).dtype == np.float32


def test_two_speaker_model_separates_into_three(tiny_model_url, mixtures):
    # The model was "trained" for 2 speakers; K is a test-time choice (the paper's 3-speaker result).
    n = max(len(m) for m in mixtures)
    three_speakers = sum(np.pad(m, (0, n - len(m))) for m in mixtures)
    separator = Separator(tiny_model_url)
    estimates = separator.separate_batch([three_speakers, mixtures[0]], 3)
    assert estimates[0].shape == (3, n) and estimates[1].shape == (3, len(mixtures[0]))
    np.testing.assert_allclose(estimates[0].sum(0), three_speakers, atol=1e-4)


def test_rejects_unknown_kmeans_backend(tiny_model_url):
    with pytest.raises(ValueError):
        Separator(tiny_model_url, kmeans="faiss")


def test_whitened_embeddings_have_identity_covariance_over_the_valid_bins():
    import torch

    from deepclust.separation.separator import whiten_embeddings

    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(2, 30, 9, 5, generator=generator) @ torch.randn(5, 5, generator=generator)
    valid = torch.rand(2, 30, 9, generator=generator) > 0.3
    white = whiten_embeddings(embeddings, valid)
    for item in range(2):
        points = white[item][valid[item]].double()
        covariance = points.T @ points / points.shape[0]
        assert torch.allclose(covariance, torch.eye(5, dtype=torch.float64), atol=1e-4)


def test_misi_keeps_magnitudes_and_brings_the_estimates_closer_to_summing_to_the_mixture(librispeech_dir):
    import numpy as np
    import torch

    from deepclust.audio import read_audio
    from deepclust.features.stft import StftConfig, istft, stft
    from deepclust.separation.phase import misi

    config = StftConfig()
    a = read_audio(librispeech_dir / "198-209-0000.ogg", target_sr=8000)[0][:16000]
    b = read_audio(librispeech_dir / "3436-172162-0000.ogg", target_sr=8000)[0][:16000]
    mixture = torch.from_numpy(a + b).double()
    spectrum = stft(mixture, config)
    sources = stft(torch.from_numpy(np.stack([a, b])).double(), config)
    masks = sources.abs() / spectrum.abs().clamp_min(1e-8)  # the true magnitudes, with the mixture's phase
    plain = misi(spectrum, masks, mixture, config, 0)
    assert torch.allclose(plain, istft(spectrum.unsqueeze(0) * masks, config, 16000))
    refined = misi(spectrum, masks, mixture, config, 5)
    truth = torch.from_numpy(np.stack([a, b])).double()
    error = lambda signals: float((signals - truth).square().sum())  # noqa: E731
    # With the true magnitudes, re-estimated phases bring the estimates closer to the true sources.
    assert error(refined) < 0.8 * error(plain)


def test_soft_kmeans_masks_sum_to_one_and_sharpen_into_hard_kmeans(tiny_model_url, mixtures):
    soft = Separator(tiny_model_url, device="cpu", kmeans="torch", inference="soft-kmeans", soft_beta=5.0)
    batch = soft.embed_batch(mixtures[:2])
    masks, labels = soft.assign(batch, 2)
    assert masks.shape == (2, 2, *batch["spectra"].shape[1:])
    assert torch.allclose(masks.sum(1), torch.ones_like(masks[:, 0]), atol=1e-5)
    assert 0 < float(masks.min()) and float(masks.max()) < 1  # soft, not binary
    hard = Separator(tiny_model_url, device="cpu", kmeans="torch", inference="kmeans")
    hard_masks, hard_labels = hard.assign(batch, 2)
    sharp = Separator(tiny_model_url, device="cpu", kmeans="torch", inference="soft-kmeans", soft_beta=1e6)
    sharp_masks, _ = sharp.assign(batch, 2)
    valid = batch["valid"]
    assert torch.equal(labels[valid], hard_labels[valid])  # the same centroids decide
    assert float((sharp_masks - hard_masks).abs()[valid.unsqueeze(1).expand_as(hard_masks)].max()) < 1e-3
    estimates = soft.separate_batch(mixtures[:2], 2)
    assert [e.shape for e in estimates] == [(2, m.size) for m in mixtures[:2]]


def test_auto_inference_follows_the_choice_the_model_file_records(tmp_path):
    torch.manual_seed(0)
    model = DeepClusteringNet(ModelConfig.preset("chimera++", hidden=8, layers=1, emb_dim=4))
    stats = FeatureStats(mean=np.full(129, -4.0), std=np.full(129, 2.0))
    plain, chosen = str(tmp_path / "plain.pt"), str(tmp_path / "chosen.pt")
    save_model(plain, model, stats, FeatureConfig().to_dict(), {})
    save_model(chosen, model, stats, FeatureConfig().to_dict(), {"inference": {"2": "soft-kmeans", "3": "mask"}})
    assert Separator(plain, device="cpu").inference_for(2) == "mask"
    assert Separator(chosen, device="cpu").inference_for(2) == "soft-kmeans"
    assert Separator(chosen, device="cpu").inference_for(3) == "kmeans"  # no 3-mask head: the choice cannot serve
    assert Separator(chosen, device="cpu", inference="mask").inference_for(2) == "mask"  # the user's word wins
    with pytest.raises(ValueError, match="inference"):
        Separator(plain, device="cpu", inference="softmax")


def test_head_seeded_soft_masks_follow_the_heads_speaker_order():
    torch.manual_seed(1)
    owner = torch.randint(0, 3, (2, 7, 5))  # which of 3 speakers dominates each bin
    directions = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1)
    embeddings = torch.nn.functional.normalize(directions[owner] + 0.05 * torch.randn(2, 7, 5, 4), dim=-1)
    order = torch.tensor([2, 0, 1])  # the head numbers the speakers its own way
    head = 0.8 * torch.nn.functional.one_hot(order[owner], 3).permute(0, 3, 1, 2).float() + 0.2 / 3
    valid = torch.ones(2, 7, 5, dtype=torch.bool)
    masks = head_seeded_soft_masks(embeddings, head, valid, beta=20.0)
    assert masks.shape == head.shape
    assert torch.allclose(masks.sum(1), torch.ones(2, 7, 5), atol=1e-5)
    assert torch.equal(masks.argmax(1), head.argmax(1))  # centroid k is the head's speaker k
    assert float(masks.max(1).values.min()) > float(head.max(1).values.max())  # sharper than the head here


def test_blend_inference_runs_both_heads_and_needs_a_mask_head(tmp_path, mixtures):
    torch.manual_seed(0)
    model = DeepClusteringNet(ModelConfig.preset("chimera++", hidden=8, layers=1, emb_dim=4))
    stats = FeatureStats(mean=np.full(129, -4.0), std=np.full(129, 2.0))
    url = str(tmp_path / "chimera.pt")
    save_model(url, model, stats, FeatureConfig().to_dict(), {"inference": {"2": "blend"}})
    auto = Separator(url, device="cpu", kmeans="torch")
    assert auto.inference_for(2) == "blend" and auto.heads_for(2) == {"embeddings": True, "masks": True}
    batch = auto.embed_batch(mixtures[:2], **auto.heads_for(2))
    blended, _ = auto.assign(batch, 2)
    head = batch["masks"].float()
    seeded = head_seeded_soft_masks(batch["embeddings"], head, batch["valid"], auto.soft_beta)
    assert torch.allclose(blended, 0.5 * (head + seeded), atol=1e-6)
    assert seeded.shape == head.shape and torch.allclose(seeded.sum(1), torch.ones_like(seeded[:, 0]), atol=1e-5)
    estimates = auto.separate_batch(mixtures[:2], 2)
    assert [e.shape for e in estimates] == [(2, m.size) for m in mixtures[:2]]
    with pytest.raises(ValueError, match="mask head"):
        Separator(url, device="cpu", inference="blend").inference_for(3)
