"""Scale-invariant SDR (Le Roux, Wisdom, Erdogan & Hershey, "SDR - half-baked or well done?", ICASSP 2019).

    s_target = (<e, s> / |s|^2) s,   e_noise = e - s_target,   SI-SDR = 10 log10 |s_target|^2 / |e_noise|^2

with both signals made zero-mean first (eqs. 1-3 of the paper). Unlike BSS-eval's SDR no filter is
allowed, only a gain, so the measure cannot be inflated by filtering and is cheap to compute.
"""

from __future__ import annotations

import numpy as np

from deepclust.metrics.permutation import best_match

_EPS = np.finfo(np.float64).tiny


def _pairwise_si_sdr(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """``(K, T)``, ``(M, T)`` -> ``(M, K)`` SI-SDR of every estimate against every reference (dB)."""
    reference = reference - reference.mean(axis=-1, keepdims=True)
    estimate = estimate - estimate.mean(axis=-1, keepdims=True)
    ref_energy = np.sum(reference**2, axis=-1)  # (K,)
    est_energy = np.sum(estimate**2, axis=-1)  # (M,)
    dot = estimate @ reference.T  # (M, K)
    # |alpha s|^2 = <e,s>^2 / |s|^2 and |e - alpha s|^2 = |e|^2 - <e,s>^2 / |s|^2 (orthogonal split).
    target = dot**2 / np.maximum(ref_energy, _EPS)[None, :]
    noise = np.maximum(est_energy[:, None] - target, 0.0)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(np.maximum(target, _EPS) / noise)


def si_sdr(reference, estimate) -> float:
    """SI-SDR in dB of one estimate ``(samples,)`` against one reference ``(samples,)``."""
    reference = np.asarray(reference, dtype=np.float64).reshape(-1)
    estimate = np.asarray(estimate, dtype=np.float64).reshape(-1)
    if reference.shape != estimate.shape:
        raise ValueError(f"reference {reference.shape} and estimate {estimate.shape} lengths differ")
    return float(_pairwise_si_sdr(reference[None], estimate[None])[0, 0])


def si_sdr_best(reference, estimate) -> dict:
    """Permutation-aware SI-SDR of K estimates ``(K, T)`` against K references ``(K, T)``.

    Returns dict ``si_sdr`` ``(K,)`` per reference source and ``perm`` ``(K,)`` (estimate ``perm[j]``
    matches reference ``j``), the permutation with the largest mean SI-SDR.
    """
    reference = np.atleast_2d(np.asarray(reference, dtype=np.float64))
    estimate = np.atleast_2d(np.asarray(estimate, dtype=np.float64))
    if reference.shape != estimate.shape:
        raise ValueError(f"reference {reference.shape} and estimate {estimate.shape} shapes differ")
    scores = _pairwise_si_sdr(reference, estimate)  # (estimates, references)
    columns = np.arange(reference.shape[0])
    perm = best_match(scores.T)  # reference j takes estimate perm[j]
    return {"si_sdr": scores[perm, columns], "perm": perm}


def si_sdr_mixture(reference, mixture) -> np.ndarray:
    """SI-SDR of the mixture ``(T,)`` as the estimate of each reference ``(K, T)``: ``(K,)`` dB (SI-SDRi's baseline)."""
    reference = np.atleast_2d(np.asarray(reference, dtype=np.float64))
    mixture = np.asarray(mixture, dtype=np.float64).reshape(1, -1)
    return _pairwise_si_sdr(reference, mixture)[0]


def si_sdr_improvement(reference, estimate, mixture) -> dict:
    """``si_sdr_best`` plus ``si_sdr_mixture`` ``(K,)`` and ``si_sdri`` ``(K,)`` = SI-SDR - SI-SDR(mixture)."""
    scores = si_sdr_best(reference, estimate)
    scores["si_sdr_mixture"] = si_sdr_mixture(reference, mixture)
    scores["si_sdri"] = scores["si_sdr"] - scores["si_sdr_mixture"]
    return scores
