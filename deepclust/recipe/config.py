"""The end-to-end config: ``ReproduceConfig`` composes one typed config per stage (each defined beside its stage
in ``deepclust.stages``, or beside its domain code: ``FeatureConfig``, ``ModelConfig``, ``TrainConfig``);
``demo_config()`` is the README's main job, sized for a 2-core machine. Defaults are the paper's recipe unless a
comment says otherwise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from deepclust.features.extract import FeatureConfig
from deepclust.model.blstm import ModelConfig
from deepclust.pipeline.plan import execution_only, fields_from_dict
from deepclust.stages.corpus import CorpusConfig
from deepclust.stages.evaluation import EvaluateConfig
from deepclust.stages.mixtures import MixStageConfig
from deepclust.stages.separation import SeparateConfig
from deepclust.training.config import TrainConfig

__all__ = ["ReproduceConfig", "demo_config"]


@dataclass
class ReproduceConfig:
    """The whole recipe, end to end: the run folder and one config per stage."""
    run_root: str = execution_only("runs/demo")  # where the run goes, not what it computes
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    mix: MixStageConfig = field(default_factory=MixStageConfig)
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
        """Inverse of ``to_dict`` (e.g. ``run.json``'s ``config``): every stage's config rebuilt by its own rule."""
        return fields_from_dict(cls, data)

    def stage_configs(self) -> dict[str, list]:
        """Each stage's configs by stage name, in the order its ``plan`` takes them after its upstream manifests."""
        return {"corpus": [self.corpus], "mixtures": [self.mix], "features": [self.features],
                "train": [self.model, self.train], "separate": [self.separate], "evaluate": [self.evaluate]}


def demo_config(run_root: str = "runs/demo", quick: bool = False) -> ReproduceConfig:
    """The README's main job: the synthesised demo corpus, sized to finish in minutes on 2 cores.

    Departures from the paper's recipe, for time only: fewer mixtures (``scale``), a smaller network and
    a short, fixed training budget. ``quick`` is a smoke-test size (a minute or two).
    """
    if quick:
        return ReproduceConfig(
            run_root=run_root,
            corpus=CorpusConfig(name="demo", utterances_per_speaker=6),
            mix=MixStageConfig(sizes={"tr": 120, "cv": 24, "tt": 16}, test_speaker_counts=(2, 3), batch_size=60),
            features=FeatureConfig(utterances_per_shard=40),
            model=ModelConfig(hidden=32, layers=1, emb_dim=8),
            train=TrainConfig(max_epochs=2, steps_per_epoch=5, batch_size=8, patience=2),
            separate=SeparateConfig(unit_size=20),
            evaluate=EvaluateConfig(unit_size=20),
        )
    return ReproduceConfig(
        run_root=run_root,
        corpus=CorpusConfig(name="demo"),
        mix=MixStageConfig(sizes={"tr": 2000, "cv": 200, "tt": 200}, test_speaker_counts=(2, 3)),
        features=FeatureConfig(utterances_per_shard=250),
        model=ModelConfig(hidden=300, layers=2, emb_dim=20),
        # A fixed budget (16 x 50 steps, about 8 minutes on 2 cores), so that a rerun anywhere gives the same
        # model; the time limit is only a safety cap, and a run that reaches it says so (run.json "training").
        # float32 on every CPU: "auto" would train in bf16 on AMX machines and in float32 elsewhere, so the demo's
        # figures (benchmarks/RESULTS.md) would depend on the CPU; a demo should give everyone the same model.
        train=TrainConfig(max_epochs=16, steps_per_epoch=50, batch_size=32, patience=6, max_train_seconds=1800,
                          precision="fp32"),
        separate=SeparateConfig(),
        evaluate=EvaluateConfig(),
    )
