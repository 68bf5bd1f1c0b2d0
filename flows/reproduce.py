"""The end-to-end flow: corpus -> mixtures -> features -> train -> separate -> evaluate, then run.json.

Each stage is planned here first (its content key); a stage the store already holds is reused at once
(its commit task is a Prefect cache hit), any other runs as its own stage (sub)flow. So a rerun with the
same inputs recomputes nothing and starts no stage flow, and a changed parameter recomputes only the
stages downstream of it.

A run names a preset (the deployments in deployments/prefect.yaml do) or passes a whole config:

    deepclust reproduce --out runs/demo            # the README's demo job, through this flow (flows.cli)
    deepclust reproduce --out runs/quick --quick   # a smoke-test size

    from deepclust.flows.reproduce import reproduce
    from deepclust.stages.corpus import CorpusConfig
    record = reproduce(preset="paper", run_root="runs/wsj0", corpus=CorpusConfig(name="wsj0", root="/data/LDC93S6A"),
                       mix_lists="/data/create-speaker-mixtures", overrides=["train.max_epochs=20"])
"""

from __future__ import annotations

import time

from deepclust.flows import stages as stage_flows
from deepclust.flows.stages import STAGE_FLOWS, failed_items, with_task_runner
from deepclust.tasks import finish_task, plan_stage, publish_history, publish_run_artifacts
from prefect import flow, get_run_logger
from prefect.states import Completed, Failed

from deepclust import storage
from deepclust.pipeline.store import Stage
from deepclust.recipe.config import ReproduceConfig, request_label
from deepclust.recipe.registry import STAGES
from deepclust.recipe.reproduce import record_history, run_recipe, write_run_record
from deepclust.recipe.resolve import resolve_recipe
from deepclust.reports.comparison import REGRESSION_MARGIN_DB
from deepclust.stages.corpus import CorpusConfig


def recipe_config(
    config: ReproduceConfig | None = None,
    preset: str | None = None,
    run_root: str | None = None,
    corpus: CorpusConfig | None = None,
    mix_lists: str | None = None,
    overrides: list[str] | None = None,
) -> ReproduceConfig:
    """The config a ``reproduce`` run runs: ``config`` as given, or ``deepclust.recipe.resolve.resolve_recipe`` of
    the preset parameters (a preset, run root, corpus, folder of official lists and ``--set`` overrides); not both,
    since a whole config would silently drop the others."""
    asked = {"preset": preset, "run_root": run_root, "corpus": corpus, "mix_lists": mix_lists, "overrides": overrides}
    given = [name for name, value in asked.items() if value]
    if config is not None:
        if given:
            raise ValueError(
                f"the reproduce flow takes a whole config or a preset, not both: drop {', '.join(given)} or config"
            )
        return config
    return resolve_recipe(preset, run_root, corpus, mix_lists, overrides or ())


@flow(name="reproduce", log_prints=True)
def reproduce(
    config: ReproduceConfig | None = None,
    preset: str | None = None,
    run_root: str | None = None,
    corpus: CorpusConfig | None = None,
    mix_lists: str | None = None,
    overrides: list[str] | None = None,
    max_workers: int | None = None,
    task_runner: str = "thread",
    history_url: str | None = None,
    regression_margin_db: float = REGRESSION_MARGIN_DB,
):
    """Run (or reuse) every stage, write ``{run_root}/run.json``, publish the reports; returns the run record.

    What runs: a whole ``config``, or a ``preset`` (default: ``demo`` for the demo corpus, ``paper`` for a real
    one) with ``run_root``, ``corpus``, ``mix_lists`` (the folder of the official lists) and ``overrides``
    (``["train.max_epochs=20", ...]``), resolved as ``deepclust reproduce`` resolves them (``recipe_config``).
    ``task_runner``: "thread" (default) or "process"; ``max_workers``: parallel units per stage
    (default: the CPU count, at most 4). Every run is appended to the history table at ``history_url``
    (default: ``history.parquet`` beside the run root) and published as ``dpcl-history``; a run more than
    ``regression_margin_db`` below the best earlier run of its recipe and corpus ends Failed.
    """
    logger = get_run_logger()
    began = time.perf_counter()
    config = recipe_config(config, preset, run_root, corpus, mix_lists, overrides)
    logger.info("%s -> %s", request_label(config.preset, config.overrides), config.run_root)

    def run_stage_flow(name: str, run_root: str, upstream: list, configs: list):
        """Plan the stage here; a committed one is reused from the store (its commit task comes out of
        Prefect's cache) without starting its flow, else the stage flow runs (and re-plans, cheaply)."""
        plan = plan_stage(name, run_root, upstream, configs)
        stage = Stage(**plan["stage"])
        if stage.is_complete():
            logger.info("%s: reusing %s", name, stage.url)
            return stage, finish_task(plan)(plan, [])
        # Artifacts are published once, for the whole run, below.
        return stage, stage_flow_of(name, task_runner, max_workers)(run_root, *upstream, *configs, publish=False)

    done_stages, manifests, stage_seconds = run_recipe(config, stage_runner=run_stage_flow)
    model, results = manifests["train"], manifests["evaluate"]
    url = write_run_record(config, done_stages, manifests, time.perf_counter() - began, stage_seconds)
    record = storage.read_json(url)
    record["run_json"] = storage.absolute(url)
    failed = {name: failed_items(manifests[name]) for name in STAGES}
    stage_flows.publish_training(model)
    stage_flows.publish_evaluation(results)
    publish_run_artifacts(record, failed)
    history = record_history(record, history_url, regression_margin_db)
    publish_history(history["url"], history["config_fingerprint"], history.get("trend_png"))
    logger.info("report: %s", record.get("report"))
    logger.info("run record: %s", record["run_json"])
    if history.get("regression"):
        return Failed(message=history["regression"]["message"], data=record)
    training = record.get("training") or {}
    if training.get("time_capped"):
        return Completed(message=training["message"], data=record)
    if any(failed.values()):
        listing = ", ".join(f"{name}: {count}" for name, count in failed.items() if count)
        return Completed(message=f"completed; failed items recorded with their reasons ({listing})", data=record)
    return record


def stage_flow_of(name: str, task_runner: str = "thread", max_workers: int | None = None):
    """The stage's flow (``STAGE_FLOWS``) mapping its units over the run's task runner; a stage whose definition
    runs one unit at a time (``unit_workers == 1``: training, whose one unit uses every core) keeps its own."""
    stage_flow = STAGE_FLOWS[name]
    if STAGES[name].unit_workers == 1:
        return stage_flow
    return with_task_runner(stage_flow, task_runner, max_workers)


def config_from_dict(data: dict) -> ReproduceConfig:
    """A ReproduceConfig from its ``to_dict()`` form (e.g. ``run.json``'s ``config``): ``ReproduceConfig.from_dict``."""
    return ReproduceConfig.from_dict(data)
