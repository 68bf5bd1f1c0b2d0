"""What every stage is made of: a ``StageDefinition`` (plan, run one unit, finish) and the ``StagePlan`` it
makes (its folder, its units and the definition that runs them), plus the helpers the stage modules share.

The recipe's stages are defined in ``deepclust/stages/`` (one module each) and registered in
``deepclust.recipe.registry.STAGES``; ``deepclust.pipeline.driver.run_stage`` runs any plan. Nothing here knows
a stage by name. Every function takes and returns URLs and small JSON-able values, never arrays.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd

from deepclust import storage
from deepclust.pipeline.store import Stage


@dataclass(frozen=True)
class StageDefinition:
    """One stage: how to plan it, run one of its units and finish it.

    ``plan(run_root, *upstream manifest URLs, *configs) -> StagePlan`` decides the folder (by content key)
    and the units; ``run_unit(plan, unit)`` does one unit and returns a JSON-able result (the driver
    skips units already done); ``finish(plan, results) -> (manifest, info)`` merges the unit results
    (the driver commits them). ``description`` is what a person reads in progress lines.
    """

    name: str
    plan: Callable[..., "StagePlan"]
    run_unit: Callable[["StagePlan", dict], Any]
    finish: Callable[["StagePlan", list], tuple[pd.DataFrame, dict]]
    description: str = ""


@dataclass
class StagePlan:
    """A stage folder, the units of work it needs and the definition that runs them.

    ``to_dict()`` is its JSON-able form, which travels through Prefect; the stage folder's name says which
    definition reads it back (``from_dict(data, definition)``; ``deepclust.recipe.registry.plan_from_dict``).
    """

    stage: Stage
    definition: StageDefinition
    units: list[dict] = field(default_factory=list)
    context: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.definition.name != self.stage.name:
            raise ValueError(f"stage folder {self.stage.name!r} planned by the {self.definition.name!r} definition")

    @property
    def manifest_url(self) -> str:
        """The stage's ``manifest.parquet``."""
        return self.stage.manifest_url

    def to_dict(self) -> dict:
        """JSON-able form (``from_dict`` reads it back): the stage folder, the units and the context."""
        return {"stage": dataclasses.asdict(self.stage), "units": self.units, "context": self.context}

    @classmethod
    def from_dict(cls, data: dict, definition: StageDefinition) -> "StagePlan":
        """Inverse of ``to_dict``, given the definition of the stage named in ``data["stage"]["name"]``."""
        return cls(stage=Stage(**data["stage"]), definition=definition, units=data["units"], context=data["context"])


def concat_parts(results: list) -> pd.DataFrame:
    """The per-unit ``part`` tables of a stage, in unit order, as one table."""
    frames = [storage.read_parquet(r["part"]) for r in results if r and r.get("part")]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def config_dict(config) -> dict:
    """A config as a dict: its own ``to_dict`` when it has one, else ``dataclasses.asdict``."""
    return config.to_dict() if hasattr(config, "to_dict") else dataclasses.asdict(config)


# Settings that say where or how fast a stage runs, not what it computes: kept out of stage keys, so
# moving a run to another device or thread count reuses its finished stages.
# (``prefetch_batches`` draws the same batches ahead of time: the model is bit-identical.)
EXECUTION_ONLY = {"device", "num_threads", "prefetch_batches"}


def recipe_params(config) -> dict:
    """A config without its execution-only settings: what goes into a stage key."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in EXECUTION_ONLY}
