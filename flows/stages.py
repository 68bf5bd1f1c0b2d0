"""One flow per stage. Each takes the run root, the upstream manifest URLs and its typed configs (defaults: the
paper's recipe), then ``publish`` (whether to publish its artifacts; a no-op for a stage that publishes none), and
returns the URL of its own manifest. ``STAGE_FLOWS`` holds them by stage name, in the registry's order
(``deepclust.recipe.registry.STAGES``, checked at import); each flow's Prefect name is its stage's name.

Every stage flow is the same three steps: ``plan_stage`` (content key + units), ``run_stage_unit`` per
unit mapped over the flow's task runner (threads by default, ``max_workers`` configurable through
``with_task_runner``), then ``finish_stage`` (manifest + marker). A stage already committed in the
store is reused without running any unit.

The six flows are written out by hand rather than generated from the registry on purpose: Prefect validates a
flow's parameters against its signature and shows them, typed, in the UI and in a deployment's form; a flow made
from ``*configs`` would lose both.
"""

from __future__ import annotations

import os

from deepclust.tasks import (
    StageProgress,
    finish_task,
    plan_stage,
    publish_loss_curve,
    publish_results,
    publish_summary,
    result_storage_for,
    run_stage_unit,
)
from prefect import Flow, flow, get_run_logger
from prefect.futures import as_completed
from prefect.states import Completed
from prefect.task_runners import ThreadPoolTaskRunner

from deepclust import storage
from deepclust.features.extract import FeatureConfig
from deepclust.model.blstm import ModelConfig
from deepclust.pipeline import driver
from deepclust.pipeline.store import Stage
from deepclust.recipe.registry import STAGES, plan_from_dict
from deepclust.stages.corpus import CorpusConfig
from deepclust.stages.evaluate import EvaluateConfig
from deepclust.stages.mixtures import MixStageConfig
from deepclust.stages.separate import SeparateConfig
from deepclust.storage.manifests import has_status, read_manifest
from deepclust.training.config import TrainConfig


def default_workers() -> int:
    """Units run at once by default: the CPU count, at least 1 and at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def make_task_runner(kind: str = "thread", max_workers: int | None = None):
    """``thread`` (default: units share the process, cheap to start) or ``process`` (one Python per
    worker; for CPU-bound units that hold the GIL)."""
    workers = max_workers or default_workers()
    if kind == "thread":
        return ThreadPoolTaskRunner(max_workers=workers)
    if kind == "process":
        from prefect.task_runners import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner(max_workers=workers)
    raise ValueError(f"task runner must be 'thread' or 'process', got {kind!r}")


def with_task_runner(stage_flow, kind: str = "thread", max_workers: int | None = None):
    """The same stage flow mapping its units over another task runner."""
    return stage_flow.with_options(task_runner=make_task_runner(kind, max_workers))


def failed_items(manifest_url: str) -> int:
    """Rows of a committed stage manifest that the library recorded as failed (bad audio etc.); 0 for the kinds
    whose items do not fail one by one (corpus, model: ``deepclust.storage.manifests.has_status``)."""
    kind = STAGES[Stage.of_manifest(manifest_url).name].manifest_kind
    if not has_status(kind):
        return 0
    return int((read_manifest(manifest_url, kind)["status"] == "failed").sum())


def run_plan(plan: dict) -> str:
    """Run a planned stage through the library's one driver (``deepclust.pipeline.driver.run_stage``), with
    the units submitted as tasks to this flow's task runner and the commit as a (cached) task."""
    logger = get_run_logger()
    finish = finish_task(plan)
    return driver.run_stage(
        plan_from_dict(plan),
        map_units=lambda p: _submit_units(plan),
        log=logger.info,
        finish_stage=lambda p, results: finish(plan, results),
    )


def _submit_units(plan: dict) -> list:
    """One ``run_stage_unit`` task per unit; waits for all, raises naming the failed ones."""
    logger = get_run_logger()
    stage = Stage(**plan["stage"])
    results_at = result_storage_for(stage.run_root)
    # The store decides: a unit without a marker is (re)computed even if Prefect's cache has a record.
    cached = run_stage_unit.with_options(result_storage=results_at)
    fresh = run_stage_unit.with_options(result_storage=results_at, refresh_cache=True)
    done = {unit["id"] for unit in plan["units"] if storage.exists(stage.unit_marker(unit["id"]))}
    futures = [(cached if unit["id"] in done else fresh).submit(plan, unit) for unit in plan["units"]]
    logger.info("%s: %d units (%d already done) -> %s", stage.name, len(futures), len(done), stage.url)
    progress = StageProgress(stage.name, len(futures), len(done)) if len(futures) - len(done) > 1 else None
    unit_of = {future: unit["id"] for unit, future in zip(plan["units"], futures)}
    for future in as_completed(futures):
        if progress and unit_of[future] not in done:
            progress.advance()
    for future in futures:
        future.wait()  # records the final state on the future (``.state`` alone may still read Running)
    failed = [
        (unit["id"], future.state) for unit, future in zip(plan["units"], futures) if not future.state.is_completed()
    ]
    if failed:
        unit_id, state = failed[0]
        raise RuntimeError(
            f"{stage.name}: {len(failed)} of {len(futures)} units failed (finished units are kept "
            f"and a rerun redoes only these); first: {unit_id}: {state.message}"
        )
    return [future.result() for future in futures]


