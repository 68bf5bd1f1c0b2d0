"""Archive separation throughput and peak memory, with a randomly initialised paper-size model.

Throughput: a small archive (FSDD mixtures at 8/16/22.05 kHz, mono and stereo, plus two 60 s
recordings that go through the windowed path) separated by ``separate_archive``; printed as the
real-time factor (seconds of audio per second of wall clock) with the time split into read/resample,
network, clustering and write. The network is untrained, which costs exactly what a trained one does.

Peak memory: ``separate_long`` on a 10-minute and a 60-minute 16 kHz input, each in a fresh child
process reporting its own ``ru_maxrss``; the two must be about equal (memory bounded by the window).
``--memory-model shipped`` measures it with the shipped Chimera++ model instead, whose mask head keeps the
last windows' trunk outputs for the speaker alignment (``WindowCentroids``): bounded too, which this shows.

    python benchmarks/bench_archive.py [--device cpu] [--threads 2] [--long-minutes 10 60]
    python benchmarks/bench_archive.py --skip-throughput --memory-model shipped --long-minutes 10 60
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from deepclust import pretrained  # noqa: E402
from deepclust.archive import separate_archive  # noqa: E402
from deepclust.audio import read_audio, resample  # noqa: E402
from deepclust.features.extract import FeatureConfig  # noqa: E402
from deepclust.features.normalisation import FeatureStats  # noqa: E402
from deepclust.model.blstm import DeepClusteringNet, ModelConfig  # noqa: E402
from deepclust.model.checkpoint import save_model  # noqa: E402
from deepclust.separation.long import WindowConfig, separate_long  # noqa: E402

CORPORA = REPO.parent / "shared" / "corpora"
SPEAKERS = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]


def paper_model(path: Path) -> str:
    torch.manual_seed(0)
    model = DeepClusteringNet(ModelConfig.preset("paper"))
    save_model(str(path), model, FeatureStats(np.full(129, -4.0), np.full(129, 2.0)), FeatureConfig().to_dict())
    return str(path)


def fsdd_mixture(i: int) -> np.ndarray:
    fsdd = CORPORA / "fsdd" / "recordings"
    a = read_audio(fsdd / f"{i % 10}_{SPEAKERS[i % 6]}_{i % 50}.wav")[0]
    b = read_audio(fsdd / f"{(i + 3) % 10}_{SPEAKERS[(i + 1) % 6]}_{(i + 7) % 50}.wav")[0]
    n = max(len(a), len(b))
    return 0.45 * (np.pad(a, (0, n - len(a))) + np.pad(b, (0, n - len(b))))


def write_long(path: Path, minutes: float, sr: int = 16000, block_seconds: float = 30.0) -> None:
    """A long two-speaker recording written block by block (FSDD mixtures back to back, resampled)."""
    pieces = np.concatenate([resample(fsdd_mixture(i), 8000, sr) for i in range(60)])
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", samplerate=sr, channels=1, subtype="PCM_16") as handle:
        remaining = int(minutes * 60 * sr)
        while remaining > 0:
            block = np.roll(pieces, int(rng.integers(len(pieces))))[: min(remaining, int(block_seconds * sr))]
            handle.write(block)
            remaining -= len(block)


def build_archive(root: Path) -> float:
    formats = [("wav", 8000), ("flac", 16000), ("ogg", 22050)]
    for i in range(48):
        ext, sr = formats[i % 3]
        signal = resample(fsdd_mixture(i), 8000, sr)
        if i % 4 == 1:
            signal = np.stack([signal, 0.6 * signal], axis=1)
        (root / f"set{i % 4}").mkdir(parents=True, exist_ok=True)
        sf.write(root / f"set{i % 4}" / f"mix_{i:02d}.{ext}", signal, sr)
    (root / "long").mkdir(exist_ok=True)
    write_long(root / "long" / "a.flac", 1.0, 16000)
    write_long(root / "long" / "b.wav", 1.0, 22050)
    return sum(sf.info(p).duration for p in root.rglob("*.*"))


def throughput(model: str, device: str, work: Path) -> dict:
    archive = work / "archive"
    audio = build_archive(archive)
    began = time.perf_counter()
    summary = separate_archive(
        model, str(archive), str(work / "out"), n_speakers=2, files_per_batch=16, window=WindowConfig(), device=device
    )
    wall = time.perf_counter() - began
    assert summary["failed"] == 0, summary["failed_inputs"]
    timing = {k: summary[k] for k in ("read_seconds", "network_seconds", "clustering_seconds", "write_seconds")}
    return {
        "files": summary["done"],
        "audio_seconds": round(audio, 1),
        "wall_seconds": round(wall, 2),
        "real_time_factor": round(audio / wall, 1),
        **{k: round(v, 2) for k, v in timing.items()},
        "split_percent": {
            k.removesuffix("_seconds"): round(100 * v / sum(timing.values()), 1) for k, v in timing.items()
        },
    }


def memory_child(model: str, device: str, path: str, out_dir: str) -> None:
    from deepclust.separation.separator import Separator

    info = separate_long(
        Separator(model, device),
        path,
        [os.path.join(out_dir, "s1.wav"), os.path.join(out_dir, "s2.wav")],
        2,
        WindowConfig(),
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "peak_rss_mb": round(peak_mb, 1),
                "windows": info["windows"],
                "real_time_factor": round(info["duration"] / info["seconds"], 1),
                **{
                    k: round(info[k], 1)
                    for k in ("read_seconds", "network_seconds", "clustering_seconds", "write_seconds")
                },
            }
        )
    )


def peak_memory(model: str, device: str, threads: int, minutes: float, work: Path) -> dict:
    path = work / f"long_{minutes:g}min.wav"
    write_long(path, minutes)
    out = work / f"out_{minutes:g}"
    out.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            __file__,
            "--memory-child",
            str(path),
            "--out-dir",
            str(out),
            "--model",
            model,
            "--device",
            device,
            "--threads",
            str(threads),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    path.unlink()
    return {"minutes": minutes, **json.loads(result.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--long-minutes", type=float, nargs="*", default=[10.0, 60.0])
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument(
        "--memory-model",
        choices=("paper", "shipped"),
        default="paper",
        help="peak memory with the random paper-size model or the shipped Chimera++ (mask head)",
    )
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args.model, args.device, args.memory_child, args.out_dir)
        return
    print("command: python", " ".join(sys.argv))
    print(
        f"torch {torch.__version__}, {args.threads} threads, device {args.device}, "
        f"{os.cpu_count()} CPUs; throughput model: paper preset (2 x 300 BLSTM, D = 20), random weights; "
        f"peak-memory model: {args.memory_model}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-archive-") as folder:
        work = Path(folder)
        model = paper_model(work / "paper.pt")
        if not args.skip_throughput:
            print("throughput:", json.dumps(throughput(model, args.device, work / "throughput")))
        memory_model = model if args.memory_model == "paper" else pretrained.path()
        for minutes in args.long_minutes:
            print(
                f"peak memory ({args.memory_model} model):",
                json.dumps(peak_memory(memory_model, args.device, args.threads, minutes, work)),
            )


if __name__ == "__main__":
    main()
