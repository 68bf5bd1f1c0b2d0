"""Where a CPU training step goes: precision, batch shape, batch drawing overlapped or not, threads.

Times whole training steps as ``fit`` runs them (``train_epoch``: drawing the dynamically mixed batch,
STFT, forward, loss, backward, clipping, Adam) of the Chimera++ network on real speech, under the settings
a user can change, all in one run so that the ratios are comparable on a shared machine. Frames per second
is the figure that matters: training quality grows with the number of mixture frames seen. The same run
prints the machine's float32 and bf16 GEMM rates and the share of the bf16 rate each step reaches.

    python benchmarks/bench_train_step.py [--steps 6] [--threads 2] [--augment] [--teacher]

``--teacher`` times instead what a teacher costs (``train-dynamic --teacher``, issue 31): the 2 x 300 network and
the conv2 network, each without and with the shipped model annotating every batch (its forward pass, embeddings
included), so the overhead is a ratio within one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from deepclust.corpora.sources import CorpusSource, prepare_sources  # noqa: E402
from deepclust.features.extract import FeatureConfig  # noqa: E402
from deepclust.model.blstm import DeepClusteringNet, ModelConfig, training_flops_per_frame  # noqa: E402
from deepclust.model.device import autocast_dtype, bf16_support, cpu_name  # noqa: E402
from deepclust.model.lineage import ParentModel  # noqa: E402
from deepclust.pretrained import path as pretrained_path  # noqa: E402
from deepclust.training.augment import AugmentConfig  # noqa: E402
from deepclust.training.config import TrainConfig  # noqa: E402
from deepclust.training.dynamic_mixing import DynamicMixConfig, DynamicMixing, SourcePool  # noqa: E402
from deepclust.training.prefetch import prefetched  # noqa: E402
from deepclust.training.steps import torch_settings, train_epoch  # noqa: E402
from deepclust.training.teacher import TaughtBatches, Teacher  # noqa: E402

CORPORA = REPO.parent / "shared" / "corpora"


def gemm_rate(dtype: torch.dtype, size: int = 2048, repeat: int = 6) -> float:
    """GFLOP/s of a square matmul in ``dtype`` on the current threads."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b
    began = time.perf_counter()
    for _ in range(repeat):
        a @ b
    return 2 * size**3 * repeat / (time.perf_counter() - began) / 1e9


def time_steps(
    source,
    preset: str,
    precision: str,
    compile: bool,
    batch_size: int,
    frames: int,
    steps: int,
    prefetch: int,
    overrides: dict | None = None,
) -> float:
    """Frames per second of ``steps`` whole training steps (after two warm-up steps, which compile)."""
    torch.manual_seed(0)
    model = DeepClusteringNet(ModelConfig.preset(preset, **(overrides or {})))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    config = TrainConfig(dc_loss="whitened", precision=precision, prefetch_batches=prefetch)
    device = torch.device("cpu")
    dtype = autocast_dtype(precision, device)
    warm = source.training_batches([0, 0, 0], frames, batch_size, 2)
    train_epoch(model, optimiser, scaler, warm, device, dtype, 5.0, config, compile)
    began = time.perf_counter()
    batches = prefetched(source.training_batches([0, 1, 0], frames, batch_size, steps), prefetch)
    train_epoch(model, optimiser, scaler, batches, device, dtype, 5.0, config, compile)
    return batch_size * frames * steps / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--augment", action="store_true", help="draw batches with the shipped recipe's augmentation")
    parser.add_argument("--quick", action="store_true", help="the first four settings only")
    parser.add_argument("--teacher", action="store_true", help="only the rows without and with the shipped teacher")
    args = parser.parse_args()
    with torch_settings(TrainConfig(num_threads=args.threads), torch.device("cpu")):  # as fit() trains on CPU
        run(args)


