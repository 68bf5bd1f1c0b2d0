"""Thin Prefect tasks over the library (``deepclust.recipe``, ``deepclust.pipeline``, ``deepclust.archive``):
retries, content-keyed caching, artifacts, progress.

A task calls the library and returns a small reference (a plan dict, a manifest URL), never an array.
"""

from deepclust.tasks.artifacts import (
    StageProgress,
    publish_history,
    publish_loss_curve,
    publish_results,
    publish_run_artifacts,
    publish_summary,
)
from deepclust.tasks.caching import StageCache, StageUnitCache, result_storage_for
from deepclust.tasks.retry import is_transient, retry_transient
from deepclust.tasks.stage_tasks import finish_stage, finish_task, plan_stage, run_stage_unit

__all__ = [
    "StageCache",
    "StageProgress",
    "StageUnitCache",
    "finish_stage",
    "finish_task",
    "is_transient",
    "plan_stage",
    "publish_history",
    "publish_loss_curve",
    "publish_results",
    "publish_run_artifacts",
    "publish_summary",
    "result_storage_for",
    "retry_transient",
    "run_stage_unit",
]
