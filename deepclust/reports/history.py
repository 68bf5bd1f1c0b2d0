"""Run history: one row per ``reproduce`` run, a regression check against earlier runs, and run comparison.

The history is a Parquet table at a URL the user chooses (default ``{run_root}/../history.parquet``, so
runs that share a parent folder share a history). A row holds when, which code (git commit or package
version), which recipe (``config_fingerprint``: the config without where/how-fast settings), which corpus,
which machine, stage times and the headline figures. A run regresses when its two-speaker open-condition
SDRi falls more than ``margin_db`` below the best earlier run of the same recipe on the same corpus.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from deepclust import storage

# Where or how fast a run goes, not what it computes: runs differing only in these are one recipe.
_EXECUTION_ONLY = {"run_root", "device", "num_threads", "unit_size", "batch_size_separate", "max_workers",
                   "task_runner", "prefetch_batches"}


def _recipe_view(config: dict) -> dict:
    view = {k: v for k, v in config.items() if k not in _EXECUTION_ONLY}
    if isinstance(view.get("separate"), dict):  # separation batch size changes speed, not results
        view["separate"] = {k: v for k, v in view["separate"].items() if k not in ("batch_size", "device", "unit_size")}
    for name in ("train", "evaluate"):
        if isinstance(view.get(name), dict):
            view[name] = {k: v for k, v in view[name].items() if k not in _EXECUTION_ONLY}
    return view


def config_fingerprint(config: dict) -> str:
    """16 hex digits of the recipe: the run config minus execution-only settings."""
    text = json.dumps(_recipe_view(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def code_version() -> str:
    """``git:<commit>[+dirty]`` when deepclust runs from a git checkout, else ``deepclust <version>``."""
    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"git:{commit}{'+dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"deepclust {version('deepclust')}"
        except PackageNotFoundError:
            return "unknown"


def corpus_label(config: dict) -> str:
    """Which corpus a run config used: ``name:root``, or ``sources:`` and its sorted source list."""
    corpus = config.get("corpus") or {}
    if corpus.get("name") == "sources":
        return "sources:" + ",".join(sorted(corpus.get("sources") or []))
    return f"{corpus.get('name')}:{corpus.get('root') or ''}"


def headline_figures(summary: pd.DataFrame) -> dict:
    """``{"sdri_2spk_open": .., "si_sdri_2spk_open": .., "ibm_2spk_open": .., ...}`` from a summary table."""
    figures = {}
    overall = summary[summary["gender_condition"] == "all"]
    for row in overall.itertuples():
        key = f"{int(row.num_speakers)}spk_{row.condition}"
        prefix = {"model": "", "ibm": "ibm_", "irm": "irm_"}.get(row.system)
        if prefix is None:
            continue
        figures[f"{prefix}sdri_{key}"] = float(row.sdri_mean)
        if row.system == "model" and not pd.isna(getattr(row, "si_sdri_mean", np.nan)):
            figures[f"si_sdri_{key}"] = float(row.si_sdri_mean)
    return figures


def history_row(record: dict, summary: pd.DataFrame, stage_seconds: dict | None = None) -> dict:
    """One history row for a finished run (``record``: the run.json dict)."""
    import torch

    config = record.get("config") or {}
    device = config.get("train", {}).get("device", "auto")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    machine = f"{platform.node()} ({platform.machine()}, {device}"
    if device.startswith("cuda") and torch.cuda.is_available():
        machine += f": {torch.cuda.get_device_name(0)}"
    return {
        "run_id": f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{storage.unique_suffix()[:6]}",
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "run_root": record.get("run_root"),
        "run_json": record.get("run_json"),
        "code_version": code_version(),
        "config_fingerprint": config_fingerprint(config),
        "corpus": corpus_label(config),
        "machine": machine + ")",
        "seconds": float(record.get("seconds") or 0.0),
        "stage_seconds": json.dumps(stage_seconds or {}, sort_keys=True),
        "time_capped": bool((record.get("training") or {}).get("time_capped")),
        **headline_figures(summary),
    }


def default_history_url(run_root: str) -> str:
    """``history.parquet`` beside the run folder, so that runs under one parent folder share a history."""
    return storage.join(storage.parent(storage.absolute(run_root).rstrip("/")), "history.parquet")


def read_history(url: str) -> pd.DataFrame:
    """The history table at ``url``; empty when there is none yet."""
    return storage.read_parquet(url) if storage.exists(url) else pd.DataFrame()


def append_history(url: str, row: dict) -> pd.DataFrame:
    """Append ``row`` to the table at ``url`` (created if absent); returns the whole history."""
    history = pd.concat([read_history(url), pd.DataFrame([row])], ignore_index=True)
    storage.write_parquet(history, url)
    return history


def find_regression(history: pd.DataFrame, row: dict, margin_db: float = 0.5,
                    metric: str = "sdri_2spk_open") -> dict | None:
    """The best earlier run of the same recipe and corpus, when ``row`` is more than ``margin_db`` below it.

    Time-capped runs are not the recipe's result, so they neither set nor fail the bar.
    Returns ``dict(best_run_id, best_run_root, best, current, drop, message)`` or None.
    """
    if history.empty or metric not in history or row.get(metric) is None or row.get("time_capped"):
        return None
    earlier = history[(history["config_fingerprint"] == row["config_fingerprint"])
                      & (history["corpus"] == row["corpus"]) & (history["run_id"] != row["run_id"])]
    if "time_capped" in earlier:
        earlier = earlier[~earlier["time_capped"].fillna(False).astype(bool)]
    earlier = earlier.dropna(subset=[metric])
    if earlier.empty:
        return None
    best = earlier.loc[earlier[metric].idxmax()]
    drop = float(best[metric]) - float(row[metric])
    if drop <= margin_db:
        return None
    return {"best_run_id": best["run_id"], "best_run_root": best["run_root"], "best": float(best[metric]),
            "current": float(row[metric]), "drop": drop,
            "message": (f"quality regression: run {row['run_id']} ({row['run_root']}) scores {row[metric]:.2f} dB "
                        f"{metric}, {drop:.2f} dB below run {best['run_id']} ({best['run_root']}, "
                        f"{float(best[metric]):.2f} dB) of the same config {row['config_fingerprint']} on "
                        f"{row['corpus']} (margin {margin_db} dB)")}


def trend_markdown(history: pd.DataFrame, config_fingerprint_value: str | None = None) -> str:
    """The history as a Markdown table (newest last), optionally one recipe's runs only."""
    if history.empty:
        return "(no runs yet)"
    table = history if config_fingerprint_value is None else history[history["config_fingerprint"] == config_fingerprint_value]
    columns = [c for c in ("finished_at", "run_id", "code_version", "config_fingerprint", "machine",
                           "sdri_2spk_open", "si_sdri_2spk_open", "ibm_sdri_2spk_open", "sdri_3spk_open",
                           "time_capped", "seconds") if c in table]
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    for row in table[columns].itertuples(index=False):
        lines.append("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


def plot_trend(history: pd.DataFrame, out_url: str, metric: str = "sdri_2spk_open") -> str | None:
    """PNG of ``metric`` per run over time, the IBM ceiling as a line; returns its URL (None if no data)."""
    if history.empty or metric not in history:
        return None
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = pd.to_datetime(history["finished_at"])
    figure, axes = plt.subplots(figsize=(6, 3))
    axes.plot(times, history[metric], "o-", label="model SDRi (2 speakers, open)")
    ibm = f"ibm_{metric}"
    if ibm in history:
        axes.plot(times, history[ibm], "--", color="gray", label="IBM ceiling")
    axes.set_ylabel("dB")
    axes.legend(loc="lower right", fontsize=8)
    figure.autofmt_xdate()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    storage.write_bytes_atomic(out_url, buffer.getvalue())
    return out_url


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


def compare_runs(run_a: str, run_b: str) -> dict:
    """Config differences and per-condition results of two runs (run roots or run.json URLs).

    Returns ``dict(config_diff: DataFrame[key, a, b], results: DataFrame[speakers, condition, system, a, b,
    difference], markdown: str)``.
    """
    record_a, record_b = _run_record(run_a), _run_record(run_b)
    flat_a, flat_b = _flatten(record_a.get("config", {})), _flatten(record_b.get("config", {}))
    diff = [{"key": k, "a": flat_a.get(k), "b": flat_b.get(k)} for k in sorted(set(flat_a) | set(flat_b))
            if flat_a.get(k) != flat_b.get(k)]
    config_diff = pd.DataFrame(diff, columns=["key", "a", "b"])

    def overall(record):
        summary = storage.read_parquet(record["summary"])
        summary = summary[summary["gender_condition"] == "all"]
        return summary.set_index(["num_speakers", "condition", "system"])[["sdri_mean", "si_sdri_mean"]]

    joined = overall(record_a).merge(overall(record_b), left_index=True, right_index=True, how="outer",
                                     suffixes=("_a", "_b")).reset_index()
    results = pd.DataFrame({
        "speakers": joined["num_speakers"], "condition": joined["condition"], "system": joined["system"],
        "SDRi a": joined["sdri_mean_a"], "SDRi b": joined["sdri_mean_b"],
        "SDRi b - a": joined["sdri_mean_b"] - joined["sdri_mean_a"],
        "SI-SDRi a": joined["si_sdri_mean_a"], "SI-SDRi b": joined["si_sdri_mean_b"],
    })
    from deepclust.reports.summary import markdown_table

    markdown = (f"## Compare\n\n- a: {record_a.get('run_root')}\n- b: {record_b.get('run_root')}\n\n"
                f"### Config differences\n\n"
                + (markdown_table(config_diff) if len(config_diff) else "(same config)")
                + "\n\n### Results (mean over mixtures)\n\n" + markdown_table(results))
    return {"config_diff": config_diff, "results": results, "markdown": markdown}
