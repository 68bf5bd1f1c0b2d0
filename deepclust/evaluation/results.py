"""The results table of an evaluation: every mixture of a manifest scored for every system (the model's
estimates and the oracle masks), one row per (mixture, system), and its summary by condition."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from deepclust.audio import read_audio
from deepclust.evaluation.scoring import METRIC_COLUMNS, evaluate_mixture, evaluate_systems
from deepclust.faults.errors import BadAudioError
from deepclust.features.stft import StftConfig
from deepclust.separation.oracle import ideal_binary_mask_estimates, ideal_ratio_mask_estimates
from deepclust.storage.manifests import SCHEMAS

log = logging.getLogger(__name__)

ORACLES = {"ibm": ideal_binary_mask_estimates, "irm": ideal_ratio_mask_estimates}
RESULT_COLUMNS = SCHEMAS["evaluate"].required  # the results table's columns (deepclust.storage.manifests)


def gender_condition(genders) -> str | None:
    """ "same" when all speakers share a known gender, "different" when they differ, else None."""
    known = [g for g in (genders if genders is not None else []) if isinstance(g, str) and g]
    if len(known) < 2 or len(known) != len(list(genders)):
        return None
    return "same" if len(set(known)) == 1 else "different"


def list_cell(value) -> list:
    """A list-valued manifest cell as a list (a missing cell, None or NaN, as an empty one)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return list(value)


def _read_set(paths, sample_rate, length, what: str) -> np.ndarray:
    signals = []
    for path in paths:
        signal, _ = read_audio(path, target_sr=sample_rate)
        if length is not None and signal.shape[0] != length:
            raise BadAudioError(path, f"{what} has {signal.shape[0]} samples, the mixture {length}")
        signals.append(signal)
    return np.stack(signals)


def _row_info(row: Mapping) -> dict:
    genders = list_cell(row.get("genders"))
    source_paths = list_cell(row.get("source_paths"))
    num_speakers = row.get("num_speakers")
    if num_speakers is None or (isinstance(num_speakers, float) and math.isnan(num_speakers)):
        num_speakers = len(source_paths)
    return {
        "mixture_id": str(row["mixture_id"]),
        "split": row.get("split"),
        "num_speakers": int(num_speakers),
        "speakers": [str(s) for s in list_cell(row.get("speakers"))],
        "genders": [None if g is None else str(g) for g in genders],
        "gender_condition": gender_condition(genders),
    }


def _result_row(info: dict, system: str, scores: dict | None = None, error: str = "") -> dict:
    row = {**info, "system": system, "status": "done" if scores is not None else "failed", "error": error}
    for column in METRIC_COLUMNS:
        # Means over the mixture's sources, the figure the paper reports per mixture.
        row[column] = float(np.mean(scores[column])) if scores is not None else float("nan")
    return row


def evaluate_mixtures(
    mixture_manifest: pd.DataFrame,
    estimate_paths: Mapping[str, Sequence[str]] | None = None,
    separator_name: str = "model",
    oracles: Sequence[str] = ("ibm", "irm"),
    backend: str = "fast",
    stft_config: StftConfig | None = None,
) -> pd.DataFrame:
    """Score a test set: one row per (mixture, system).

    Args:
        mixture_manifest: rows with ``mixture_id, mixture_path, source_paths, speakers, genders,
            num_speakers, split`` (and optionally ``sample_rate``; else the mixture file's rate).
        estimate_paths: ``{mixture_id: [estimate path per source]}`` written by the separator; None
            scores the oracles only. A mixture missing from it gets a failed row for the system.
        separator_name: the ``system`` value of the estimates' rows.
        oracles: any of "ibm", "irm": masks computed from the references of the same mixture.
        backend: BSS-eval back end, "fast" or "mir_eval".
        stft_config: STFT of the oracle masks; default the paper's 32 ms / 8 ms at the mixture's rate.

    Returns:
        DataFrame with ``RESULT_COLUMNS``: ``mixture_id, split, system, num_speakers, speakers, genders,
        gender_condition, sdr, sir, sar, si_sdr, sdr_mixture, si_sdr_mixture, sdri, si_sdri`` (means
        over the sources, dB), ``status`` ("done"/"failed") and ``error``. A mixture that cannot be read
        gets failed rows (NaN scores, the reason in ``error``) and the others go on.
    """
    # One BLAS thread: evaluation is parallel across mixtures (units, processes), and OpenBLAS's own
    # threads measured 7-20x slower on the Gram solves when the cores are already busy.
    with threadpool_limits(limits=1, user_api="blas"):
        return _evaluate_mixtures(mixture_manifest, estimate_paths, separator_name, oracles, backend, stft_config)


