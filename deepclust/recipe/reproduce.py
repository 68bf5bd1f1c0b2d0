"""The whole recipe by hand (no Prefect): the stages of ``deepclust.recipe.registry`` in their order (corpus ->
mixtures -> features -> training -> separation -> evaluation), each cached in the stage store, then ``run.json``
naming every output.

The Prefect flow ``flows.reproduce`` runs the very same plans (``run_recipe`` with a stage runner of its own);
this module is what a notebook uses, and ``deepclust reproduce --no-prefect``.
"""

from __future__ import annotations

import time

from deepclust import storage
from deepclust.pipeline import driver
from deepclust.recipe import registry
from deepclust.recipe.config import ReproduceConfig, request_label
from deepclust.recipe.preflight import check_inputs
from deepclust.reports.comparison import REGRESSION_MARGIN_DB
from deepclust.reports.history import config_fingerprint
from deepclust.stages.train import model_url_of


def training_outcome(info: dict, train_config) -> dict:
    """How training ended. A run stopped by the wall-clock cap is not the recipe's result: its model depends
    on the machine's speed, so it is flagged (``time_capped``) with a message saying how far it got."""
    reason = info.get("stopped_reason")
    outcome = {
        "stopped_reason": reason,
        "epochs": info.get("epochs"),
        "max_epochs": train_config.max_epochs,
        "best_val_loss": info.get("best_val_loss"),
        "time_capped": reason == "time budget",
    }
    if outcome["time_capped"]:
        outcome["message"] = (
            f"training stopped by the time cap ({train_config.max_train_seconds:.0f} s) after "
            f"{outcome['epochs']} of {train_config.max_epochs} epochs: not the recipe's result"
        )
    return outcome


def write_run_record(
    config: ReproduceConfig, done_stages: dict, manifests: dict, seconds: float, stage_seconds: dict | None = None
) -> str:
    """``{run_root}/run.json``: every stage's manifest URL and key, the model and the results table."""
    reports = done_stages["evaluate"].info()
    record = {
        "run_root": storage.absolute(config.run_root),
        "model": storage.absolute(model_url_of(manifests["train"])),
        "results": reports.get("results_parquet"),
        "results_csv": reports.get("results_csv"),
        "summary": reports.get("summary_parquet"),
        "report": reports.get("report_md"),
        "listen": reports.get("listen_html"),  # the listening page (deepclust.reports.listen)
        "stages": {
            name: {
                "manifest": storage.absolute(manifests[name]),
                "key": stage.key,
                "folder": storage.absolute(stage.url),
            }
            for name, stage in done_stages.items()
        },
        "seconds": round(seconds, 1),
        "stage_seconds": {name: round(value, 1) for name, value in (stage_seconds or {}).items()},
        "training": training_outcome(done_stages["train"].info(), config.train),
        "preset": config.preset,  # what was asked for; "config" is what it resolved to
        "overrides": list(config.overrides),
        "config": config.to_dict(),
        "config_fingerprint": config_fingerprint(config),  # the recipe: the config minus execution-only settings
    }
    url = storage.join(config.run_root, "run.json")
    storage.write_json(record, url)
    return url


def record_history(record: dict, history_url: str | None = None, margin_db: float = REGRESSION_MARGIN_DB) -> dict:
    """Append this run to the history table, check it against the best earlier run of the same recipe and
    corpus, and note both in ``record`` (and run.json): ``record["history"] = {url, run_id, regression}``.

    A regression (see ``deepclust.reports.comparison.find_regression``) is returned, not raised: the caller
    decides (the CLI exits 1, the flow ends Failed).
    """
    from deepclust.reports.comparison import find_regression
    from deepclust.reports.history import append_history, default_history_url, history_row, plot_trend

    url = history_url or default_history_url(record["run_root"])
    summary = storage.read_parquet(record["summary"])
    row = history_row(record, summary, record.get("stage_seconds"))
    history = append_history(url, row)
    regression = find_regression(history, row, margin_db)
    trend = plot_trend(
        history[history["config_fingerprint"] == row["config_fingerprint"]],
        storage.join(record["run_root"], "history_trend.png"),
    )
    record["history"] = {
        "url": storage.absolute(url),
        "run_id": row["run_id"],
        "trend_png": trend,
        "config_fingerprint": row["config_fingerprint"],
        "regression": regression,
    }
    storage.write_json(
        {k: v for k, v in record.items() if k != "run_json"}, storage.join(record["run_root"], "run.json")
    )
    return record["history"]


