"""Oracle masks on real FSDD mixtures, and k-means on ideal embeddings recovering the IBM's separation."""

import numpy as np
import pytest
import torch

from deepclust.audio import read_audio
from deepclust.features.extract import compute_features
from deepclust.features.stft import StftConfig, istft, stft
from deepclust.metrics.bss_eval import bss_eval, mixture_sdr
from deepclust.separation.kmeans import kmeans_sklearn, kmeans_torch
from deepclust.separation.oracle import embeddings_from_ibm, ideal_binary_mask_estimates, ideal_ratio_mask_estimates

SPEAKERS = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]


def fsdd_mixture(fsdd_dir, k, index):
    """K utterances of K different FSDD speakers at equal power, zero-padded to the longest."""
    speakers = [SPEAKERS[(index + j * 2) % len(SPEAKERS)] for j in range(k)]
    signals = [read_audio(fsdd_dir / f"{(index + 3 * j) % 10}_{s}_{index % 50}.wav")[0] for j, s in enumerate(speakers)]
    n = max(len(s) for s in signals)
    sources = np.stack([np.pad(s / np.sqrt(np.mean(s**2)) * 0.05, (0, n - len(s))) for s in signals])
    return sources.sum(0).astype(np.float32), sources.astype(np.float32)


def sdri(sources, estimates, mixture):
    return float(np.mean(bss_eval(sources, estimates)["sdr"] - mixture_sdr(sources, mixture)))


def test_ideal_binary_mask_improves_sdr_by_more_than_10_db(fsdd_dir):
    improvements = []
    for index in range(10):
        mixture, sources = fsdd_mixture(fsdd_dir, 2, index)
        estimates = ideal_binary_mask_estimates(mixture, sources)
        assert estimates.shape == sources.shape and estimates.dtype == np.float32
        improvements.append(sdri(sources, estimates, mixture))
    assert np.mean(improvements) > 10.0, improvements
    assert min(improvements) > 6.0, improvements


def test_ratio_mask_estimates_add_up_to_the_mixture(fsdd_dir):
    mixture, sources = fsdd_mixture(fsdd_dir, 3, 4)
    estimates = ideal_ratio_mask_estimates(mixture, sources)
    assert estimates.shape == sources.shape
    np.testing.assert_allclose(estimates.sum(0), mixture, atol=1e-4)
    assert sdri(sources, estimates, mixture) > 5.0


def labels_to_estimates(mixture, labels, k, config=StftConfig()):
    spectrum = stft(torch.from_numpy(mixture), config)  # (frames, freq)
    masks = torch.stack([(labels == c) for c in range(k)]).to(torch.float32)  # (K, frames, freq)
    return istft(spectrum.unsqueeze(0) * masks, config, len(mixture)).numpy()


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("backend", ["torch", "sklearn"])
def test_kmeans_on_ideal_embeddings_matches_the_ideal_binary_mask(fsdd_dir, k, backend):
    mixture, sources = fsdd_mixture(fsdd_dir, k, 7)
    features = compute_features(mixture, sources)
    frames, freq = features["target"].shape
    embeddings = embeddings_from_ibm(features["target"], k, noise=0.15).reshape(-1, k)
    valid = features["weight"].reshape(-1) > 0
    if backend == "torch":
        labels, _ = kmeans_torch(torch.from_numpy(embeddings)[None], torch.from_numpy(valid)[None], k)
        labels = labels[0].view(frames, freq)
    else:
        valid_labels = kmeans_sklearn(embeddings[valid], k)
        centroids = np.stack([embeddings[valid][valid_labels == c].mean(0) for c in range(k)])
        labels = torch.from_numpy(((embeddings[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)).view(frames, freq)
    estimates = labels_to_estimates(mixture, labels, k)
    ibm = ideal_binary_mask_estimates(mixture, sources)
    assert abs(sdri(sources, estimates, mixture) - sdri(sources, ibm, mixture)) < 0.5


def test_embeddings_from_ibm_are_one_hot():
    target = np.array([[0, 2], [1, 1]], dtype=np.uint8)
    embeddings = embeddings_from_ibm(target, 3)
    assert embeddings.shape == (2, 2, 3)
    np.testing.assert_array_equal(embeddings.argmax(-1), target)
    np.testing.assert_array_equal(embeddings.sum(-1), 1)
