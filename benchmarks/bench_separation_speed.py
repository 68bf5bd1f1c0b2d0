"""How fast ``deepclust separate`` runs with the shipped model, float32 against bfloat16, in one run.

Three archives of real two-talker speech (FSDD digits and LibriSpeech readers mixed), separated by the
same job a user runs (``deepclust.archive.separate_archive``), each with the mask head and with k-means,
each at float32 and at bfloat16 (``--precision``): (a) one 10-minute recording, (b) 200 files of 3-8 s,
(c) a mixed archive (short and long files, several rates). Printed: x real time (seconds of audio per
second of wall clock, start-up excluded) and the time split (read, network, clustering, write); then the
bf16 - fp32 quality difference (SDRi) on held-out real mixtures, and the start-up cost (import + load).

    python benchmarks/bench_separation_speed.py [--threads 2] [--quick]
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_archive import fsdd_mixture, write_long  # noqa: E402
from deepclust import pretrained  # noqa: E402
from deepclust.archive import separate_archive  # noqa: E402
from deepclust.audio import resample  # noqa: E402
from deepclust.device import cpu_has_native_bf16  # noqa: E402
from deepclust.separation.long import WindowConfig  # noqa: E402

TIMINGS = ("read_seconds", "network_seconds", "clustering_seconds", "write_seconds")


def short_files(root: Path, count: int, seed: int = 0) -> None:
    """``count`` files of 3-8 s: FSDD two-talker mixtures back to back, cut to a random length."""
    rng = np.random.default_rng(seed)
    pieces = np.concatenate([fsdd_mixture(i) for i in range(40)])
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        n = int(rng.uniform(3, 8) * 8000)
        start = int(rng.integers(0, pieces.size - n))
        sf.write(root / f"clip_{i:03d}.wav", pieces[start:start + n], 8000, subtype="PCM_16")


def mixed_archive(root: Path) -> None:
    """60 short clips, three 10-20 s files at 16, 22.05 and 44.1 kHz, and one 2-minute recording."""
    short_files(root / "short", 60, seed=1)
    (root / "rates").mkdir()
    for i, rate in enumerate((16000, 22050, 44100)):
        signal = resample(np.concatenate([fsdd_mixture(j) for j in range(10 * i, 10 * i + 20)]), 8000, rate)
        sf.write(root / "rates" / f"r{rate}.flac", signal, rate)
    write_long(root / "long.flac", 2.0, 16000)


def audio_seconds(root: Path) -> float:
    return sum(sf.info(p).duration for p in root.rglob("*") if p.is_file())


def run(model: str, archive: Path, out: Path, precision: str, inference: str) -> dict:
    began = time.perf_counter()
    summary = separate_archive(model, str(archive), str(out), n_speakers=2, files_per_batch=16, window=WindowConfig(),
                               device="cpu", inference=inference, precision=precision)
    wall = time.perf_counter() - began
    assert summary["failed"] == 0, summary["failed_inputs"]
    return {"wall": wall, "audio": summary["audio_seconds"], **{k: summary[k] for k in TIMINGS}}


def quality(mixtures: int, threads: int) -> str:
    """bf16 - fp32 SDRi of the mask head on held-out real mixtures (benchmarks/bench_quality_real.py's set a)."""
    from bench_quality_real import draw_mixtures  # noqa: E402
    from deepclust.corpora.sources import CorpusSource, prepare_sources
    from deepclust.evaluation import evaluate_systems
    from deepclust.separation.separator import Separator
    from deepclust.training.dynamic_mixing import SourcePool

    corpora = REPO.parent / "shared" / "corpora"
    corpus = prepare_sources([CorpusSource(str(corpora / "speechocean762")),
                              CorpusSource(str(corpora / "librispeech-speakers"))], test_fraction=0.25, seed=0)
    pool = SourcePool(corpus[corpus["subset"] == "test"], 8000)
    items = draw_mixtures(pool, mixtures, 2, 2026)
    lines = []
    for inference in ("mask", "kmeans"):
        scores = {}
        for precision in ("fp32", "bf16"):
            separator = Separator(pretrained.path(), device="cpu", inference=inference, precision=precision)
            estimates = []
            for start in range(0, len(items), 8):
                estimates += separator.separate_batch([m["mixture"] for m in items[start:start + 8]], 2)
            scores[precision] = [float(np.mean(evaluate_systems(m["mixture"], m["sources"], [e])[0]["sdri"]))
                                 for m, e in zip(items, estimates)]
        difference = np.array(scores["bf16"]) - np.array(scores["fp32"])
        lines.append(f"| {inference} | {len(items)} | {np.mean(scores['fp32']):.3f} | {np.mean(scores['bf16']):.3f} | "
                     f"{difference.mean():+.3f} | {np.abs(difference).max():.3f} |")
    return "\n".join(["| inference | mixtures | fp32 SDRi | bf16 SDRi | bf16 - fp32 | largest per-mixture |",
                      "| --- | --- | --- | --- | --- | --- |", *lines])


def startup_seconds() -> float:
    """Import the library and load the shipped model in a fresh interpreter (what every CLI call pays)."""
    code = ("import time; t = time.perf_counter(); from deepclust.separation.separator import Separator; "
            "from deepclust import pretrained; Separator(pretrained.path(), device='cpu'); "
            "print(time.perf_counter() - t)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a 2-minute file and 40 short files")
    parser.add_argument("--quality-mixtures", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"$ python benchmarks/bench_separation_speed.py {' '.join(sys.argv[1:])}")
    print(f"torch {torch.__version__}, {args.threads} threads, native bf16 on this CPU: {cpu_has_native_bf16()}; "
          f"model: the shipped one ({pretrained.path()})")
    print(f"start-up (import + model load, fresh interpreter): {startup_seconds():.2f} s")
    with tempfile.TemporaryDirectory(prefix="bench-speed-") as folder:
        work = Path(folder)
        archives = {"(a) one long recording": work / "long", "(b) short files, 3-8 s": work / "short",
                    "(c) mixed archive": work / "mixed"}
        (work / "long").mkdir()
        write_long(work / "long" / "recording.flac", 2.0 if args.quick else 10.0, 16000)
        short_files(work / "short", 40 if args.quick else 200)
        mixed_archive(work / "mixed")
        print("\n| archive | audio (s) | inference | fp32 x real time | bf16 x real time | bf16 / fp32 | "
              "bf16 split read/network/clustering/write (%) |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name, root in archives.items():
            audio = audio_seconds(root)
            for inference in ("mask", "kmeans"):
                rates, split = {}, ""
                for precision in ("fp32", "bf16"):
                    result = run(pretrained.path(), root, work / f"out-{root.name}-{inference}-{precision}", precision,
                                 inference)
                    rates[precision] = result["audio"] / result["wall"]
                    total = sum(result[k] for k in TIMINGS) or 1.0
                    split = "/".join(f"{100 * result[k] / total:.0f}" for k in TIMINGS)
                print(f"| {name} | {audio:.0f} | {inference} | {rates['fp32']:.0f}x | {rates['bf16']:.0f}x | "
                      f"{rates['bf16'] / rates['fp32']:.2f} | {split} |", flush=True)
    print(f"\nQuality, bf16 against fp32 (held-out real mixtures, shipped model):\n\n{quality(args.quality_mixtures, args.threads)}")


if __name__ == "__main__":
    main()
