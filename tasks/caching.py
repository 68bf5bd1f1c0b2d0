"""Prefect cache keys that agree with the stage store.

A unit's cache key is ``{stage}-{content key}-{unit id}`` (plus a short hash of the run root, so two
run roots never share results); a stage's finish key is ``{stage}-{content key}``. The content key
already fingerprints everything the stage depends on, so Prefect needs nothing else. The stage store
stays the source of truth: the flows run a unit with ``refresh_cache=True`` whenever its
``units/<id>.json`` marker is missing (e.g. the stage folder was deleted but Prefect's records were not),
and a unit whose marker exists is skipped by the store even when Prefect's cache has been wiped.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from prefect.cache_policies import CachePolicy

from deepclust import storage


def _root_tag(run_root: str) -> str:
    return hashlib.sha256(storage.absolute(run_root).encode()).hexdigest()[:8]


def stage_cache_key(stage: dict, unit_id: str | None = None) -> str:
    """``dpcl-{stage}-{key}-{run root tag}[-{unit id}]``: the cache key of a stage's finish, or of one of its units."""
    parts = ["dpcl", stage["name"], stage["key"], _root_tag(stage["run_root"])]
    if unit_id is not None:
        parts.append(unit_id)
    return "-".join(parts)


class StageUnitCache(CachePolicy):
    """Key of ``run_stage_unit(plan, unit)``: the stage's content key + the unit id."""

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs):
        """``stage_cache_key`` of the task's ``plan`` stage and ``unit`` id."""
        return stage_cache_key(inputs["plan"]["stage"], inputs["unit"]["id"])


class StageCache(CachePolicy):
    """Key of ``finish_stage(plan, ...)``: the stage's content key."""

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs):
        """``stage_cache_key`` of the task's ``plan`` stage."""
        return stage_cache_key(inputs["plan"]["stage"])


def result_storage_for(run_root: str) -> Path | None:
    """Persist task results (and Prefect's cache records) under the run root, beside the data they
    describe, so deleting a run folder deletes its cache too. Remote run roots use Prefect's default
    result storage (set ``PREFECT_DEFAULT_RESULT_STORAGE_BLOCK`` to keep it on the same bucket)."""
    if not storage.is_local(run_root):
        return None
    return Path(storage.absolute(run_root)) / ".prefect-results"
