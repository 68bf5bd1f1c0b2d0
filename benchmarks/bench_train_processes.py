"""Training throughput of the shipped recipe: float32 against bf16, one process against several, in one run.

Runs the real ``train-dynamic`` job (``deepclust.training.processes.train_dynamic_on_processes``: dynamic mixing
with the shipped recipe's augmentation, compiled heads and losses, Chimera++ 2 x 300) for two epochs of
``--steps`` steps in each setting, and times the second epoch from ``history.csv`` (the first pays for compiling).
Frames per second counts every process's mixtures: processes x batch x frames x steps / seconds. Needs the
machine to itself.

    python benchmarks/bench_train_processes.py [--steps 20] [--cores 2] [--baseline-tree DIR]
        [--shapes 32x400,64x200] [--no-processes] [--waveform-loss]

``--baseline-tree DIR``: a checkout of an earlier commit (``git worktree add DIR <commit>``); its code trains the
first row, float32, in a subprocess of this run. That row is the "today's fp32" of issue 16's 2x target, so that
speed-ups of the shared step (which float32 gets too) count against the code they improved on.
``--shapes`` adds one-process bf16 rows at other batch x frames shapes (a larger batch per step has at least the
quality per step of the shipped 16 x 400, so it counts toward the target when it is faster per frame).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
# A baseline row's subprocess imports the baseline tree's deepclust instead of this one.
sys.path.insert(0, os.environ.get("DEEPCLUST_BENCH_TREE", str(REPO)))

from deepclust.corpora.sources import CorpusSource, prepare_sources  # noqa: E402
from deepclust.model.blstm import ModelConfig  # noqa: E402
from deepclust.training.augment import AugmentConfig  # noqa: E402
from deepclust.training.config import TrainConfig  # noqa: E402
from deepclust.training.dynamic_mixing import DynamicMixConfig  # noqa: E402
from deepclust.training.processes import train_dynamic_on_processes  # noqa: E402

CORPORA = REPO.parent / "shared" / "corpora"
BATCH, FRAMES = 16, 400


def epoch_seconds(
    processes: int,
    threads: int,
    precision: str,
    steps_per_epoch: int,
    out: Path,
    batch: int = BATCH,
    frames: int = FRAMES,
    waveform_loss_weight: float = 0.0,
) -> float:
    """Seconds of the second epoch's steps (its small validation apart) of a fresh run in this setting."""
    corpus = prepare_sources([CorpusSource(str(CORPORA / "librispeech-speakers"), "librispeech")])
    config = TrainConfig(
        chunk_frames=frames,
        batch_size=batch,
        steps_per_epoch=steps_per_epoch,
        max_epochs=2,
        patience=9,
        device="cpu",
        seed=0,
        dc_loss="whitened",
        precision=precision,
        compile="on",
        num_threads=threads,
        **({"waveform_loss_weight": waveform_loss_weight} if waveform_loss_weight else {}),
    )
    train_dynamic_on_processes(
        processes,
        threads,
        corpus_manifest=corpus,
        out_url=str(out),
        model_config=ModelConfig.preset("chimera++"),
        train_config=config,
        mix_config=DynamicMixConfig(cv_mixtures=16, stats_mixtures=64),
        augment=AugmentConfig.recipe(str(CORPORA / "noise")),
    )
    history = pd.read_csv(out / "history.csv")
    return float(history["seconds"].iloc[-1] - history["val_seconds"].iloc[-1])


def baseline_seconds(tree: Path, threads: int, steps_per_epoch: int, out: Path) -> float:
    """``epoch_seconds`` of the float32 row with ``tree``'s code, in a subprocess."""
    environment = {**os.environ, "DEEPCLUST_BENCH_TREE": str(tree.resolve())}
    done = subprocess.run(
        [sys.executable, __file__, "--one-row", f"{threads},{steps_per_epoch},{out}"],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--baseline-tree", type=Path, help="an earlier checkout: its code trains the fp32 row")
    parser.add_argument("--shapes", default="", help="extra one-process bf16 shapes, e.g. 32x400,64x200")
    parser.add_argument("--no-processes", action="store_true", help="leave out the data-parallel row")
    parser.add_argument(
        "--waveform-loss",
        action="store_true",
        help="add a bf16 row trained with --waveform-loss-weight 1 (its inverse STFTs cost)",
    )
    parser.add_argument("--one-row", help=argparse.SUPPRESS)  # THREADS,STEPS,OUT: a baseline subprocess
    args = parser.parse_args()
    if args.one_row:
        threads, steps, out = args.one_row.split(",", 2)
        print(epoch_seconds(1, int(threads), "fp32", int(steps), Path(out)))
        return
    # (label, processes, threads, precision, batch, frames, waveform loss weight)
    settings = [("this tree", 1, args.cores, precision, BATCH, FRAMES, 0.0) for precision in ("fp32", "bf16")]
    if args.baseline_tree:
        settings.insert(0, (f"baseline {args.baseline_tree.name}", 1, args.cores, "fp32", BATCH, FRAMES, 0.0))
    if args.waveform_loss:
        settings.append(("this tree, waveform loss", 1, args.cores, "bf16", BATCH, FRAMES, 1.0))
    if not args.no_processes:
        settings.append(("this tree", args.cores, 1, "bf16", BATCH, FRAMES, 0.0))
    for shape in filter(None, args.shapes.split(",")):
        batch, frames = (int(part) for part in shape.split("x"))
        settings.append(("this tree", 1, args.cores, "bf16", batch, frames, 0.0))
    print("$ python benchmarks/bench_train_processes.py " + " ".join(sys.argv[1:]))
    print("| code | processes x threads | precision | batch x frames | effective batch | frames/s | vs first row |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    first = None
    with tempfile.TemporaryDirectory(prefix="bench-processes-") as folder:
        for number, (label, processes, threads, precision, batch, frames, waveform) in enumerate(settings):
            out = Path(folder) / f"row-{number}"
            if label.startswith("baseline"):
                seconds = baseline_seconds(args.baseline_tree, threads, args.steps, out)
            else:
                seconds = epoch_seconds(processes, threads, precision, args.steps, out, batch, frames, waveform)
            rate = processes * batch * frames * args.steps / seconds
            first = first or rate
            print(
                f"| {label} | {processes} x {threads} | {precision} | {batch} x {frames} | {processes * batch} "
                f"| {rate:.0f} | {rate / first:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
