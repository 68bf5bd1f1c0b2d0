"""Training throughput of the shipped recipe as one process against several data-parallel ones, in one run.

Runs the real ``train-dynamic`` job (``deepclust.training.processes.train_dynamic_on_processes``: dynamic mixing
with the shipped recipe's augmentation, bf16, compiled heads and losses, Chimera++ 2 x 300) for two epochs of
``--steps`` steps in each setting, and times the second epoch from ``history.csv`` (the first pays for compiling).
Frames per second counts every process's mixtures: processes x batch x frames x steps / seconds. The float32
single-process row is the baseline of issue 16's "2x fp32 frames/s" target. Needs the machine to itself.

    python benchmarks/bench_train_processes.py [--steps 20] [--cores 2] [--shapes 16x400,32x400]

``--shapes`` adds one-process bf16 rows at other batch x frames shapes (a larger batch per step has at least
the quality per step of the shipped 16 x 400, so it counts toward the target when it is faster per frame).
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
from deepclust.training import steps  # noqa: E402
from deepclust.training.processes import train_dynamic_on_processes  # noqa: E402

CORPORA = REPO.parent / "shared" / "corpora"
BATCH, FRAMES = 16, 400


def epoch_seconds(processes: int, threads: int, precision: str, steps_per_epoch: int, corpus, out: Path,
                  batch: int = BATCH, frames: int = FRAMES, filled: bool = False) -> float:
    """Seconds of the second epoch (steps plus one small validation) of a fresh run in this setting.
    ``filled``: new tensors NaN-filled as deterministic mode did before (the step as issue 16 measured it)."""
    steps.FILL_UNINITIALISED_MEMORY = filled
    config = TrainConfig(chunk_frames=frames, batch_size=batch, steps_per_epoch=steps_per_epoch, max_epochs=2,
                         patience=9,
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
    parser.add_argument("--shapes", default="", help="extra one-process bf16 shapes, e.g. 32x400,64x200")
    parser.add_argument("--no-processes", action="store_true", help="leave out the data-parallel row")
    args = parser.parse_args()
    corpus = prepare_sources([CorpusSource(str(CORPORA / "librispeech-speakers"), "librispeech")])
    # The first row is the baseline of the target: float32 as the issue measured it, NaN-filling included.
    settings = [(1, args.cores, "fp32", BATCH, FRAMES, True), (1, args.cores, "fp32", BATCH, FRAMES, False),
                (1, args.cores, "bf16", BATCH, FRAMES, False)]
    if not args.no_processes:
        settings.append((args.cores, 1, "bf16", BATCH, FRAMES, False))
    for shape in filter(None, args.shapes.split(",")):
        batch, frames = (int(part) for part in shape.split("x"))
        settings.append((1, args.cores, "bf16", batch, frames, False))
    extra = (f" --shapes {args.shapes}" if args.shapes else "") + (" --no-processes" if args.no_processes else "")
    print(f"$ python benchmarks/bench_train_processes.py --steps {args.steps} --cores {args.cores}{extra}")
    print("| processes x threads | precision | new tensors | batch x frames | effective batch | frames/s "
          "| vs first row |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    first = None
    with tempfile.TemporaryDirectory(prefix="bench-processes-") as folder:
        for processes, threads, precision, batch, frames, filled in settings:
            seconds = epoch_seconds(processes, threads, precision, args.steps, corpus,
                                    Path(folder) / f"{processes}x{threads}-{precision}-{batch}x{frames}-{filled}",
                                    batch, frames, filled)
            rate = processes * batch * frames * args.steps / seconds
            first = first or rate
            print(f"| {processes} x {threads} | {precision} | {'NaN-filled (before)' if filled else 'not filled'} "
                  f"| {batch} x {frames} | {processes * batch} | {rate:.0f} | {rate / first:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
