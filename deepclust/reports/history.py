"""Run history: one row per ``reproduce`` run, appended to a table, read back and drawn as a trend.

The history is a Parquet table at a URL the user chooses (default ``{run_root}/../history.parquet``, so
runs that share a parent folder share a history). A row holds when, which code (git commit or package
version), which recipe (``config_fingerprint``: the config without where/how-fast settings), which corpus,
which machine, stage times and the headline figures. Judging runs against each other (the regression check,
``deepclust compare``) is ``deepclust.reports.comparison``.
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
from deepclust.pipeline.plan import recipe_params

FINGERPRINT_SPELLINGS = {"mix": "mixtures"}  # deepclust.recipe.config.OLD_FIELD_NAMES (reports sit below recipe)


def config_fingerprint(config) -> str:
    """16 hex digits of the recipe: a run's typed config (``ReproduceConfig``) minus its execution-only settings
    (``deepclust.pipeline.plan.recipe_params``, the same rule the stage keys follow), so runs that differ only in
    where or how fast they ran are one recipe."""
    params = recipe_params(config)
    # A field renamed for one name per concept keeps its old spelling here, so runs before and after the rename
    # remain one recipe in the history (deepclust.recipe.config.OLD_FIELD_NAMES).
    for old, new in FINGERPRINT_SPELLINGS.items():
        if new in params:
            params[old] = params.pop(new)
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def code_version() -> str:
    """``git:<commit>[+dirty]`` when deepclust runs from a git checkout, else ``deepclust <version>``."""
    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
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
    """One history row for a finished run (``record``: the run.json dict, whose ``config_fingerprint`` the recipe
    wrote from the typed config)."""
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
        "config_fingerprint": record["config_fingerprint"],
        # What the person asked for (the fingerprint says what it resolved to): a trend reads by name.
        "preset": config.get("preset") or "",
        "overrides": " ".join(config.get("overrides") or []),
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


def trend_markdown(history: pd.DataFrame, config_fingerprint_value: str | None = None) -> str:
    """The history as a Markdown table (newest last), optionally one recipe's runs only."""
    if history.empty:
        return "(no runs yet)"
    table = (
        history
        if config_fingerprint_value is None
        else history[history["config_fingerprint"] == config_fingerprint_value]
    )
    columns = [
        c
        for c in (
            "finished_at",
            "run_id",
            "code_version",
            "preset",
            "overrides",
            "config_fingerprint",
            "machine",
            "sdri_2spk_open",
            "si_sdri_2spk_open",
            "ibm_sdri_2spk_open",
            "sdri_3spk_open",
            "time_capped",
            "seconds",
        )
        if c in table
    ]
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
