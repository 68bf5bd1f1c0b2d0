"""Where a CPU training step goes: threads, batch shape, deterministic kernels, loss and data.

Times full optimiser steps (forward, loss, backward, clipping, Adam) of the 2 x 300 Chimera++ network on
dynamically mixed real speech, under the settings a user can change, all in one run so that the ratios
are comparable on a shared machine. Frames per second is the figure that matters: training quality grows
with the number of mixture frames seen.

    python benchmarks/bench_train_step.py [--steps 4]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from deepclust.corpora.sources import CorpusSource, prepare_sources  # noqa: E402
from deepclust.features.extract import FeatureConfig  # noqa: E402
from deepclust.model.blstm import DeepClusteringNet, ModelConfig  # noqa: E402
from deepclust.training.config import TrainConfig  # noqa: E402
from deepclust.training.dynamic_mixing import DynamicMixConfig, DynamicMixing, SourcePool  # noqa: E402
from deepclust.training.train import _batch_loss  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpora" / "librispeech-speakers"


def time_steps(source, threads, batch_size, frames, steps, deterministic, dc_loss, preset="chimera++") -> tuple:
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.manual_seed(0)
    model = DeepClusteringNet(ModelConfig.preset(preset))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    config = TrainConfig(dc_loss=dc_loss)
    batches = list(source.training_batches([0, 0, 0], frames, batch_size, steps + 1))
    data_began = time.perf_counter()
    list(source.training_batches([0, 1, 0], frames, batch_size, steps))
    data_seconds = (time.perf_counter() - data_began) / steps
    for index, batch in enumerate(batches):
        if index == 1:  # the first step warms up allocators and kernels
            began = time.perf_counter()
        loss = _batch_loss(model, batch, torch.device("cpu"), None, config)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimiser.step()
    step = (time.perf_counter() - began) / steps
    return step, data_seconds, batch_size * frames / (step + data_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    corpus = prepare_sources([CorpusSource(str(CORPUS), "librispeech")], test_fraction=0.25)
    pool = SourcePool(corpus[corpus["subset"] == "train"].head(60), 8000)
    source = DynamicMixing(pool, pool, FeatureConfig(), DynamicMixConfig(stats_mixtures=64), seed=0)
    print(f"$ python benchmarks/bench_train_step.py --steps {args.steps}")
    print("| threads | batch x frames | deterministic | DC loss | step (s) | data (s) | frames/s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    settings = [
        (2, 16, 400, True, "whitened"),   # the shipped model's recipe
        (2, 16, 400, False, "whitened"),
        (1, 16, 400, True, "whitened"),
        (2, 32, 100, True, "whitened"),
        (2, 8, 800, True, "whitened"),
        (2, 16, 400, True, "classic"),
    ]
    for threads, batch_size, frames, deterministic, dc_loss in settings:
        step, data, rate = time_steps(source, threads, batch_size, frames, args.steps, deterministic, dc_loss)
        print(f"| {threads} | {batch_size} x {frames} | {deterministic} | {dc_loss} | {step:.2f} | {data:.3f} | "
              f"{rate:.0f} |", flush=True)


if __name__ == "__main__":
    main()
