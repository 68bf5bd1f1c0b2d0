"""Oracle masks: the upper bounds the paper compares against (Hershey et al., ICASSP 2016, Table 1).

Both apply a mask computed from the true sources to the mixture STFT and resynthesise with the
mixture phase, exactly as the separator does with the masks it estimates, so the gap between a model
and the ideal binary mask measures the clustering alone.

- ideal binary mask (IBM): bin (t, f) goes to the dominant source, ``argmax_k |S_k(t, f)|`` - the
  training target of deep clustering (its ``Y``);
- ideal ratio mask (IRM): ``|S_k| / sum_j |S_j|`` (magnitude ratio).
"""

from __future__ import annotations

import numpy as np
import torch

from deepclust.features.extract import dominant_source
from deepclust.features.stft import StftConfig, istft, stft


def _spectra(mixture, sources, stft_config: StftConfig):
    mixture = np.asarray(mixture, dtype=np.float32).reshape(-1)
    sources = np.atleast_2d(np.asarray(sources, dtype=np.float32))
    if sources.shape[1] != mixture.shape[0]:
        raise ValueError(f"sources {sources.shape} and mixture ({mixture.shape[0]},) lengths differ")
    spectra = stft(torch.from_numpy(np.concatenate([mixture[None], sources])), stft_config)
    return spectra[0], spectra[1:], mixture.shape[0]  # (frames, freq), (K, frames, freq)


def _apply(mixture_spec: torch.Tensor, masks: torch.Tensor, stft_config: StftConfig, length: int) -> np.ndarray:
    """Masks ``(K, frames, freq)`` times the mixture STFT, inverse STFT with its phase -> ``(K, samples)``."""
    return istft(mixture_spec.unsqueeze(0) * masks, stft_config, length).numpy()


def ideal_binary_mask(source_magnitudes) -> torch.Tensor:
    """``(K, frames, freq)`` source magnitudes -> ``(K, frames, freq)`` float 0/1 masks (one 1 per bin)."""
    magnitudes = torch.as_tensor(source_magnitudes)
    dominant = dominant_source(magnitudes)  # ties go to the lowest index, as compute_features' target
    return torch.nn.functional.one_hot(dominant, magnitudes.shape[0]).permute(2, 0, 1).to(torch.float32)


def ideal_binary_mask_estimates(mixture, sources, stft_config: StftConfig = StftConfig()) -> np.ndarray:
    """Separate with the ideal binary mask.

    Args:
        mixture: ``(samples,)`` waveform.
        sources: ``(K, samples)`` the sources as they appear in the mixture.

    Returns:
        ``(K, samples)`` float32 estimates, in the order of ``sources``.
    """
    mixture_spec, source_specs, length = _spectra(mixture, sources, stft_config)
    return _apply(mixture_spec, ideal_binary_mask(source_specs.abs()), stft_config, length)


def ideal_ratio_mask_estimates(mixture, sources, stft_config: StftConfig = StftConfig()) -> np.ndarray:
    """Separate with the ideal ratio mask ``|S_k| / sum_j |S_j|`` (0 where all sources are silent).

    Args and returns as :func:`ideal_binary_mask_estimates`.
    """
    mixture_spec, source_specs, length = _spectra(mixture, sources, stft_config)
    magnitudes = source_specs.abs()
    total = magnitudes.sum(0, keepdim=True)
    masks = torch.where(total > 0, magnitudes / total.clamp_min(torch.finfo(total.dtype).tiny), 0.0)
    return _apply(mixture_spec, masks, stft_config, length)


def embeddings_from_ibm(target, k: int, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """Ideal embeddings: the one-hot rows of ``Y`` (Hershey et al. 2016, eq. 2's target affinity).

    Args:
        target: ``(frames, freq)`` index of the dominant source (``compute_features``'s ``target``).
        k: number of sources (embedding dimension).
        noise: standard deviation of Gaussian noise added, to make the clustering non-trivial.

    Returns:
        ``(frames, freq, k)`` float32.
    """
    target = np.asarray(target).astype(np.int64)
    embeddings = np.eye(k, dtype=np.float32)[target]
    if noise > 0:
        embeddings += np.random.default_rng(seed).normal(0.0, noise, embeddings.shape).astype(np.float32)
    return embeddings
