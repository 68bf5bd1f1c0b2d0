"""The end-to-end config: ``ReproduceConfig`` composes one typed config per stage (each defined beside its stage
in ``deepclust.stages``, or beside its domain code: ``FeatureConfig``, ``ModelConfig``, ``TrainConfig``). Defaults
are the paper's recipe; the named recipes (``paper``, ``demo``, ...) live in ``deepclust.recipe.presets``, and
``deepclust.recipe.resolve`` turns a preset, a corpus and ``--set`` overrides into one of these.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from deepclust.features.extract import FeatureConfig
from deepclust.model.blstm import ModelConfig
from deepclust.pipeline.plan import execution_only, fields_from_dict
from deepclust.stages.corpus import CorpusConfig
from deepclust.stages.evaluate import EvaluateConfig
from deepclust.stages.mixtures import MixStageConfig
from deepclust.stages.separate import SeparateConfig
from deepclust.training.config import TrainConfig

__all__ = ["ReproduceConfig", "demo_config", "request_label"]


# Fields renamed so that each stage's config has the stage's name (issue 28); old spellings are read (run.json,
# --set) for one release, and the recipe fingerprint keeps the old spelling so that earlier runs stay comparable.
OLD_FIELD_NAMES = {"mix": "mixtures"}


@dataclass
class ReproduceConfig:
    """The whole recipe, end to end: the run folder and one config per stage."""

    run_root: str = execution_only("runs/demo")  # where the run goes, not what it computes
    # Which preset and overrides made it: labels a person reads (run.json, compare, the history), kept out of the
    # recipe's fingerprint, which the resolved configs below already decide.
    preset: str | None = execution_only(None)
    overrides: tuple[str, ...] = execution_only(())
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    mixtures: MixStageConfig = field(default_factory=MixStageConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    separate: SeparateConfig = field(default_factory=SeparateConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)

    def to_dict(self) -> dict:
        """JSON-able form, as in ``run.json`` (``from_dict`` reads it back)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ReproduceConfig":
        """Inverse of ``to_dict`` (e.g. ``run.json``'s ``config``): every stage's config rebuilt by its own rule.
        A run.json written before the mixtures stage's config was named for its stage has it as ``mix``."""
        if OLD_FIELD_NAMES["mix"] not in data and "mix" in data:
            data = {**{k: v for k, v in data.items() if k != "mix"}, OLD_FIELD_NAMES["mix"]: data["mix"]}
        return fields_from_dict(cls, data)

    def stage_configs(self) -> dict[str, list]:
        """Each stage's configs by stage name, in the order its ``plan`` takes them after its upstream manifests:
        the fields each registered stage names (``StageDefinition.config_fields``), in the registry's order."""
        from deepclust.recipe.registry import STAGES  # lazily: the config alone need not load every stage module

        return {name: [getattr(self, f) for f in definition.config_fields] for name, definition in STAGES.items()}


def request_label(preset: str | None, overrides=()) -> str:
    """What a run was asked for, as a person reads it: ``preset paper, --set train.max_epochs=20``."""
    return f"preset {preset or '(none: a whole config)'}" + "".join(f", --set {text}" for text in overrides)


def demo_config(run_root: str = "runs/demo", quick: bool = False) -> ReproduceConfig:
    """The ``demo`` preset (or, with ``quick``, the ``quick`` one): ``deepclust.recipe.presets``."""
    from deepclust.recipe.presets import preset_config

    return preset_config("quick" if quick else "demo", run_root)