def recipe(config: ReproduceConfig) -> list[tuple[str, list[str], list]]:
    """The stages in order (``registry.STAGES``): ``(name, upstream stage names, configs)``."""
    configs = config.stage_configs()
    return [(name, list(registry.UPSTREAM[name]), configs[name]) for name in registry.STAGES]


def run_here(log=print):
    """The plain stage runner of ``run_recipe``: plan a stage, then ``driver.run_stage`` in this process."""

    def run(name: str, run_root: str, upstream: list[str], configs: list):
        plan = registry.plan(name, run_root, upstream, configs)
        return plan.stage, driver.run_stage(plan, log=log)

    return run


def run_recipe(config: ReproduceConfig, stage_runner=None) -> tuple[dict, dict, dict]:
    """Run (or reuse) every stage in order; ``stage_runner(name, run_root, upstream URLs, configs) -> (Stage,
    manifest URL)`` (default ``run_here()``; the Prefect flow passes one that runs stage flows). Each stage itself
    runs through the one driver, ``deepclust.pipeline.driver.run_stage``.
    The inputs are checked first (``deepclust.recipe.preflight``): a run whose lists name files the corpus lacks
    stops before any stage. Returns ``(stages, manifests, stage_seconds)`` by stage name."""
    check_inputs(config)
    stage_runner = stage_runner or run_here()
    storage.makedirs(config.run_root)
    done_stages, manifests, stage_seconds = {}, {}, {}
    for name, upstream, configs in recipe(config):
        started = time.perf_counter()
        done_stages[name], manifests[name] = stage_runner(
            name, config.run_root, [manifests[u] for u in upstream], configs
        )
        stage_seconds[name] = time.perf_counter() - started
    return done_stages, manifests, stage_seconds


def reproduce(
    config: ReproduceConfig,
    log=print,
    history_url: str | None = None,
    regression_margin_db: float = REGRESSION_MARGIN_DB,
) -> dict:
    """Run every stage (reusing finished ones), append the run to its history (``record_history``) and
    return the run record."""
    began = time.perf_counter()
    done_stages, manifests, stage_seconds = run_recipe(config, run_here(log))
    url = write_run_record(config, done_stages, manifests, time.perf_counter() - began, stage_seconds)
    record = storage.read_json(url)
    record["run_json"] = storage.absolute(url)
    record_history(record, history_url, regression_margin_db)
    return record


def print_summary(record: dict, log=print) -> None:
    """Log a finished run's headline table, its results as the paper lays them out, the preset and overrides it
    ran, any time-cap warning, its history entry and regression, and where its report and run record are."""
    from deepclust.reports.paper import paper_table
    from deepclust.reports.summary import headline, markdown_table

    summary = storage.read_parquet(record["summary"])
    log(markdown_table(headline(summary)))
    table, condition = paper_table(summary)
    log(f"\nAs the paper reports it ({condition}-speaker test mixtures, SDRi in dB):\n{markdown_table(table)}")
    if record.get("preset"):
        log(request_label(record["preset"], record.get("overrides") or ()))
    if (record.get("training") or {}).get("time_capped"):
        log(f"WARNING: {record['training']['message']}")
    history = record.get("history") or {}
    if history:
        log(f"history: {history['url']} (run {history['run_id']}, config {history['config_fingerprint']})")
        if history.get("regression"):
            log(f"REGRESSION: {history['regression']['message']}")
    log(f"report: {record['report']}")
    if record.get("listen"):
        log(f"listen: {record['listen']} (open it in a browser)")
    log(f"run record: {record.get('run_json')}")
