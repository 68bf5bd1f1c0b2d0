"""Separation quality on FSDD: speakers george and lucas held out of training.

Prints SDRi and SI-SDRi of the model beside the IBM/IRM ceilings, for closed speakers (new utterances of
the four training speakers, the 'cv' mixtures) and open speakers (the two held-out speakers, 'tt').
Fixed training budget: a paper-size BLSTM (2 x 300, D = 20) for STEPS optimiser steps of 32 chunks of
100 frames (Adam 1e-3), the paper's recipe otherwise. Six speakers are too few to learn
speaker-independent embeddings, so expect the open-speaker figure to stay near 0 dB.

    python benchmarks/bench_quality_fsdd.py [--steps 1200] [--root runs/bench-fsdd]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from deepclust import storage  # noqa: E402
from deepclust.features.extract import FeatureConfig  # noqa: E402
from deepclust.model.blstm import ModelConfig  # noqa: E402
from deepclust.pipeline.driver import run_stage  # noqa: E402
from deepclust.reports.summary import headline, markdown_table, summarise_by_condition  # noqa: E402
from deepclust.stages.corpus import CorpusConfig, plan_corpus  # noqa: E402
from deepclust.stages.evaluate import EvaluateConfig, plan_evaluate  # noqa: E402
from deepclust.stages.features import plan_features  # noqa: E402
from deepclust.stages.mixtures import MixStageConfig, plan_mixtures  # noqa: E402
from deepclust.stages.separate import SeparateConfig, plan_separate  # noqa: E402
from deepclust.stages.train import plan_train  # noqa: E402
from deepclust.training.config import TrainConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--root", default=str(REPO / "runs" / "bench-fsdd"))
    parser.add_argument("--fsdd", default=str(REPO.parent / "shared" / "corpora" / "fsdd" / "recordings"))
    args = parser.parse_args()
    began = time.perf_counter()
    corpus = run_stage(
        plan_corpus(
            args.root, CorpusConfig(name="folder", root=args.fsdd, pattern="fsdd", test_speakers=["george", "lucas"])
        )
    )
    mixtures = run_stage(plan_mixtures(args.root, corpus, MixStageConfig(sizes={"tr": 4000, "cv": 200, "tt": 200})))
    features = run_stage(plan_features(args.root, mixtures, FeatureConfig()))
    epochs = max(1, args.steps // 100)
    train_config = TrainConfig(max_epochs=epochs, steps_per_epoch=100, batch_size=32, patience=epochs, device="auto")
    model = run_stage(plan_train(args.root, features, ModelConfig.preset("paper"), train_config))
    separated = run_stage(plan_separate(args.root, model, mixtures, SeparateConfig(splits=("cv", "tt"))))
    results = run_stage(plan_evaluate(args.root, separated, mixtures, EvaluateConfig()))
    print(f"$ python benchmarks/bench_quality_fsdd.py --steps {args.steps}")
    print(f"training budget: {epochs * 100} steps of 32 x 100-frame chunks, 2 x 300 BLSTM, D = 20")
    print(markdown_table(headline(summarise_by_condition(storage.read_parquet(results), results))))
    print(f"wall time {time.perf_counter() - began:.0f} s (stages reused from {args.root} when present)")


if __name__ == "__main__":
    main()
