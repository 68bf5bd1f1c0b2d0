"""The ceiling bf16 sets for a training step on this CPU: the network's own forward and backward, nothing else.

Times Chimera++'s trunk (``nn.LSTM(129, 300, 2, bidirectional)``) and its embedding head's matmul
(``Linear(600, 2580)``), forward plus backward, in float32 and under bf16 autocast, at a few batch shapes, in
one run. A whole training step adds batch drawing, normalisation, the losses and Adam to this, so its bf16
speed-up over float32 cannot much exceed the "lstm+head" ratio printed here (issue 16's 2x target).

    python benchmarks/bench_network_bf16.py [--threads 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepclust.training.config import TrainConfig  # noqa: E402
from deepclust.training.steps import torch_settings  # noqa: E402


def frames_per_second(lstm, head, batch: int, frames: int, precision: str, with_head: bool, repeat: int) -> float:
    x = torch.randn(batch, frames, 129)

    def once():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            hidden, _ = lstm(x)
            out = head(hidden) if with_head else hidden
        out.float().sum().backward()

    once()  # warm-up: oneDNN primitives for this shape
    began = time.perf_counter()
    for _ in range(repeat):
        once()
    return batch * frames * repeat / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with torch_settings(TrainConfig(num_threads=args.threads), torch.device("cpu")):  # as training runs
        table(args.repeat)


def table(repeat: int) -> None:
    lstm = torch.nn.LSTM(129, 300, 2, batch_first=True, bidirectional=True)
    head = torch.nn.Linear(600, 2580)
    print("$ python benchmarks/bench_network_bf16.py " + " ".join(sys.argv[1:]))
    print("| part | batch x frames | fp32 frames/s | bf16 frames/s | bf16 / fp32 |")
    print("| --- | --- | --- | --- | --- |")
    for with_head in (False, True):
        for batch, frames in ((16, 400), (32, 200), (64, 100), (32, 400)):
            fp32, bf16 = (frames_per_second(lstm, head, batch, frames, p, with_head, repeat) for p in ("fp32", "bf16"))
            print(
                f"| {'lstm+head' if with_head else 'lstm'} | {batch} x {frames} | {fp32:.0f} | {bf16:.0f} "
                f"| {bf16 / fp32:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
