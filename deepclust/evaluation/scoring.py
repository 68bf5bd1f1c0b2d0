"""One mixture's scores: BSS-eval v3 SDR, SIR, SAR and the SI-SDR of each system's estimates, and their
improvements over the unprocessed mixture (SDRi, SI-SDRi)."""

from __future__ import annotations

import numpy as np

from deepclust.metrics.bss_eval import bss_eval, bss_eval_systems, mixture_sdr
from deepclust.metrics.si_sdr import si_sdr_best, si_sdr_mixture

METRIC_COLUMNS = ["sdr", "sir", "sar", "si_sdr", "sdr_mixture", "si_sdr_mixture", "sdri", "si_sdri"]


def evaluate_mixture(
    mixture, sources, estimates, sr: int | None = None, backend: str = "fast", baseline: dict | None = None
) -> dict:
    """Score K estimates of one mixture against its K sources.

    Args:
        mixture: ``(samples,)`` the mixture (the baseline estimate for the improvements).
        sources: ``(K, samples)`` references.
        estimates: ``(K, samples)`` estimates in any order (the permutation is found, as mir_eval does,
            by the largest mean SIR; SI-SDR uses its own best permutation).
        sr: sample rate; unused by the measures, kept so callers record what they scored.
        backend: BSS-eval back end, "fast" or "mir_eval".
        baseline: the mixture's ``{"sdr_mixture", "si_sdr_mixture"}`` if already computed.

    Returns:
        dict of per-source arrays ``(K,)`` in reference order: ``sdr, sir, sar, perm, si_sdr,
        sdr_mixture, si_sdr_mixture, sdri, si_sdri``.
    """
    return evaluate_systems(mixture, sources, [estimates], backend, baseline)[0]


def evaluate_systems(
    mixture, sources, estimate_sets, backend: str = "fast", baseline: dict | None = None
) -> list[dict]:
    """``evaluate_mixture`` for several systems' estimates of one mixture (one shared BSS-eval solve)."""
    sources = np.atleast_2d(np.asarray(sources, dtype=np.float64))
    mixture = np.asarray(mixture, dtype=np.float64).reshape(-1)
    sets = [np.atleast_2d(np.asarray(e, dtype=np.float64)) for e in estimate_sets]
    for estimates in sets:
        if estimates.shape != sources.shape or mixture.shape[0] != sources.shape[1]:
            raise ValueError(
                f"shapes differ: mixture {mixture.shape}, sources {sources.shape}, estimates {estimates.shape}"
            )
    if backend == "fast":
        bss, sdr_mixture = bss_eval_systems(sources, sets, mixture if baseline is None else None)
        if baseline is None:
            baseline = {"sdr_mixture": sdr_mixture, "si_sdr_mixture": si_sdr_mixture(sources, mixture)}
    else:
        bss = [bss_eval(sources, estimates, backend=backend) for estimates in sets]
        baseline = baseline or mixture_baseline(mixture, sources, backend)
    results = []
    for estimates, scores in zip(sets, bss):
        scale_invariant = si_sdr_best(sources, estimates)
        results.append(
            {
                **scores,
                "si_sdr": scale_invariant["si_sdr"],
                "sdr_mixture": baseline["sdr_mixture"],
                "si_sdr_mixture": baseline["si_sdr_mixture"],
                "sdri": scores["sdr"] - baseline["sdr_mixture"],
                "si_sdri": scale_invariant["si_sdr"] - baseline["si_sdr_mixture"],
            }
        )
    return results


def mixture_baseline(mixture, sources, backend: str = "fast") -> dict:
    """SDR and SI-SDR of the mixture as the estimate of each source, ``(K,)`` each."""
    return {"sdr_mixture": mixture_sdr(sources, mixture, backend), "si_sdr_mixture": si_sdr_mixture(sources, mixture)}
