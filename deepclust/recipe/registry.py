"""The recipe's stages, registered once: ``STAGES`` by name, in the order they run (``tuple(STAGES)`` is the
order), and ``UPSTREAM``, the stages whose manifests each one reads (in the order its ``plan`` takes them).

Everything that lists, orders or looks up the recipe's stages reads them here: the run by hand
(``deepclust.recipe.reproduce``), the Prefect tasks that read a plan back from its JSON form (``plan_from_dict``)
and the end-to-end flow (``flows.reproduce``).
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

UPSTREAM: dict[str, tuple[str, ...]] = {
    CORPUS.name: (),
    MIXTURES.name: (CORPUS.name,),
    FEATURES.name: (MIXTURES.name,),
    TRAIN.name: (FEATURES.name,),
    SEPARATE.name: (TRAIN.name, MIXTURES.name),
    EVALUATE.name: (SEPARATE.name, MIXTURES.name),
}


def plan(name: str, run_root: str, upstream: list[str], configs: list) -> StagePlan:
    """``STAGES[name].plan(run_root, *upstream manifest URLs, *configs)``."""
    return STAGES[name].plan(run_root, *upstream, *configs)


def plan_from_dict(data: dict) -> StagePlan:
    """A plan's ``to_dict()`` form read back, with the definition of the stage it names."""
    return StagePlan.from_dict(data, STAGES[data["stage"]["name"]])
