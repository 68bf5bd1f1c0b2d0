"""Separation quality: BSS-eval v3 (SDR, SIR, SAR) and scale-invariant SDR, with improvements over the mixture."""

from deepclust.metrics.bss_eval import bss_eval, mixture_sdr, pairwise_criteria, sdr_improvement
from deepclust.metrics.si_sdr import si_sdr, si_sdr_best, si_sdr_improvement, si_sdr_mixture

__all__ = [
    "bss_eval",
    "mixture_sdr",
    "pairwise_criteria",
    "sdr_improvement",
    "si_sdr",
    "si_sdr_best",
    "si_sdr_improvement",
    "si_sdr_mixture",
]
