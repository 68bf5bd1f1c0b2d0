"""The paper's recipe at full size on one machine: wall time, peak memory and disk per stage.

Runs the stage commands (``deepclust corpus / mix / features / train``) one after another, each in its own
process, on the demo corpus standing in for WSJ0, at two scales in one run (default 0.1 and 1.0: 2,000 and
20,000 training mixtures). For each stage it prints wall seconds, the process's peak resident memory
(``wait4`` rusage, children included) and the disk the stage folder holds. The ratio of peak memory
between the two scales is the figure that matters: streaming stages stay flat as the set grows 10x.
Training runs a fixed number of steps (``--steps``) of the paper's network (2 x 600 BLSTM, D = 20) and
reports steps per second; validation on the full cv set is timed separately (from the stage's
history.csv).

    python benchmarks/bench_paper_size.py [--scales 0.1,1] [--steps 100] [--out /tmp/dpcl-paper]

Stages are cached by content key: rerunning with the same ``--out`` reuses finished stages (and then
reports their cached cost as 0), so use a fresh ``--out`` for figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DEEPCLUST = [sys.executable, "-m", "deepclust.cli"]


def run_stage(args: list[str]) -> tuple[str, float, float]:
    """Run one stage command; returns (last stdout line, wall seconds, peak RSS in MiB)."""
    began = time.perf_counter()
    process = subprocess.Popen(DEEPCLUST + args, cwd=REPO, stdout=subprocess.PIPE, text=True)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - began
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"stage failed with exit {code}: deepclust {' '.join(args)}")
    return out.strip().splitlines()[-1], seconds, usage.ru_maxrss / 1024  # Linux: ru_maxrss in KiB


def disk_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def stage_folder(manifest_url: str) -> Path:
    return Path(manifest_url.removeprefix("file://")).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="0.1,1", help="comma-separated scales of the 20k/5k/3k lists")
    parser.add_argument("--steps", type=int, default=100, help="training steps (batch 32 x 100 frames)")
    parser.add_argument("--out", default="/tmp/dpcl-paper", help="run roots go to OUT/scale-<s>/")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for feature and training stages")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    print(f"$ python benchmarks/bench_paper_size.py --scales {args.scales} --steps {args.steps} --out {args.out}")
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")

    rows = []
    for scale in (float(s) for s in args.scales.split(",")):
        root = Path(args.out) / f"scale-{scale:g}"
        corpus_url, s, rss = run_stage(["corpus", "demo", "--out", str(root)])
        rows.append(dict(scale=scale, stage="corpus", seconds=s, peak_mib=rss, disk_mib=disk_mib(stage_folder(corpus_url))))
        mix_url, s, rss = run_stage(["mix", "--corpus-manifest", corpus_url, "--test-speakers", "2,3",
                                     "--scale", str(scale), "--out", str(root)])
        mixtures = pd.read_parquet(mix_url.removeprefix("file://"))
        hours = mixtures.loc[mixtures["split"] == "tr", "num_samples"].sum() / 8000 / 3600 \
            if "num_samples" in mixtures else float("nan")
        rows.append(dict(scale=scale, stage=f"mix ({len(mixtures)} mixtures, tr {hours:.1f} h)", seconds=s,
                         peak_mib=rss, disk_mib=disk_mib(stage_folder(mix_url))))
        feat_url, s, rss = run_stage(["features", "--mixtures", mix_url, "--utterances-per-shard", "250",
                                      "--out", str(root)])
        shards = len(list((stage_folder(feat_url) / "shards").iterdir()))
        rows.append(dict(scale=scale, stage=f"features ({shards} shards)", seconds=s, peak_mib=rss,
                         disk_mib=disk_mib(stage_folder(feat_url))))
        model_url, s, rss = run_stage(["train", "--features", feat_url, "--preset", "paper", "--epochs", "1",
                                       "--steps-per-epoch", str(args.steps), "--batch-size", "32",
                                       "--device", "cpu", "--out", str(root)])
        history = pd.read_csv(stage_folder(model_url) / "history.csv")
        rows.append(dict(scale=scale, stage=f"train ({args.steps} steps + cv)", seconds=s, peak_mib=rss,
                         disk_mib=disk_mib(stage_folder(model_url)),
                         note=_train_note(history, args.steps)))

    table = pd.DataFrame(rows)
    print()
    print("| scale | stage | wall s | peak RSS MiB | disk MiB | note |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in table.itertuples():
        note = r.note if isinstance(getattr(r, "note", None), str) else ""
        print(f"| {r.scale:g} | {r.stage} | {r.seconds:.0f} | {r.peak_mib:.0f} | {r.disk_mib:.0f} | {note} |")
    scales = sorted(table["scale"].unique())
    if len(scales) > 1:
        small, big = (table[table["scale"] == s].reset_index(drop=True) for s in (scales[0], scales[-1]))
        print(f"\npeak memory ratio, scale {scales[-1]:g} / {scales[0]:g} (data grows {scales[-1] / scales[0]:g}x):")
        for a, b in zip(small.itertuples(), big.itertuples()):
            print(f"  {b.stage.split(' ')[0]}: {b.peak_mib / a.peak_mib:.2f}x memory, {b.seconds / max(a.seconds, 1e-9):.1f}x time, "
                  f"{b.disk_mib / max(a.disk_mib, 1e-9):.1f}x disk")
    print(f"\ndisk free under {args.out}: {shutil.disk_usage(args.out).free / 2**30:.0f} GiB")


def _train_note(history: pd.DataFrame, steps: int) -> str:
    """Steps per second of the training loop alone, and the validation pass's time, from history.csv."""
    last = history.iloc[-1]
    train_seconds = last["seconds"] - last["val_seconds"]
    return f"{last['steps'] / train_seconds:.2f} steps/s; cv pass {last['val_seconds']:.0f} s"


if __name__ == "__main__":
    main()