def run(args) -> None:
    corpus = prepare_sources([CorpusSource(str(CORPORA / "librispeech-speakers"), "librispeech")], test_fraction=0.25)
    pool = SourcePool(corpus[corpus["subset"] == "train"].head(60), 8000)
    augment = AugmentConfig.recipe(str(CORPORA / "noise")) if args.augment else AugmentConfig()
    source = DynamicMixing(pool, pool, FeatureConfig(), DynamicMixConfig(stats_mixtures=64), seed=0, augment=augment)
    fp32 = gemm_rate(torch.float32)
    bf16 = gemm_rate(torch.bfloat16) if bf16_support().runs else fp32  # (the share column is then of fp32's)
    print(
        f"$ python benchmarks/bench_train_step.py --steps {args.steps} --threads {args.threads}"
        f"{' --augment' if args.augment else ''}{' --teacher' if args.teacher else ''}"
    )
    print(
        f"GEMM 2048^3 at {args.threads} threads: float32 {fp32:.0f} GFLOP/s, "
        + (f"bfloat16 {bf16:.0f} GFLOP/s ({bf16 / fp32:.1f}x)" if bf16_support().runs else "no bfloat16 here")
        + f"; {cpu_name()}, bf16 here: {bf16_support()}, "
        f"oneDNN ISA cap: {os.environ.get('ONEDNN_MAX_CPU_ISA', 'none')}"
    )
    print(
        "| network | precision | compiled heads + loss | batch x frames | prefetch | frames/s | vs first row | "
        "share of bf16 GEMM rate |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    settings = [
        ("chimera++", "fp32", False, 16, 400, 0, None),  # the shipped model's recipe before bf16
        ("chimera++", "bf16", False, 16, 400, 0, None),
        ("chimera++", "bf16", True, 16, 400, 0, None),
        ("chimera++", "bf16", True, 16, 400, 2, None),  # prefetching (off by default: see RESULTS.md)
        ("chimera++", "bf16", True, 32, 400, 2, None),
        ("chimera++", "bf16", True, 64, 200, 2, None),
        ("chimera++", "fp32", True, 16, 400, 2, None),
        ("chimera++-3x400", "bf16", True, 16, 400, 2, None),
        ("chimera++-conv2", "bf16", True, 16, 400, 2, None),
        ("chimera++-grown", "bf16", True, 16, 400, 0, None),  # release 7 plus a residual BLSTM layer (issue 31)
        ("chimera++-grown", "fp32", True, 16, 400, 0, None),
    ]
    if not bf16_support().runs:  # an AVX2-only CPU: the float32 rows only (bf16 would be refused)
        settings = [row for row in settings if row[1] == "fp32"]
        settings.insert(2, ("chimera++-conv2", "fp32", True, 16, 400, 0, None))
    if args.quick:
        settings = settings[:4]
    taught = {}
    if args.teacher:  # the same batches, annotated by the shipped model, as train-dynamic --teacher draws them
        precision = "bf16" if bf16_support().runs else "fp32"
        settings = [(preset, precision, True, 16, 400, 0, None) for preset in ("chimera++", "chimera++-conv2")] * 2
        teacher = Teacher(ParentModel.read(pretrained_path()), TrainConfig(precision=precision, device="cpu"))
        taught = dict.fromkeys((2, 3), TaughtBatches(source, teacher))
        print("(rows 3-4: every batch annotated by the shipped model, taught_by weight 0.5)")
    first = None
    for row, (preset, precision, compiled, batch_size, frames, prefetch, overrides) in enumerate(settings):
        rate = time_steps(
            taught.get(row, source), preset, precision, compiled, batch_size, frames, args.steps, prefetch, overrides
        )
        first = first or rate
        config = ModelConfig.preset(preset, **(overrides or {}))
        share = rate * training_flops_per_frame(config) / (bf16 * 1e9)
        print(
            f"| {preset} | {precision} | {compiled} | {batch_size} x {frames} | {prefetch} | {rate:.0f} | "
            f"{rate / first:.2f}x | {share:.1%} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
