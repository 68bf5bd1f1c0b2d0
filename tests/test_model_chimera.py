"""Chimera++ (Wang, Le Roux, Hershey, ICASSP 2018): the two-headed network and its two objectives."""

import itertools

import pytest
import torch
from torch.nn import functional as F

from deepclust.model.blstm import DeepClusteringNet, ModelConfig
from deepclust.model.chimera_loss import mask_inference_loss, phase_sensitive_targets, whitened_deep_clustering_loss


def _textbook_whitened(v, y):
    """|V (V^T V)^-1/2 - Y (Y^T Y)^-1 Y^T V (V^T V)^-1/2|_F^2, minus its floor D - C, over C (Eq. 6)."""
    values, vectors = torch.linalg.eigh(v.T @ v)
    inverse_root = vectors @ torch.diag(values**-0.5) @ vectors.T
    residual = v @ inverse_root - y @ torch.linalg.inv(y.T @ y) @ y.T @ v @ inverse_root
    return ((residual**2).sum() - (v.shape[1] - y.shape[1])) / y.shape[1]


def test_whitened_loss_equals_the_textbook_form_with_weights():
    generator = torch.Generator().manual_seed(0)
    embeddings = F.normalize(torch.randn(3, 60, 6, dtype=torch.float64, generator=generator), dim=-1)
    targets = torch.randint(0, 3, (3, 60), generator=generator)
    weights = (torch.rand(3, 60, generator=generator) > 0.3).double()
    fast = whitened_deep_clustering_loss(embeddings, targets, weights, 3, eps=0.0)
    slow = []
    for b in range(3):
        keep = weights[b] > 0
        slow.append(_textbook_whitened(embeddings[b][keep], F.one_hot(targets[b][keep], 3).double()))
    assert fast.item() == pytest.approx(torch.stack(slow).mean().item(), abs=1e-10)


def test_whitened_loss_is_zero_for_embeddings_that_span_the_sources_and_large_for_noise():
    targets = torch.randint(0, 2, (2, 200), generator=torch.Generator().manual_seed(1))
    perfect = torch.cat([F.one_hot(targets, 2).double(), torch.zeros(2, 200, 4, dtype=torch.float64)], -1)
    assert whitened_deep_clustering_loss(perfect, targets, None, 2).item() == pytest.approx(0.0, abs=1e-6)
    noise = F.normalize(torch.randn(2, 200, 6, dtype=torch.float64), dim=-1)
    assert whitened_deep_clustering_loss(noise, targets, None, 2).item() > 0.5


def test_whitened_loss_names_the_expected_shape():
    with pytest.raises(ValueError, match=r"\(batch, N, D\)"):
        whitened_deep_clustering_loss(torch.zeros(10, 4), torch.zeros(10, dtype=torch.long), None, 2)


def _spectra(generator, *shape):
    return torch.complex(torch.randn(*shape, generator=generator), torch.randn(*shape, generator=generator))


def test_phase_sensitive_targets_are_truncated_to_zero_and_the_mixture_magnitude():
    generator = torch.Generator().manual_seed(2)
    sources = _spectra(generator, 2, 2, 30, 9)
    mixture = sources.sum(1)
    targets = phase_sensitive_targets(mixture, sources)
    assert targets.shape == (2, 2, 30, 9)
    assert (targets >= 0).all() and (targets <= mixture.abs().unsqueeze(1) + 1e-6).all()
    # A source alone in the mixture is its own target: |S| cos(0) = |X|.
    alone = phase_sensitive_targets(sources[:, 0], sources[:, :1])
    assert torch.allclose(alone[:, 0], sources[:, 0].abs(), atol=1e-5)


def test_mask_loss_is_permutation_invariant_and_zero_for_the_ideal_masks():
    generator = torch.Generator().manual_seed(3)
    sources = _spectra(generator, 2, 3, 20, 9)
    mixture = sources.sum(1)
    targets = phase_sensitive_targets(mixture, sources)
    ideal = targets / mixture.abs().unsqueeze(1).clamp_min(1e-8)
    assert mask_inference_loss(ideal, mixture.abs(), targets).item() == pytest.approx(0.0, abs=1e-6)
    masks = torch.rand(2, 3, 20, 9, generator=generator)
    losses = {
        mask_inference_loss(masks[:, list(order)], mixture.abs(), targets).item()
        for order in itertools.permutations(range(3))
    }
    # Every ordering of the same masks is matched to the targets the same best way.
    assert max(losses) - min(losses) < 1e-6
    assert min(losses) > 0.05


def test_chimera_network_has_both_heads_and_skips_the_embeddings_when_asked():
    model = DeepClusteringNet(ModelConfig.preset("chimera++", hidden=16, layers=1, emb_dim=5)).eval()
    features = torch.randn(2, 12, 129)
    outputs = model(features, heads=True)
    assert outputs["embeddings"].shape == (2, 12, 129, 5)
    assert outputs["masks"].shape == (2, 2, 12, 129)
    assert (outputs["masks"] >= 0).all() and (outputs["masks"] <= 1).all()
    masks_only = model(features, heads=True, embeddings=False)
    assert "embeddings" not in masks_only and torch.equal(masks_only["masks"], outputs["masks"])
    assert torch.equal(model(features), outputs["embeddings"])  # the plain call is unchanged


def test_paper_network_has_no_mask_head():
    outputs = DeepClusteringNet(ModelConfig.preset("paper", hidden=8, layers=1))(torch.randn(1, 5, 129), heads=True)
    assert set(outputs) == {"embeddings"}


def _whitened_by_autograd(embeddings, targets, weights, n_sources, eps=1e-6):
    """The whitened loss as plain autograd sees it: the reference for the written-out gradient."""
    one_hot = F.one_hot(targets, n_sources).to(embeddings.dtype)
    root = weights.sqrt().unsqueeze(-1)
    v, y = embeddings * root, one_hot * root
    vtv = v.transpose(1, 2) @ v + eps * torch.eye(v.shape[-1], dtype=v.dtype)
    vty = v.transpose(1, 2) @ y
    counts = y.sum(1)
    present = (counts > 0).to(v.dtype)
    trace = (torch.linalg.solve(vtv, vty) * vty).sum(1) * present / counts.clamp_min(eps)
    return (1.0 - trace.sum(1) / present.sum(1).clamp_min(1)).mean()


def test_whitened_loss_gradient_matches_autograd_and_finite_differences():
    generator = torch.Generator().manual_seed(3)
    raw = torch.randn(3, 80, 5, dtype=torch.float64, generator=generator)
    targets = torch.randint(0, 3, (3, 80), generator=generator)
    targets[2] = targets[2].clamp(max=1)  # one utterance lacks a source: it must not count in its C
    weights = (torch.rand(3, 80, generator=generator) > 0.25).double()
    ours = raw.clone().requires_grad_()
    loss = whitened_deep_clustering_loss(F.normalize(ours, dim=-1), targets, weights, 3)
    loss.backward()
    reference = raw.clone().requires_grad_()
    expected = _whitened_by_autograd(F.normalize(reference, dim=-1), targets, weights, 3)
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-12)
    assert torch.allclose(ours.grad, reference.grad, atol=1e-10)
    torch.autograd.gradcheck(
        lambda e: whitened_deep_clustering_loss(e, targets, weights, 3), (F.normalize(raw, dim=-1).requires_grad_(),)
    )
