"""Speed of the separation and scoring path, per 4 s utterance at 8 kHz, measured in one run.

    python benchmarks/bench_speed.py [--batch 16] [--threads 2] [--device cpu] [--metric-pairs 3]

- network forward of a randomly initialised paper-size model (2 x 300 BLSTM, D = 20; no training
  needed: the cost does not depend on the weights), one padded batch;
- k-means on its embeddings: scikit-learn one utterance at a time vs the batched torch k-means;
- BSS-eval of a 2-speaker separation: mir_eval vs the fast back end.
Prints the figures, the ratios and the command line that made them.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepclust.audio import read_audio  # noqa: E402
from deepclust.evaluation import evaluate_systems  # noqa: E402
from deepclust.features.extract import FeatureConfig  # noqa: E402
from deepclust.features.normalisation import FeatureStats  # noqa: E402
from deepclust.metrics.bss_eval import bss_eval, mixture_sdr  # noqa: E402
from deepclust.model.blstm import DeepClusteringNet, ModelConfig  # noqa: E402
from deepclust.model.checkpoint import LoadedModel  # noqa: E402
from deepclust.separation.kmeans import kmeans_sklearn, kmeans_torch  # noqa: E402
from deepclust.separation.oracle import ideal_binary_mask_estimates  # noqa: E402
from deepclust.separation.separator import Separator  # noqa: E402

SR = 8000
SECONDS = 4.0
LIBRISPEECH = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "librispeech-excerpts"


def timed(fn, repeat=1):
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return (time.perf_counter() - start) / repeat, out


def utterances(n):
    """n 4 s two-speaker mixtures cut from the LibriSpeech excerpts (resampled to 8 kHz)."""
    speech = [read_audio(path, target_sr=SR)[0] for path in sorted(LIBRISPEECH.glob("*.ogg"))]
    length = int(SECONDS * SR)
    mixtures, pairs = [], []
    for i in range(n):
        a, b = speech[i % len(speech)], speech[(i + 1) % len(speech)]
        offset = (i * 4000) % (min(len(a), len(b)) - length)
        sources = np.stack([a[offset : offset + length], b[offset : offset + length]])
        sources = sources / np.sqrt(np.mean(sources**2, axis=1, keepdims=True)) * 0.05
        mixtures.append(sources.sum(0).astype(np.float32))
        pairs.append(sources)
    return mixtures, pairs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16, help="utterances per batch")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--metric-pairs", type=int, default=3, help="mixtures scored with each BSS-eval back end")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    mixtures, sources = utterances(args.batch)
    model = DeepClusteringNet(ModelConfig.preset("paper"))
    stats = FeatureStats(mean=np.full(129, -4.0), std=np.full(129, 2.0))
    loaded = LoadedModel(
        model=model, model_config=model.config, feature_stats=stats, feature_config=FeatureConfig().to_dict(), extra={}
    )
    separator = Separator(loaded, device=args.device)
    n = len(mixtures)
    results = {}

    forward_s, batch = timed(lambda: separator.embed_batch(mixtures))
    results["network forward (batch %d)" % n] = forward_s / n

    embeddings = batch["embeddings"].reshape(n, -1, model.config.emb_dim)
    valid = batch["valid"].reshape(n, -1)
    np_embeddings = embeddings.cpu().numpy()
    np_valid = valid.cpu().numpy()
    sk_s, _ = timed(lambda: [kmeans_sklearn(np_embeddings[i][np_valid[i]], 2) for i in range(n)])
    th_s, _ = timed(lambda: kmeans_torch(embeddings, valid, 2))
    results["k-means sklearn (per utterance)"] = sk_s / n
    results["k-means torch (batch %d)" % n] = th_s / n

    sep_s, _ = timed(lambda: separator.separate_batch(mixtures, 2))
    results["separate_batch end to end (batch %d)" % n] = sep_s / n

    m = min(args.metric_pairs, n)
    estimates = [ideal_binary_mask_estimates(mixtures[i], sources[i]) for i in range(m)]
    me_s, _ = timed(lambda: [bss_eval(sources[i], estimates[i], backend="mir_eval") for i in range(m)])
    fa_s, _ = timed(lambda: [bss_eval(sources[i], estimates[i], backend="fast") for i in range(m)])
    results["bss_eval mir_eval (2 sources)"] = me_s / m
    results["bss_eval fast (2 sources)"] = fa_s / m
    # How the evaluate stage scores a test mixture: model + IBM + IRM + the unprocessed mixture.
    # mir_eval: one bss_eval per system; fast: one shared solve (evaluate_systems), one BLAS thread.
    systems = [[estimates[i], estimates[i][::-1], estimates[i]] for i in range(m)]
    with threadpool_limits(limits=1, user_api="blas"):
        me4_s, _ = timed(
            lambda: [
                [bss_eval(sources[i], e, backend="mir_eval") for e in systems[i]]
                + [mixture_sdr(sources[i], mixtures[i], "mir_eval")]
                for i in range(m)
            ]
        )
        fa4_s, _ = timed(lambda: [evaluate_systems(mixtures[i], sources[i], systems[i]) for i in range(m)])
    results["3 systems + mixture, mir_eval (1 BLAS thread)"] = me4_s / m
    results["3 systems + mixture, fast (1 BLAS thread)"] = fa4_s / m

    print(f"command: python {' '.join(sys.argv)}")
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {args.device}"
    )
    print(f"seconds per {SECONDS:.0f} s utterance at {SR} Hz:")
    for name, seconds in results.items():
        print(f"  {name:<42s} {seconds * 1000:9.1f} ms")
    print("ratios:")
    print(f"  k-means sklearn / torch batched : {sk_s / th_s:6.2f}x")
    print(f"  bss_eval mir_eval / fast        : {me_s / fa_s:6.2f}x")
    print(f"  evaluate a mixture, mir_eval / fast : {me4_s / fa4_s:6.2f}x")


if __name__ == "__main__":
    main()
