"""The low-rank deep clustering loss equals the explicit affinity form (Hershey et al. 2016, Eq. 3)."""

import pytest
import torch

from deepclust.model.loss import deep_clustering_loss


def affinity_loss(embeddings, targets, weights, n_sources):
    """|W^1/2 (V V^T - Y Y^T) W^1/2|_F^2 / (sum w)^2 per utterance, forming the N x N matrices."""
    losses = []
    for v, t, w in zip(embeddings, targets, weights):
        y = torch.nn.functional.one_hot(t, n_sources).to(v.dtype)
        root = w.sqrt()
        difference = root[:, None] * (v @ v.T - y @ y.T) * root[None, :]
        losses.append(difference.square().sum() / w.sum() ** 2)
    return torch.stack(losses).mean()


def random_case(seed, batch=3, n=50, dim=6, n_sources=3, weighted=True):
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(batch, n, dim, generator=generator, dtype=torch.float64)
    embeddings = torch.nn.functional.normalize(embeddings, dim=-1)
    targets = torch.randint(0, n_sources, (batch, n), generator=generator)
    if weighted:
        weights = (torch.rand(batch, n, generator=generator, dtype=torch.float64) > 0.3).to(torch.float64)
    else:
        weights = torch.ones(batch, n, dtype=torch.float64)
    return embeddings, targets, weights


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_low_rank_form_equals_affinity_form(seed, weighted):
    embeddings, targets, weights = random_case(seed, weighted=weighted)
    expected = affinity_loss(embeddings, targets, weights, 3)
    got = deep_clustering_loss(embeddings, targets, weights if weighted else None, 3)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=0)


def test_non_binary_weights_match_affinity_form():
    embeddings, targets, _ = random_case(3)
    weights = torch.rand(targets.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    expected = affinity_loss(embeddings, targets, weights, 3)
    torch.testing.assert_close(deep_clustering_loss(embeddings, targets, weights, 3), expected, rtol=1e-10, atol=0)


def test_zero_when_embeddings_are_the_one_hot_targets():
    targets = torch.randint(0, 2, (2, 40), generator=torch.Generator().manual_seed(0))
    embeddings = torch.nn.functional.one_hot(targets, 2).to(torch.float64)
    weights = (torch.rand(2, 40, generator=torch.Generator().manual_seed(1)) > 0.5).double()
    assert deep_clustering_loss(embeddings, targets, weights, 2).item() == 0.0
    assert deep_clustering_loss(embeddings, targets, None, 2).item() == 0.0


def test_all_silent_utterance_contributes_zero_not_nan():
    embeddings, targets, weights = random_case(4, batch=2)
    weights[1] = 0
    loss = deep_clustering_loss(embeddings, targets, weights, 3)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, affinity_loss(embeddings[:1], targets[:1], weights[:1], 3) / 2, rtol=1e-10, atol=0)


def test_gradient_matches_finite_differences():
    embeddings, targets, weights = random_case(5, batch=2, n=7, dim=3, n_sources=2)
    embeddings.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: deep_clustering_loss(v, targets, weights, 2), (embeddings,))


def test_float32_under_autocast():
    embeddings, targets, weights = random_case(6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = deep_clustering_loss(embeddings.to(torch.bfloat16), targets, weights, 3)
    assert loss.dtype == torch.float32
