"""One typed config per stage; defaults are the paper's recipe unless a comment says otherwise.

``ReproduceConfig`` composes them for the end-to-end run; ``ReproduceConfig.demo()`` is the README's
main job, sized for a 2-core machine.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from deepclust.features.extract import FeatureConfig
from deepclust.mixing.mix import MixConfig
from deepclust.model.blstm import ModelConfig
from deepclust.separation.long import WindowConfig
from deepclust.training.config import TrainConfig


@dataclass
class CorpusConfig:
    """Which corpus becomes the utterance manifest.

    ``name``: "demo" (synthesised offline), "wsj0" (``root`` = the converted WSJ0 tree), "folder"
    (``root`` + ``pattern``: "librispeech", "vctk", "fsdd", "speechocean762" or a regex with a ``speaker``
    group), "sources" (several folders, ``sources`` = ``[NAME:]ROOT[=PATTERN]`` strings, ids namespaced
    ``NAME/...``, split per source; see ``deepclust.corpora.sources``).
    """

    name: str = "demo"
    root: str | None = None
    pattern: str | None = None
    test_speakers: list[str] | None = None
    seed: int = 0
    utterances_per_speaker: int | None = None  # demo only: None = the demo's default
    sources: list[str] | None = None  # "sources" only


@dataclass
class MixStageConfig:
    """wsj0-2mix recipe: 20k/5k/3k mixtures (scaled by ``scale``), relative SNR 0-5 dB, 8 kHz, 'min'.

    ``sample_rate`` and ``mode`` are ``deepclust.mixing.mix.MixConfig``'s (their defaults come from there);
    this config adds what the stage needs around it: list sizes, speaker counts, seed, unit size.
    """

    n_speakers: int = 2
    test_speaker_counts: tuple[int, ...] = (2,)  # add 3 for the paper's 2->3 speaker generalisation test
    sample_rate: int = MixConfig.sample_rate
    mode: str = MixConfig.mode
    sizes: dict = field(default_factory=lambda: {"tr": 20000, "cv": 5000, "tt": 3000})
    scale: float = 1.0
    seed: int = 0
    mix_lists: dict | None = None  # {"tr": url, "cv": url, "tt": url}: official lists, used instead of generating
    batch_size: int = 250  # mixtures per work unit


@dataclass
class SeparateConfig:
    """The recipe's separation stage (the one separation loop, ``deepclust.separation.batch``)."""

    kmeans: str = "auto"  # "auto" (torch on CUDA, scikit-learn on CPU), "torch" (batched) or "sklearn"
    device: str = "auto"
    inference: str = "auto"  # "auto" (a Chimera++ model's mask head, else k-means), "mask" or "kmeans"
    batch_size: int = WindowConfig.windows_per_batch  # mixtures per network forward / batched k-means
    # Test utterances are separated whole, as the paper does (wsj0-2mix mixtures last at most ~ 20 s);
    # only longer recordings would be cut into windows.
    window_seconds: float = 60.0
    unit_size: int = 100  # mixtures per work unit (one Prefect task each)
    splits: tuple[str, ...] = ("tt",)


@dataclass
class EvaluateConfig:
    """The recipe's evaluation stage: metric backend, oracle masks scored beside the model, mixtures per unit."""
    backend: str = "fast"  # "fast" (agrees with mir_eval within 0.01 dB) or "mir_eval"
    oracles: tuple[str, ...] = ("ibm", "irm")
    unit_size: int = 100


@dataclass
class ReproduceConfig:
    """The whole recipe, end to end: the run folder and one config per stage."""
    run_root: str = "runs/demo"
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    mix: MixStageConfig = field(default_factory=MixStageConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    separate: SeparateConfig = field(default_factory=SeparateConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)

    def to_dict(self) -> dict:
        """JSON-able form, as in ``run.json`` (``flows.reproduce.config_from_dict`` reads it back)."""
        return dataclasses.asdict(self)


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
