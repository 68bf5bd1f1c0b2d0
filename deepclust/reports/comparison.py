"""Runs judged against each other: the regression check of a new run against the best earlier run of the same
recipe on the same corpus (``find_regression``, over the history of ``deepclust.reports.history``), and two runs
side by side (``compare_runs``, ``deepclust compare``).

A run regresses when its two-speaker open-condition SDRi falls more than ``margin_db`` below the best earlier run
of the same recipe (``config_fingerprint``) on the same corpus; time-capped runs neither set nor fail the bar.
"""

from __future__ import annotations

import pandas as pd

from deepclust import storage

# How far below the best earlier run a run may fall before it counts as a regression, in dB of SDRi: every
# margin default (find_regression, the recipe, the Prefect flow, the command line) is this one.
REGRESSION_MARGIN_DB = 0.5


def find_regression(
    history: pd.DataFrame, row: dict, margin_db: float = REGRESSION_MARGIN_DB, metric: str = "sdri_2spk_open"
) -> dict | None:
    """The best earlier run of the same recipe and corpus, when ``row`` is more than ``margin_db`` below it.

    Time-capped runs are not the recipe's result, so they neither set nor fail the bar.
    Returns ``dict(best_run_id, best_run_root, best, current, drop, message)`` or None.
    """
    if history.empty or metric not in history or row.get(metric) is None or row.get("time_capped"):
        return None
    earlier = history[
        (history["config_fingerprint"] == row["config_fingerprint"])
        & (history["corpus"] == row["corpus"])
        & (history["run_id"] != row["run_id"])
    ]
    if "time_capped" in earlier:
        earlier = earlier[~earlier["time_capped"].fillna(False).astype(bool)]
    earlier = earlier.dropna(subset=[metric])
    if earlier.empty:
        return None
    best = earlier.loc[earlier[metric].idxmax()]
    drop = float(best[metric]) - float(row[metric])
    if drop <= margin_db:
        return None
    return {
        "best_run_id": best["run_id"],
        "best_run_root": best["run_root"],
        "best": float(best[metric]),
        "current": float(row[metric]),
        "drop": drop,
        "message": (
            f"quality regression: run {row['run_id']} ({row['run_root']}) scores {row[metric]:.2f} dB "
            f"{metric}, {drop:.2f} dB below run {best['run_id']} ({best['run_root']}, "
            f"{float(best[metric]):.2f} dB) of the same config {row['config_fingerprint']} on "
            f"{row['corpus']} (margin {margin_db} dB)"
        ),
    }


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        out = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def _run_record(run: str) -> dict:
    url = run if str(run).endswith(".json") else storage.join(run, "run.json")
    if not storage.exists(url):
        raise FileNotFoundError(f"{run}: no run.json (give a run root or its run.json)")
    return storage.read_json(url)


def _asked(record: dict) -> str:
    """`` (preset paper, --set train.max_epochs=20)``: what a run asked for, where its run.json records it."""
    config = record.get("config") or {}
    preset, overrides = config.get("preset"), config.get("overrides") or []
    if not preset:
        return ""
    return f" (preset {preset}" + "".join(f", --set {text}" for text in overrides) + ")"


def compare_runs(run_a: str, run_b: str) -> dict:
    """Config differences and per-condition results of two runs (run roots or run.json URLs).

    Returns ``dict(config_diff: DataFrame[key, a, b], results: DataFrame[speakers, condition, system, a, b,
    difference], markdown: str)``.
    """
    record_a, record_b = _run_record(run_a), _run_record(run_b)
    flat_a, flat_b = _flatten(record_a.get("config", {})), _flatten(record_b.get("config", {}))
    diff = [
        {"key": k, "a": flat_a.get(k), "b": flat_b.get(k)}
        for k in sorted(set(flat_a) | set(flat_b))
        if flat_a.get(k) != flat_b.get(k)
    ]
    config_diff = pd.DataFrame(diff, columns=["key", "a", "b"])

    def overall(record):
        summary = storage.read_parquet(record["summary"])
        summary = summary[summary["gender_condition"] == "all"]
        return summary.set_index(["num_speakers", "condition", "system"])[["sdri_mean", "si_sdri_mean"]]

    joined = (
        overall(record_a)
        .merge(overall(record_b), left_index=True, right_index=True, how="outer", suffixes=("_a", "_b"))
        .reset_index()
    )
    results = pd.DataFrame(
        {
            "speakers": joined["num_speakers"],
            "condition": joined["condition"],
            "system": joined["system"],
            "SDRi a": joined["sdri_mean_a"],
            "SDRi b": joined["sdri_mean_b"],
            "SDRi b - a": joined["sdri_mean_b"] - joined["sdri_mean_a"],
            "SI-SDRi a": joined["si_sdri_mean_a"],
            "SI-SDRi b": joined["si_sdri_mean_b"],
        }
    )
    from deepclust.reports.summary import markdown_table

    markdown = (
        f"## Compare\n\n- a: {record_a.get('run_root')}{_asked(record_a)}\n"
        f"- b: {record_b.get('run_root')}{_asked(record_b)}\n\n"
        f"### Config differences\n\n"
        + (markdown_table(config_diff) if len(config_diff) else "(same config)")
        + "\n\n### Results (mean over mixtures)\n\n"
        + markdown_table(results)
    )
    return {"config_diff": config_diff, "results": results, "markdown": markdown}
