"""The three tasks every stage is made of: plan it, run its units, commit it.

Each is a thin wrapper of the library: the recipe's registry plans (``deepclust.recipe.registry``), the driver's
steps run and commit (``deepclust.pipeline.driver``). Plans pass as JSON-able dicts (``StagePlan.to_dict()``,
read back by ``registry.plan_from_dict``), so they travel through any task runner and show up readably in the UI.
"""

from __future__ import annotations

from deepclust.tasks.caching import StageCache, StageUnitCache, result_storage_for
from deepclust.tasks.retry import retry_transient
from prefect import task
from prefect.cache_policies import NO_CACHE

from deepclust.faults.transient import retry_delays
from deepclust.pipeline import driver
from deepclust.pipeline.store import Stage
from deepclust.recipe import registry

# Transient faults only (retry_transient), on the library's schedule (deepclust.faults.transient.retry_delays: 1 s, 2 s,
# 4 s ... up to a minute apart, ten minutes in all), each stretched by up to 50 % at random so parallel units that
# hit the same throttled bucket do not retry in lock-step.
_DELAYS = [round(d) for d in retry_delays()]
RETRY = dict(
    retries=len(_DELAYS), retry_delay_seconds=_DELAYS, retry_jitter_factor=0.5, retry_condition_fn=retry_transient
)
# Results persisted as JSON (plans, URLs and small dicts), never pickle: a cached rerun loads them, and a pickle
# under the run root would run code for anyone who can write there.
RESULTS = dict(persist_result=True, result_serializer="json")


@task(name="plan-stage", task_run_name="plan-{name}", cache_policy=NO_CACHE, **RETRY)
def plan_stage(name: str, run_root: str, upstream: list[str], configs: list) -> dict:
    """Decide the stage folder (content key) and its units. Never cached: the key *is* the content check."""
    return registry.plan(name, run_root, upstream, configs).to_dict()


@task(
    name="run-stage-unit",
    task_run_name="{plan[stage][name]}-{unit[id]}",
    cache_policy=StageUnitCache(),
    **RESULTS,
    **RETRY,
)
def run_stage_unit(plan: dict, unit: dict):
    """One shard / batch of a stage; skipped by the store when its unit marker exists."""
    return driver.run_unit(registry.plan_from_dict(plan), unit)


@task(name="finish-stage", task_run_name="finish-{plan[stage][name]}", cache_policy=StageCache(), **RESULTS, **RETRY)
def finish_stage(plan: dict, unit_results: list) -> str:
    """Merge the unit results into the manifest and write the ``_COMPLETE`` marker; returns the manifest URL."""
    return driver.finish(registry.plan_from_dict(plan), unit_results)


def finish_task(plan: dict):
    """``finish_stage`` for this plan: results under the run root; Prefect's cache bypassed unless the
    store holds the stage's ``_COMPLETE`` marker (the store decides, never a stale cache record)."""
    stage = Stage(**plan["stage"])
    return finish_stage.with_options(
        result_storage=result_storage_for(stage.run_root), refresh_cache=not stage.is_complete()
    )
