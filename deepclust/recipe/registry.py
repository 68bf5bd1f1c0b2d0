"""The recipe's stages, registered once: ``STAGES`` by name, in the order they run (``tuple(STAGES)`` is the
order). Each definition also says what it reads (``upstream``), which configs it takes (``config_fields``) and how
many units run at once (``unit_workers``); ``UPSTREAM`` is the first of these by stage name, derived, for its
readers.

Everything that lists, orders or looks up the recipe's stages reads them here: the run by hand
(``deepclust.recipe.reproduce``), the end-to-end config's ``stage_configs()``, the Prefect tasks that read a plan
back from its JSON form (``plan_from_dict``), the stage flows (``flows.stages.STAGE_FLOWS``, checked against this
order) and the end-to-end flow (``flows.reproduce``).
"""

from __future__ import annotations

from deepclust.pipeline.plan import StageDefinition, StagePlan
from deepclust.stages.corpus import STAGE as CORPUS
from deepclust.stages.evaluate import STAGE as EVALUATE
from deepclust.stages.features import STAGE as FEATURES
from deepclust.stages.mixtures import STAGE as MIXTURES
from deepclust.stages.separate import STAGE as SEPARATE
from deepclust.stages.train import STAGE as TRAIN

__all__ = ["STAGES", "UPSTREAM", "plan", "plan_from_dict"]

STAGES: dict[str, StageDefinition] = {s.name: s for s in (CORPUS, MIXTURES, FEATURES, TRAIN, SEPARATE, EVALUATE)}


def _check_upstream_order(stages: dict[str, StageDefinition]) -> None:
    """Every stage reads only stages that run before it (so running them in order never waits on a later one)."""
    earlier: list[str] = []
    for name, definition in stages.items():
        late = [u for u in definition.upstream if u not in earlier]
        if late:
            raise ValueError(f"stage {name!r} reads {late}: not among the stages that run before it, {earlier}")
        earlier.append(name)


_check_upstream_order(STAGES)

# The stages whose manifests each stage reads, in the order its ``plan`` takes them (from the definitions).
UPSTREAM: dict[str, tuple[str, ...]] = {name: definition.upstream for name, definition in STAGES.items()}


def plan(name: str, run_root: str, upstream: list[str], configs: list) -> StagePlan:
    """``STAGES[name].plan(run_root, *upstream manifest URLs, *configs)``."""
    return STAGES[name].plan(run_root, *upstream, *configs)


def plan_from_dict(data: dict) -> StagePlan:
    """A plan's ``to_dict()`` form read back, with the definition of the stage it names."""
    return StagePlan.from_dict(data, STAGES[data["stage"]["name"]])