def _evaluate_mixtures(mixture_manifest, estimate_paths, separator_name, oracles, backend, stft_config):
    unknown = [name for name in oracles if name not in ORACLES]
    if unknown:
        raise ValueError(f"unknown oracle(s) {unknown}: choose from {sorted(ORACLES)}")
    systems = ([separator_name] if estimate_paths is not None else []) + list(oracles)
    rows = []
    for record in mixture_manifest.to_dict("records"):
        info = _row_info(record)
        try:
            sample_rate = record.get("sample_rate")
            sample_rate = None if sample_rate is None or pd.isna(sample_rate) else int(sample_rate)
            mixture, sr = read_audio(record["mixture_path"], target_sr=sample_rate)
            sources = _read_set(list_cell(record["source_paths"]), sr, mixture.shape[0], "source")
        except (BadAudioError, ValueError, OSError) as error:
            log.warning("cannot evaluate mixture %s: %s", info["mixture_id"], error)
            rows.extend(_result_row(info, system, error=str(error)) for system in systems)
            continue
        config = stft_config or StftConfig(sample_rate=sr)
        gathered = {}
        for system in systems:
            try:
                if system in ORACLES and system != separator_name:
                    gathered[system] = ORACLES[system](mixture, sources, config)
                else:
                    paths = estimate_paths.get(info["mixture_id"]) if estimate_paths is not None else None
                    if not paths:
                        raise ValueError(f"no estimates for mixture {info['mixture_id']}")
                    gathered[system] = _read_set(list_cell(paths), sr, mixture.shape[0], "estimate")
            except (BadAudioError, ValueError, OSError) as error:
                log.warning("cannot evaluate %s on mixture %s: %s", system, info["mixture_id"], error)
                rows.append(_result_row(info, system, error=str(error)))
        scored = _score_systems(mixture, sources, gathered, backend, info)
        rows.extend(_result_row(info, system, scores, error) for system, (scores, error) in scored.items())
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def _score_systems(mixture, sources, gathered: dict, backend: str, info: dict) -> dict:
    """``{system: (scores or None, error)}``: all systems at once, or one by one if that fails."""
    try:
        scores = evaluate_systems(mixture, sources, list(gathered.values()), backend)
        return {system: (s, "") for system, s in zip(gathered, scores)}
    except ValueError:
        # One bad estimate set (e.g. all zeros) must not fail the others: score them separately.
        out = {}
        for system, estimates in gathered.items():
            try:
                out[system] = (evaluate_mixture(mixture, sources, estimates, backend=backend), "")
            except ValueError as error:
                log.warning("cannot evaluate %s on mixture %s: %s", system, info["mixture_id"], error)
                out[system] = (None, str(error))
        return out


def mean_scores_by(
    results: pd.DataFrame, by: Sequence[str] = ("system", "num_speakers", "gender_condition")
) -> pd.DataFrame:
    """Mean scores of the successful rows per group (the layout of the paper's Table 1), with counts.
    (``deepclust.reports.summary.summarise_by_condition`` is the recipe report's table: means and medians per
    speaker condition, with the paper's figures.)"""
    ok = results[results["status"] == "done"]
    keys = list(by)
    grouped = ok.groupby(keys, dropna=False)[METRIC_COLUMNS]
    summary = grouped.mean()
    summary["mixtures"] = grouped.size()
    return summary.reset_index()
