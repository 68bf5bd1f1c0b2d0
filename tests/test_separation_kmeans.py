"""k-means back ends: the batched torch implementation finds the partitions scikit-learn finds."""

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from deepclust.audio import read_audio
from deepclust.features.extract import compute_features
from deepclust.separation.kmeans import kmeans_sklearn, kmeans_torch
from deepclust.separation.oracle import embeddings_from_ibm


def blobs(k, n_per, dim=20, spread=6.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * spread
    points = np.concatenate([c + rng.normal(size=(n_per, dim)) for c in centres]).astype(np.float32)
    truth = np.repeat(np.arange(k), n_per)
    order = rng.permutation(len(points))
    return points[order], truth[order]


@pytest.mark.parametrize("k", [2, 3])
def test_torch_and_sklearn_find_the_true_blobs(k):
    points, truth = blobs(k, 400, seed=k)
    labels, centroids = kmeans_torch(torch.from_numpy(points)[None], None, k)
    assert labels.shape == (1, len(points)) and centroids.shape == (1, k, 20)
    assert adjusted_rand_score(truth, labels[0].numpy()) == 1.0
    assert adjusted_rand_score(truth, kmeans_sklearn(points, k)) == 1.0


def test_batch_items_with_different_valid_counts_are_clustered_independently():
    # Three utterances of different lengths padded into one batch; padding is garbage that must not
    # move the centroids, and each item must be clustered as it would be on its own.
    items = [blobs(2, n, seed=s) for n, s in [(300, 1), (120, 2), (50, 3)]]
    n_max = max(len(p) for p, _ in items)
    rng = np.random.default_rng(9)
    padded = rng.normal(size=(3, n_max, 20)).astype(np.float32) * 50  # far-away junk
    valid = np.zeros((3, n_max), bool)
    for i, (p, _) in enumerate(items):
        padded[i, : len(p)] = p
        valid[i, : len(p)] = True
    labels, _ = kmeans_torch(torch.from_numpy(padded), torch.from_numpy(valid), 2)
    for i, (p, truth) in enumerate(items):
        assert adjusted_rand_score(truth, labels[i, : len(p)].numpy()) == 1.0
        alone, _ = kmeans_torch(torch.from_numpy(p)[None], None, 2)
        assert torch.equal(alone[0], labels[i, : len(p)])
    # invalid points still get the label of their nearest centroid
    assert labels.shape == (3, n_max) and int(labels.min()) >= 0 and int(labels.max()) <= 1


def test_agreement_with_sklearn_on_embeddings_of_a_real_mixture(fsdd_dir):
    # Ideal embeddings of a real FSDD mixture (one-hot IBM rotated into 20 dimensions, plus noise):
    # the structure deep clustering is trained to produce, with realistic cluster sizes.
    a, _ = read_audio(fsdd_dir / "3_jackson_5.wav")
    b, _ = read_audio(fsdd_dir / "7_theo_12.wav")
    n = min(len(a), len(b))
    features = compute_features(a[:n] + b[:n], np.stack([a[:n], b[:n]]))
    one_hot = embeddings_from_ibm(features["target"], 2, noise=0.25).reshape(-1, 2)
    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(20, 20)))[0][:2]
    embeddings = (one_hot @ rotation).astype(np.float32)
    valid = features["weight"].reshape(-1) > 0
    sk = kmeans_sklearn(embeddings[valid], 2)
    th, _ = kmeans_torch(torch.from_numpy(embeddings)[None], torch.from_numpy(valid)[None], 2)
    assert adjusted_rand_score(sk, th[0, valid].numpy()) > 0.99


def test_empty_clusters_are_reseeded_and_seed_makes_runs_repeatable():
    # Four distinct points, many duplicates: with k = 4 every cluster must end up non-empty.
    base = np.eye(4, 20, dtype=np.float32) * 10
    points = torch.from_numpy(np.repeat(base, [200, 1, 1, 1], axis=0))[None]
    labels, centroids = kmeans_torch(points, None, 4, n_init=1)
    assert sorted(torch.bincount(labels[0], minlength=4).tolist()) == [1, 1, 1, 200]
    again, _ = kmeans_torch(points, None, 4, n_init=1)
    assert torch.equal(labels, again)


def test_item_without_valid_points_uses_all_points():
    points, truth = blobs(2, 50)
    labels, _ = kmeans_torch(torch.from_numpy(points)[None], torch.zeros(1, len(points), dtype=torch.bool), 2)
    assert adjusted_rand_score(truth, labels[0].numpy()) == 1.0


def test_sklearn_items_clustered_side_by_side_give_the_labels_of_one_at_a_time(fsdd_dir):
    """A batch's items are clustered on ``torch.get_num_threads()`` threads: the labels and centroids are
    those of one thread, item by item (real speech, the shipped model's embeddings)."""
    from deepclust import pretrained
    from deepclust.separation.separator import Separator

    names = ["0_george_0.wav", "4_lucas_17.wav", "9_nicolas_33.wav", "2_theo_8.wav"]
    signals = [read_audio(fsdd_dir / name)[0] for name in names]
    mixtures = [a[:n] + b[:n] for a, b in zip(signals, signals[1:] + signals[:1]) for n in [min(len(a), len(b))]]
    separator = Separator(pretrained.load("cpu"), device="cpu", inference="kmeans", kmeans="sklearn", precision="fp32")
    batch = separator.embed_batch(mixtures, masks=False)
    before = torch.get_num_threads()
    try:
        results = {}
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results[threads] = separator._cluster_sklearn(
                batch["embeddings"], batch["valid"].clone(), batch["frame_counts"], 2
            )
    finally:
        torch.set_num_threads(before)
    assert torch.equal(results[1][0], results[2][0]) and torch.equal(results[1][1], results[2][1])