def _finished(manifest_url: str, stage: str):
    """The flow's return value; the final state's message names failed items, if any."""
    failed = failed_items(manifest_url)
    if failed:
        return Completed(
            message=f"{stage}: {failed} item(s) failed and were recorded in {manifest_url}", data=manifest_url
        )
    return manifest_url


@flow(name="corpus", task_runner=ThreadPoolTaskRunner(max_workers=default_workers()))
def make_corpus(run_root: str, config: CorpusConfig = CorpusConfig(), publish: bool = True) -> str:
    """Corpus -> utterance manifest (demo: synthesised; wsj0 / folder: scanned). Publishes nothing."""
    return _finished(run_plan(plan_stage("corpus", run_root, [], [config])), "corpus")


@flow(name="mixtures", task_runner=ThreadPoolTaskRunner(max_workers=default_workers()))
def make_mixtures(
    run_root: str, corpus_manifest_url: str, config: MixStageConfig = MixStageConfig(), publish: bool = True
) -> str:
    """Mix lists (generated or official) -> mixture WAVs and the mixture manifest. Publishes nothing."""
    return _finished(run_plan(plan_stage("mixtures", run_root, [corpus_manifest_url], [config])), "mixtures")


@flow(name="features", task_runner=ThreadPoolTaskRunner(max_workers=default_workers()))
def extract_features(
    run_root: str, mixture_manifest_url: str, config: FeatureConfig = FeatureConfig(), publish: bool = True
) -> str:
    """Mixtures -> feature shards (one task per shard) + training normalisation statistics. Publishes nothing."""
    return _finished(run_plan(plan_stage("features", run_root, [mixture_manifest_url], [config])), "features")


@flow(name="train", task_runner=ThreadPoolTaskRunner(max_workers=STAGES["train"].unit_workers))
def train(
    run_root: str,
    feature_manifest_url: str,
    model: ModelConfig = ModelConfig(),
    training: TrainConfig = TrainConfig(),
    publish: bool = True,
) -> str:
    """Features -> trained embedding network (resumes from its checkpoints); publishes the loss curve.
    (``model_config`` would be the natural name, but pydantic reserves it.)"""
    url = run_plan(plan_stage("train", run_root, [feature_manifest_url], [model, training]))
    if publish:
        publish_training(url)
    return url


def publish_training(model_manifest_url: str) -> None:
    """Publish the loss-curve artifacts of a trained model, when its history file exists."""
    trained = read_manifest(model_manifest_url, "train").iloc[0]
    if trained["history_url"] and storage.exists(trained["history_url"]):
        publish_loss_curve(trained["history_url"], trained["loss_curve_png"] or None)


@flow(name="separate", task_runner=ThreadPoolTaskRunner(max_workers=default_workers()))
def separate(
    run_root: str,
    model_manifest_url: str,
    mixture_manifest_url: str,
    config: SeparateConfig = SeparateConfig(),
    publish: bool = True,
) -> str:
    """Test mixtures -> separated sources (one task per batch of mixtures). Publishes nothing."""
    plan = plan_stage("separate", run_root, [model_manifest_url, mixture_manifest_url], [config])
    return _finished(run_plan(plan), "separate")


@flow(name="evaluate", task_runner=ThreadPoolTaskRunner(max_workers=default_workers()))
def evaluate(
    run_root: str,
    separation_manifest_url: str,
    mixture_manifest_url: str,
    config: EvaluateConfig = EvaluateConfig(),
    publish: bool = True,
) -> str:
    """Separated sources -> per-utterance metrics (model, IBM, IRM), summary, Markdown report; publishes
    ``dpcl-results`` and ``dpcl-summary``."""
    plan = plan_stage("evaluate", run_root, [separation_manifest_url, mixture_manifest_url], [config])
    url = run_plan(plan)
    if publish:
        publish_evaluation(url)
    return _finished(url, "evaluate")


def publish_evaluation(results_manifest_url: str) -> None:
    """Publish the ``dpcl-results``, ``dpcl-summary`` and ``dpcl-listen`` artifacts of a committed evaluation
    stage."""
    from deepclust.tasks.artifacts import publish_listen

    reports = Stage.of_manifest(results_manifest_url).info()
    publish_results(reports["results_parquet"])
    publish_summary(reports["report_md"], reports["summary_parquet"])
    if reports.get("listen_html"):  # stages committed before listening pages existed have none
        publish_listen(reports["listen_html"])


# The stage flows by stage name (each flow's Prefect name is its stage's), in the registry's order: how the
# end-to-end flow finds a stage's flow.
STAGE_FLOWS: dict[str, Flow] = {
    f.name: f for f in (make_corpus, make_mixtures, extract_features, train, separate, evaluate)
}


def _check_stage_flows(stage_flows: dict) -> None:
    """One flow per registered stage, in the registry's order: a stage added to (or renamed in) the registry
    needs its flow here."""
    if tuple(stage_flows) != tuple(STAGES):
        raise RuntimeError(
            f"flows.stages.STAGE_FLOWS has flows named {tuple(stage_flows)}; the registry's stages are {tuple(STAGES)}"
        )


_check_stage_flows(STAGE_FLOWS)
