"""How fast ``deepclust separate`` runs with the shipped model, float32 against bfloat16 and int8, in one run.

Three archives of real two-talker speech (FSDD digits and LibriSpeech readers mixed), separated by the
same job a user runs (``deepclust.archive.separate_archive``), each with the mask head and with k-means,
each at every precision of ``--precisions`` (``--precision`` of ``deepclust separate``; ``int8`` is dynamic
quantisation, ``Separator(precision="int8")``): (a) one 10-minute recording, (b) 200 files of 3-8 s, (c) a
mixed archive (short and long files, several rates). Printed: x real time (seconds of audio per second of
wall clock, start-up excluded), each precision's speed-up over the first, and the time split (read, network,
clustering, write) of the last precision; where one batch of windows spends its time (STFT and features, the
BLSTM, each head, clustering); then each precision's quality difference (SDRi) from the first on held-out
real mixtures, and the start-up cost (import + load).

    python benchmarks/bench_separation_speed.py [--threads 2] [--quick] [--precisions fp32,bf16,int8]
    python benchmarks/bench_separation_speed.py --archives a --inferences mask --windows-per-batch 8,16
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
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
from deepclust.model.device import bf16_support, cpu_name  # noqa: E402
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
        sf.write(root / f"clip_{i:03d}.wav", pieces[start : start + n], 8000, subtype="PCM_16")


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


def run(
    model: str, archive: Path, out: Path, precision: str, inference: str, window: WindowConfig, workers: int = 1
) -> dict:
    """One archive job; ``workers`` > 1: on that many one-thread processes (``--workers``), their start included."""
    from deepclust.archive.processes import batches_on_processes

    began = time.perf_counter()
    summary = separate_archive(
        model,
        str(archive),
        str(out),
        n_speakers=2,
        files_per_batch=16,
        window=window,
        device="cpu",
        inference=inference,
        precision=precision,
        map_batches=batches_on_processes(workers) if workers > 1 else None,
    )
    wall = time.perf_counter() - began
    assert summary["failed"] == 0, summary["failed_inputs"]
    return {"wall": wall, "audio": summary["audio_seconds"], **{k: summary[k] for k in TIMINGS}}


def quality(mixtures: int, precisions: list[str], inferences: list[str]) -> str:
    """Each precision's SDRi against the first's on held-out real mixtures (bench_quality_real.py's set a)."""
    from bench_quality_real import draw_mixtures  # noqa: E402

    from deepclust.corpora.sources import CorpusSource, prepare_sources
    from deepclust.evaluation import evaluate_systems
    from deepclust.separation.separator import Separator
    from deepclust.training.dynamic_mixing import SourcePool

    corpora = REPO.parent / "shared" / "corpora"
    corpus = prepare_sources(
        [CorpusSource(str(corpora / "speechocean762")), CorpusSource(str(corpora / "librispeech-speakers"))],
        test_fraction=0.25,
        seed=0,
    )
    pool = SourcePool(corpus[corpus["subset"] == "test"], 8000)
    items = draw_mixtures(pool, mixtures, 2, 2026)
    reference, lines = precisions[0], []
    loaded = pretrained.load("cpu")
    for inference in inferences:
        scores = {}
        for precision in precisions:
            separator = Separator(loaded, device="cpu", inference=inference, precision=precision)
            estimates = []
            for start in range(0, len(items), 8):
                estimates += separator.separate_batch([m["mixture"] for m in items[start : start + 8]], 2)
            scores[precision] = np.array(
                [
                    float(np.mean(evaluate_systems(m["mixture"], m["sources"], [e])[0]["sdri"]))
                    for m, e in zip(items, estimates)
                ]
            )
        for precision in precisions[1:]:
            difference = scores[precision] - scores[reference]
            lines.append(
                f"| {inference} | {len(items)} | {precision} | {scores[reference].mean():.3f} | "
                f"{scores[precision].mean():.3f} | {difference.mean():+.3f} | {np.abs(difference).max():.3f} |"
            )
    return "\n".join(
        [
            f"| inference | mixtures | precision | {reference} SDRi | its SDRi | difference | largest per-mixture |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            *lines,
        ]
    )


def network_split(
    recording: Path, precisions: list[str], inferences: list[str], batch_sizes: list[int], repeats: int = 3
) -> str:
    """Where one batch of 10 s windows of ``recording`` spends its time (``separate_window_batch``, the code the
    archive job runs), best of ``repeats``: STFT, features and glue (the rest of the network stage), the BLSTM,
    each head, and clustering (masks or k-means, centroids, inverse STFT). Timed by wrapping the model's
    BLSTM and head methods on this instance."""
    import copy

    from deepclust.audio.blocks import BlockReader
    from deepclust.separation.separator import Separator
    from deepclust.separation.window_batch import separate_window_batch
    from deepclust.separation.windows import plan_windows

    loaded = pretrained.load("cpu")
    reader = BlockReader(str(recording), 8000)
    window, hop = WindowConfig().samples(8000)
    windows = plan_windows(reader.n_samples, window, hop)
    lines = []
    for inference in inferences:
        for precision in precisions:
            separator = Separator(loaded, device="cpu", inference=inference, precision=precision)
            spent: dict[str, float] = {}

            def timed(name, function):
                def wrapper(*args, **kwargs):
                    tick = time.perf_counter()
                    try:
                        return function(*args, **kwargs)
                    finally:
                        spent[name] = spent.get(name, 0.0) + time.perf_counter() - tick

                return wrapper

            # An own copy: separators of one LoadedModel share its module, and each wraps its methods once.
            separator.model = model = copy.deepcopy(separator.model)
            model.blstm.forward = timed("blstm", model.blstm.forward)
            model.embedding_head = timed("embedding head", model.embedding_head)
            model.mask_head = timed("mask head", model.mask_head)
            for batch_size in batch_sizes:
                waveforms = [reader.read(w.context_start, w.end) for w in windows[:batch_size]]
                best = None
                for _ in range(repeats + 1):  # the first is a warm-up
                    spent.clear()
                    result = separate_window_batch(separator, waveforms, 2, centroids=False)
                    parts = {**spent, "network": result.network_seconds, "clustering": result.clustering_seconds}
                    if best is None or parts["network"] + parts["clustering"] < best["network"] + best["clustering"]:
                        best = parts
                total = best["network"] + best["clustering"]
                heads = best.get("embedding head", 0.0) + best.get("mask head", 0.0)
                shares = [
                    best["network"] - best.get("blstm", 0.0) - heads,
                    best.get("blstm", 0.0),
                    best.get("embedding head", 0.0),
                    best.get("mask head", 0.0),
                    best["clustering"],
                ]
                audio = sum(w.shape[0] for w in waveforms) / 8000
                lines.append(
                    f"| {inference} | {precision} | {len(waveforms)} | "
                    + " | ".join(f"{100 * share / total:.0f}" for share in shares)
                    + f" | {audio / total:.0f}x |"
                )
    reader.close()
    return "\n".join(
        [
            "| inference | precision | windows | STFT+features+glue % | BLSTM % | embedding head % | "
            "mask head % | clustering+iSTFT % | x real time (network + clustering) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            *lines,
        ]
    )


def startup_seconds() -> float:
    """Import the library and load the shipped model in a fresh interpreter (what every CLI call pays)."""
    code = (
        "import time; t = time.perf_counter(); from deepclust.separation.separator import Separator; "
        "from deepclust import pretrained; Separator(pretrained.path(), device='cpu'); "
        "print(time.perf_counter() - t)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a 2-minute file and 40 short files")
    parser.add_argument("--quality-mixtures", type=int, default=100, help="0 skips the quality part")
    parser.add_argument(
        "--precisions",
        default="fp32,bf16,int8",
        help="comma-separated; ratios and quality differences are against the first",
    )
    parser.add_argument("--archives", default="a,b,c", help="which of (a) long, (b) short, (c) mixed")
    parser.add_argument("--inferences", default="mask,blend,kmeans")
    parser.add_argument(
        "--workers", default="1", help="comma-separated: one row per value (1: this process; N: --workers N processes)"
    )
    parser.add_argument(
        "--windows-per-batch",
        default=str(WindowConfig.windows_per_batch),
        help="comma-separated: one table row per value (windows, or short files, per forward)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    precisions, inferences = args.precisions.split(","), args.inferences.split(",")
    batch_sizes = [int(b) for b in args.windows_per_batch.split(",")]
    worker_counts = [int(w) for w in args.workers.split(",")]
    print(f"$ python benchmarks/bench_separation_speed.py {' '.join(sys.argv[1:])}")
    print(
        f"torch {torch.__version__}, {args.threads} threads, {cpu_name()}, bf16 here: {bf16_support()}, "
        f"oneDNN ISA cap: {os.environ.get('ONEDNN_MAX_CPU_ISA', 'none')}; "
        f"model: the shipped one ({pretrained.path()})"
    )
    print(f"start-up (import + model load, fresh interpreter): {startup_seconds():.2f} s")
    with tempfile.TemporaryDirectory(prefix="bench-speed-") as folder:
        work = Path(folder)
        names = {"a": "(a) one long recording", "b": "(b) short files, 3-8 s", "c": "(c) mixed archive"}
        archives = {names[key]: work / key for key in args.archives.split(",")}
        if "a" in args.archives:
            (work / "a").mkdir()
            write_long(work / "a" / "recording.flac", 2.0 if args.quick else 10.0, 16000)
        if "b" in args.archives:
            short_files(work / "b", 40 if args.quick else 200)
        if "c" in args.archives:
            mixed_archive(work / "c")
        columns = " | ".join(f"{p} x real time" for p in precisions)
        ratios = " | ".join(f"{p} / {precisions[0]}" for p in precisions[1:])
        print(
            f"\n| archive | audio (s) | inference | windows per batch | workers | {columns} | {ratios} | "
            f"{precisions[-1]} split read/network/clustering/write (%) |"
        )
        print("| --- " * (6 + 2 * len(precisions) - 1) + "|")
        for name, root in archives.items():
            audio = audio_seconds(root)
            for inference in inferences:
                for batch_size, workers in itertools.product(batch_sizes, worker_counts):
                    window = dataclasses.replace(WindowConfig(), windows_per_batch=batch_size)
                    rates, split = {}, ""
                    for precision in precisions:
                        out = work / f"out-{root.name}-{inference}-{precision}-{batch_size}-{workers}"
                        result = run(pretrained.path(), root, out, precision, inference, window, workers)
                        rates[precision] = result["audio"] / result["wall"]
                        total = sum(result[k] for k in TIMINGS) or 1.0
                        split = "/".join(f"{100 * result[k] / total:.0f}" for k in TIMINGS)
                    speeds = " | ".join(f"{rates[p]:.0f}x" for p in precisions)
                    gains = " | ".join(f"{rates[p] / rates[precisions[0]]:.2f}" for p in precisions[1:])
                    print(
                        f"| {name} | {audio:.0f} | {inference} | {batch_size} | {workers} | {speeds} | {gains} | "
                        f"{split} |",
                        flush=True,
                    )
        if "a" in args.archives:
            print(
                f"\nOne batch of 10 s windows of (a), where the time goes (best of 3):\n\n"
                f"{network_split(work / 'a' / 'recording.flac', precisions, inferences, batch_sizes)}",
                flush=True,
            )
    if args.quality_mixtures and len(precisions) > 1:
        print(
            f"\nQuality against {precisions[0]} (held-out real mixtures, shipped model):\n\n"
            f"{quality(args.quality_mixtures, precisions, inferences)}"
        )


if __name__ == "__main__":
    main()
