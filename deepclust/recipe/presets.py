"""Named recipes, one home each: ``PRESETS[name](run_root) -> ReproduceConfig``.

A preset says what a run computes (mixtures, network, training schedule, separation); the corpus comes from the
caller (``deepclust.recipe.resolve``), so the same preset runs on WSJ0, a folder or the demo voices. The paper's
recipe is the paper's at full size; the smaller ones are named as such, and nobody gets a demo budget by asking
for the paper.

- ``paper``: Hershey et al., ICASSP 2016 (arXiv 1508.04306), as the library's config defaults say: the wsj0-2mix
  lists (20,000 / 5,000 / 3,000 mixtures, 'min' mode, 8 kHz), the 2 x 300 BLSTM with D = 20, 100-frame chunks
  then 400-frame chunks (Isik et al.'s curriculum), each phase until the cv loss stops improving (no wall-clock
  cap), k-means separation, and the 2- and 3-speaker test sets.
- ``dpcl++``: the same recipe with Isik et al.'s (Interspeech 2016) deeper network: 4 x 300 BLSTM, dropout 0.3.
- ``demo``: the README's main job, sized to finish in under 15 minutes on a 2-core AVX2-only CPU.
- ``quick``: a smoke test of the whole chain (a minute or two).

Chimera++ (Wang et al. 2018) is not a recipe preset: its mask head learns from phase-sensitive targets that only
dynamic mixing makes (``deepclust train-dynamic``); the recipe's feature shards carry none.
"""

from __future__ import annotations

from collections.abc import Callable

from deepclust.features.extract import FeatureConfig
from deepclust.model.blstm import ModelConfig
from deepclust.recipe.config import ReproduceConfig
from deepclust.stages.corpus import CorpusConfig
from deepclust.stages.evaluate import EvaluateConfig
from deepclust.stages.mixtures import MixStageConfig
from deepclust.stages.separate import SeparateConfig
from deepclust.training.config import TrainConfig

__all__ = ["PRESETS", "UNAVAILABLE", "default_preset", "preset_config"]

PAPER_CURRICULUM_FRAMES = 400  # Isik et al. 2016: after the 100-frame phase, continue on 400-frame chunks

# The demo's fixed training budget. On a 2-core AVX2-only CPU an epoch of 50 steps of 32 x 100 frames (fp32) took
# about 60 s, and the rest of `bash scripts/demo.sh` from a fresh clone about 5 minutes: 8 epochs keep the whole
# job under 15 minutes there (about 13), where 16 took 21. On AVX-512 machines an epoch takes about 30 s.
DEMO_EPOCHS = 8
DEMO_STEPS_PER_EPOCH = 50


def paper(run_root: str) -> ReproduceConfig:
    """Hershey et al. 2016 at full size: every stage config at its defaults, plus the curriculum's second phase,
    the 3-speaker test set and k-means named explicitly."""
    return ReproduceConfig(
        run_root=run_root,
        mixtures=MixStageConfig(test_speaker_counts=(2, 3)),
        model=ModelConfig.preset("paper"),
        train=TrainConfig(curriculum_chunk_frames=PAPER_CURRICULUM_FRAMES),
        separate=SeparateConfig(inference="kmeans"),
    )


def dpcl_plus_plus(run_root: str) -> ReproduceConfig:
    """The paper's recipe with Isik et al.'s deeper network (4 x 300 BLSTM, dropout 0.3)."""
    config = paper(run_root)
    config.model = ModelConfig.preset("dpcl++")
    return config


def demo(run_root: str) -> ReproduceConfig:
    """The README's main job: the paper's network and pipeline on the synthesised demo corpus, with fewer
    mixtures and a short, fixed training budget (the same model on every machine).

    float32 on every CPU: "auto" would train in bf16 on AMX machines and in float32 elsewhere, so the demo's
    figures would depend on the CPU. The time limit is only a safety cap; a run that reaches it says so
    (run.json "training")."""
    return ReproduceConfig(
        run_root=run_root,
        corpus=CorpusConfig(name="demo"),
        mixtures=MixStageConfig(sizes={"tr": 2000, "cv": 200, "tt": 200}, test_speaker_counts=(2, 3)),
        features=FeatureConfig(utterances_per_shard=250),
        model=ModelConfig.preset("paper"),
        train=TrainConfig(
            max_epochs=DEMO_EPOCHS,
            steps_per_epoch=DEMO_STEPS_PER_EPOCH,
            batch_size=32,
            patience=6,
            max_train_seconds=1800,
            precision="fp32",
        ),
        separate=SeparateConfig(),
        evaluate=EvaluateConfig(),
    )


def quick(run_root: str) -> ReproduceConfig:
    """A smoke test of the whole chain: tiny sets, a tiny network, ten steps."""
    return ReproduceConfig(
        run_root=run_root,
        corpus=CorpusConfig(name="demo", utterances_per_speaker=6),
        mixtures=MixStageConfig(sizes={"tr": 120, "cv": 24, "tt": 16}, test_speaker_counts=(2, 3), batch_size=60),
        features=FeatureConfig(utterances_per_shard=40),
        model=ModelConfig(hidden=32, layers=1, emb_dim=8),
        train=TrainConfig(max_epochs=2, steps_per_epoch=5, batch_size=8, patience=2),
        separate=SeparateConfig(unit_size=20),
        evaluate=EvaluateConfig(unit_size=20),
    )


PRESETS: dict[str, Callable[[str], ReproduceConfig]] = {
    "paper": paper,
    "dpcl++": dpcl_plus_plus,
    "demo": demo,
    "quick": quick,
}

# Names a person may reasonably ask for, with why there is no such recipe preset.
UNAVAILABLE = {
    "chimera++": "Chimera++'s mask head learns from phase-sensitive targets that only dynamic mixing makes; train it "
    "with `deepclust train-dynamic --preset chimera++` (the recipe's feature shards carry none)",
}


def preset_config(name: str, run_root: str = ReproduceConfig.run_root) -> ReproduceConfig:
    """The named preset's config, with ``preset`` recorded in it; an unknown name raises ``ValueError`` naming
    the presets there are."""
    if name in UNAVAILABLE:
        raise ValueError(f"no recipe preset {name!r}: {UNAVAILABLE[name]}")
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    config = PRESETS[name](run_root)
    config.preset = name
    return config


def default_preset(corpus_name: str) -> str:
    """``demo`` for the demo corpus (its voices are the demo's), ``paper`` for every real corpus."""
    return "demo" if corpus_name == "demo" else "paper"
