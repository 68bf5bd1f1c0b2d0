"""Training throughput of the shipped recipe as one process against several data-parallel ones, in one run.

Runs the real ``train-dynamic`` job (``deepclust.training.processes.train_dynamic_on_processes``: dynamic mixing
with the shipped recipe's augmentation, bf16, compiled heads and losses, Chimera++ 2 x 300) for two epochs of
``--steps`` steps in each setting, and times the second epoch from ``history.csv`` (the first pays for compiling).
Frames per second counts every process's mixtures: processes x batch x frames x steps / seconds. The float32
single-process row is the baseline of issue 16's "2x fp32 frames/s" target. Needs the machine to itself.

    python benchmarks/bench_train_processes.py [--steps 20] [--cores 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from deepclust.corpora.sources import CorpusSource, prepare_sources  # noqa: E402
from deepclust.model.blstm import ModelConfig  # noqa: E402
from deepclust.training.augment import AugmentConfig  # noqa: E402
from deepclust.training.config import TrainConfig  # noqa: E402
from deepclust.training.dynamic_mixing import DynamicMixConfig  # noqa: E402
from deepclust.training.processes import train_dynamic_on_processes  # noqa: E402

CORPORA = REPO.parent / "shared" / "corpora"
BATCH, FRAMES = 16, 400


def epoch_seconds(processes: int, threads: int, precision: str, steps: int, corpus, out: Path) -> float:
    """Seconds of the second epoch (steps plus one small validation) of a fresh run in this setting."""
    config = TrainConfig(chunk_frames=FRAMES, batch_size=BATCH, steps_per_epoch=steps, max_epochs=2, patience=9,
                         device="cpu", seed=0, dc_loss="whitened", precision=precision, compile="on",
                         num_threads=threads)
    train_dynamic_on_processes(processes, threads, corpus_manifest=corpus, out_url=str(out),
                               model_config=ModelConfig.preset("chimera++"), train_config=config,
                               mix_config=DynamicMixConfig(cv_mixtures=16, stats_mixtures=64),
                               augment=AugmentConfig.recipe(str(CORPORA / "noise")))
    history = pd.read_csv(out / "history.csv")
    return float(history["seconds"].iloc[-1] - history["val_seconds"].iloc[-1])  # steps only, validation apart


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    corpus = prepare_sources([CorpusSource(str(CORPORA / "librispeech-speakers"), "librispeech")])
    settings = [(1, args.cores, "fp32"), (1, args.cores, "bf16"), (args.cores, 1, "bf16")]
    print(f"$ python benchmarks/bench_train_processes.py --steps {args.steps} --cores {args.cores}")
    print("| processes x threads | precision | effective batch | frames/s | vs first row |")
    print("| --- | --- | --- | --- | --- |")
    first = None
    with tempfile.TemporaryDirectory(prefix="bench-processes-") as folder:
        for processes, threads, precision in settings:
            seconds = epoch_seconds(processes, threads, precision, args.steps, corpus,
                                    Path(folder) / f"{processes}x{threads}-{precision}")
            rate = processes * BATCH * FRAMES * args.steps / seconds
            first = first or rate
            print(f"| {processes} x {threads} | {precision} | {processes * BATCH} | {rate:.0f} | {rate / first:.2f}x |",
                  flush=True)


if __name__ == "__main__":
    main()
