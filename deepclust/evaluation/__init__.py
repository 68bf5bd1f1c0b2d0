"""Scoring separated mixtures the way the paper reports them (Hershey et al., ICASSP 2016, sec. 4-5).

For every mixture and every system (the model's estimates, and the ideal binary / ratio masks computed
from the references of the same mixture) this computes BSS-eval v3 SDR, SIR, SAR, the SI-SDR, and the
improvements over the unprocessed mixture (SDRi, SI-SDRi), averaged over the mixture's sources. Results
can be broken down by number of speakers and same/different gender, as in the paper's Table 1.

``scoring`` scores one mixture; ``results`` scores a manifest into the results table and summarises it.
Prefect-free: a flow calls :func:`evaluate_mixtures` and writes the returned DataFrame.
"""

from deepclust.evaluation.results import ORACLES, RESULT_COLUMNS, evaluate_mixtures, gender_condition, mean_scores_by
from deepclust.evaluation.scoring import METRIC_COLUMNS, evaluate_mixture, evaluate_systems, mixture_baseline

__all__ = [
    "ORACLES",
    "METRIC_COLUMNS",
    "RESULT_COLUMNS",
    "evaluate_mixture",
    "evaluate_systems",
    "mixture_baseline",
    "evaluate_mixtures",
    "gender_condition",
    "mean_scores_by",
]
