"""What every stage is made of: a ``StageDefinition`` (plan, run one unit, finish) and the ``StagePlan`` it
makes (its folder, its units and the definition that runs them), plus the helpers the stage modules share.

The recipe's stages are defined in ``deepclust/stages/`` (one module each) and registered in
``deepclust.recipe.registry.STAGES``; ``deepclust.pipeline.driver.run_stage`` runs any plan. Nothing here knows
a stage by name. Every function takes and returns URLs and small JSON-able values, never arrays.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd

from deepclust import storage
from deepclust.pipeline.store import Stage


@dataclass(frozen=True)
class StageDefinition:
    """One stage: how to plan it, run one of its units and finish it.

    ``plan(run_root, *upstream manifest URLs, *configs) -> StagePlan`` decides the folder (by content key)
    and the units; ``compute_unit(plan, unit)`` does one unit and returns a JSON-able result (the driver's
    ``run_unit`` calls it for units not done yet); ``finish(plan, results) -> (manifest, info)`` merges the unit
    results (the driver validates the manifest against ``manifest_kind``'s schema, ``deepclust.storage.manifests``,
    and commits).

    Where it sits in the recipe, as plain names (so this layer knows no domain): ``upstream``, the stages whose
    manifests ``plan`` takes, in its order; ``config_fields``, the end-to-end config's fields whose values it takes
    after them, in order; ``unit_workers``, how many of its units run at once (None: the flow's task runner decides;
    1: one unit that uses every core by itself). The registry, the end-to-end config and the flows read these.
    """

    name: str
    plan: Callable[..., "StagePlan"]
    compute_unit: Callable[["StagePlan", dict], Any]
    finish: Callable[["StagePlan", list], tuple[pd.DataFrame, dict]]
    manifest_kind: str  # a key of deepclust.storage.manifests.SCHEMAS
    upstream: tuple[str, ...] = ()  # stage names
    config_fields: tuple[str, ...] = ()  # field names of deepclust.recipe.config.ReproduceConfig
    unit_workers: int | None = None


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
    """A config as a dict: its own ``to_dict`` when it has one, else ``dataclasses.asdict``. How a stage's plan
    carries its configs in ``plan.context`` (JSON-able, through Prefect); ``config_from_dict`` reads them back."""
    return config.to_dict() if hasattr(config, "to_dict") else dataclasses.asdict(config)


def config_from_dict(cls, data: dict):
    """Inverse of ``config_dict``: the class's own ``from_dict`` when it has one, else ``cls(**data)`` with nested
    configs rebuilt and tuples restored (JSON gives lists). ``config_of`` reads a plan's configs with it."""
    return cls.from_dict(data) if hasattr(cls, "from_dict") else fields_from_dict(cls, data)


def config_of(plan: StagePlan, cls, key: str = "config"):
    """The ``cls`` config that a stage's plan carries in ``plan.context[key]`` (``config_dict``'s form): how every
    stage reads its configs back in ``compute_unit`` and ``finish``, e.g. ``config_of(plan, SeparateConfig)``. A
    stage with several configs keeps each under its own key (``config_of(plan, TrainConfig, "train")``)."""
    return config_from_dict(cls, plan.context[key])


def fields_from_dict(cls, data: dict):
    """``cls(**data)`` for a dataclass, its nested configs rebuilt by ``config_from_dict`` and tuples restored (also
    in a field that may be None); unknown keys are ignored and missing fields take their defaults."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value, hint = data[f.name], _unless_none(hints.get(f.name))
        if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = config_from_dict(hint, value)
        elif typing.get_origin(hint) is tuple and isinstance(value, list):
            value = tuple(value)
        values[f.name] = value
    return cls(**values)


def _unless_none(hint):
    """``X`` for an ``X | None`` hint: what a value that is not None is rebuilt as."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [arg for arg in args if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return hint


class JsonableConfig:
    """The one dict form of a config dataclass, both ways (a mixin): ``to_dict()`` is ``dataclasses.asdict`` (nested
    configs as dicts; JSON writes tuples as lists), ``from_dict(data)`` is ``fields_from_dict`` (unknown keys
    ignored, missing ones take their defaults, nested configs and tuples rebuilt). Model files and stage plans
    store this form, so it must not change: ``tests/test_config_dicts.py`` holds it byte for byte."""

    def to_dict(self) -> dict:
        """JSON-able form (``from_dict`` reads it back)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        """Inverse of ``to_dict``; unknown keys are ignored and missing ones take their defaults."""
        return fields_from_dict(cls, data)


# Settings that say where or how fast a stage runs, not what it computes (a device, a thread count, how many
# items go through one forward or one work unit): kept out of stage keys and out of the history's recipe
# fingerprint, so moving a run to another device or batch size reuses its finished stages and compares with
# its earlier runs. This is the one definition: a config marks such a field with ``execution_only(default)``.
EXECUTION_ONLY = "execution_only"  # the dataclass field metadata key


def execution_only(default=dataclasses.MISSING, *, default_factory=dataclasses.MISSING):
    """A config field that says where or how fast its stage runs, not what it computes (kept out of keys).

    >>> @dataclass
    ... class Example:
    ...     seed: int = 0
    ...     device: str = execution_only("auto")
    >>> recipe_params(Example(device="cuda"))
    {'seed': 0}
    """
    return field(default=default, default_factory=default_factory, metadata={EXECUTION_ONLY: True})


def execution_only_fields(config) -> frozenset[str]:
    """The names of a config's (instance or class) execution-only fields."""
    cls = config if isinstance(config, type) else type(config)
    marked = {f.name for f in dataclasses.fields(cls) if f.metadata.get(EXECUTION_ONLY)}
    return frozenset(marked)


def recipe_params(config) -> dict:
    """A config as a dict without its execution-only settings, nested configs included: what goes into a
    stage key (and, for the whole recipe's config, into the history's recipe fingerprint)."""
    skip = execution_only_fields(config)
    return {f.name: _recipe_value(getattr(config, f.name)) for f in dataclasses.fields(config) if f.name not in skip}


def _recipe_value(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return recipe_params(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_recipe_value(v) for v in value)
    if isinstance(value, dict):
        return {k: _recipe_value(v) for k, v in value.items()}
    return value
