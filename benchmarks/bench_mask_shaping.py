"""Does reshaping the mask head's masks at inference cut the leakage between talkers? (issue 31)

The losses on real recordings are leakage, not speaker swaps (issue 31). The mask head gives each talker an
independent sigmoid mask; a cheap inference-time change would be to reshape them before the inverse STFT:
a power (``pow1.5``: sharper, less of the other talker where a mask is between 0 and 1; ``pow0.75``: softer),
normalising the talkers' masks to sum to one (``norm``), or only where they sum to more than one (``normcap``:
no bin is given out twice), or the squared masks normalised (``sq-norm``, a Wiener-like rule).
Beside them, ``second-pass``: the same network run again on each estimate, keeping the louder of the two voices it
finds there (the leaked talker should be the quiet one), at three times the cost. And ``shift2`` / ``shift4``:
the mask head's estimates averaged over the mixture delayed by 0 and 32 samples (half a hop), or by 0, 16, 32
and 48, each estimate aligned to the first pass's talkers (test-time augmentation: the STFT frames fall
elsewhere, so each pass's errors differ), at two or four times the cost.
Each is scored against the masks as they are (``id``) on the same mixtures, paired, on held-out speakers of
the training corpora (a) and the same mixtures in rooms with noise (c), drawn with another seed than the
quality benchmark's (``--seed``, default 7) so that a shape chosen here can be confirmed there.

    python benchmarks/bench_mask_shaping.py $(cat runs/bench-sources.txt) --mixtures 80 --threads 1
    python benchmarks/bench_mask_shaping.py $(cat runs/bench-sources.txt) --mixtures 60 --shapes second-pass --threads 1
    python benchmarks/bench_mask_shaping.py $(cat runs/bench-sources.txt) --mixtures 100 --shapes shift2,shift4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_quality_real as quality  # noqa: E402

from deepclust import pretrained  # noqa: E402
from deepclust.corpora.sources import CorpusSource, prepare_sources  # noqa: E402
from deepclust.metrics.permutation import best_match  # noqa: E402
from deepclust.model.checkpoint import load_model  # noqa: E402
from deepclust.separation.separator import Separator  # noqa: E402
from deepclust.training.dynamic_mixing import SourcePool  # noqa: E402


def shaped(masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each shape of masks ``(batch, K, frames, freq)`` in [0, 1], by name (``id``: as they are)."""
    total = masks.sum(1, keepdim=True)
    squared = masks**2
    return {
        "id": masks,
        "pow1.5": masks**1.5,
        "pow2": squared,
        "pow0.75": masks**0.75,
        "norm": masks / total.clamp_min(1e-6),
        "normcap": masks / total.clamp_min(1.0),
        "sq-norm": squared / squared.sum(1, keepdim=True).clamp_min(1e-6),
    }


class ShapedMasks:
    """One shape of the mask head's masks, as a system for ``bench_quality_real.score``. The systems of one
    batch share one network forward (``shared``: the last batch's waveforms and shapes)."""

    def __init__(self, separator: Separator, name: str, shared: dict):
        self.separator, self.name, self.shared = separator, name, shared

    def separate_batch(self, waveforms, n_speakers: int):
        key = tuple(id(w) for w in waveforms)
        if self.shared.get("key") != key:
            batch = self.separator.embed_batch(waveforms, embeddings=False, masks=True)
            self.shared.update(key=key, batch=batch, shapes=shaped(batch["masks"].float()))
        return self.separator.reconstruct_masks(self.shared["batch"], self.shared["shapes"][self.name])


class SecondPass:
    """The separator's estimates, each separated again into two; the louder of the two is kept."""

    def __init__(self, separator: Separator):
        self.separator = separator

    def separate_batch(self, waveforms, n_speakers: int):
        first = self.separator.separate_batch(waveforms, n_speakers)
        second = iter(self.separator.separate_batch([voice for voices in first for voice in voices], 2))
        kept = []
        for voices in first:
            parts = [next(second) for _ in voices]
            kept.append(np.stack([part[int(np.argmax((part**2).sum(1)))] for part in parts]))
        return kept


class ShiftedAverage:
    """The separator's estimates averaged over copies of each mixture delayed by ``offsets`` samples, each copy's
    talkers put in the order of the undelayed pass's (by correlation)."""

    def __init__(self, separator: Separator, offsets: tuple[int, ...]):
        self.separator, self.offsets = separator, offsets

    def separate_batch(self, waveforms, n_speakers: int):
        passes = []
        for offset in self.offsets:
            delayed = [np.concatenate([np.zeros(offset, np.float32), np.asarray(w, np.float32)]) for w in waveforms]
            passes.append([voices[:, offset:] for voices in self.separator.separate_batch(delayed, n_speakers)])
        averaged = []
        for item, first in enumerate(passes[0]):
            total = first.astype(np.float64).copy()
            for other in passes[1:]:
                total += aligned(first, other[item])
            averaged.append((total / len(passes)).astype(np.float32))
        return averaged


def aligned(reference: np.ndarray, estimates: np.ndarray) -> np.ndarray:
    """``estimates (K, samples)`` reordered to best match ``reference (K, samples)`` by summed correlation."""

    def unit(signals):
        return signals / (np.linalg.norm(signals, axis=1, keepdims=True) + 1e-12)

    return estimates[best_match(unit(reference) @ unit(estimates).T)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=pretrained.path())
    parser.add_argument("--source", action="append", help="corpus folders (default: those the model names)")
    parser.add_argument("--mixtures", type=int, default=80)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", help="write every row to this Parquet file")
    parser.add_argument(
        "--shapes", help="which to score beside id, comma-separated (default: every shape, second-pass and shifts)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    sources = [CorpusSource.parse(s) for s in args.source] if args.source else quality.model_sources(loaded)
    corpus = prepare_sources(sources, test_fraction=0.25, seed=0)
    pool = SourcePool(corpus[corpus["subset"] == "test"], 8000)
    speaker_of = dict(zip(corpus["utterance_id"], corpus["speaker"]))
    gender_of = dict(zip(corpus["speaker"], corpus["gender"]))
    separator, shared = Separator(loaded, device="cpu", inference="mask"), {}
    systems = {name: ShapedMasks(separator, name, shared) for name in shaped(torch.rand(1, 2, 1, 1))}
    systems["second-pass"] = SecondPass(separator)
    systems["shift2"] = ShiftedAverage(separator, (0, 32))
    systems["shift4"] = ShiftedAverage(separator, (0, 16, 32, 48))
    if args.shapes:
        systems = {name: system for name, system in systems.items() if name in {"id", *args.shapes.split(",")}}
    mixtures = quality.draw_mixtures(pool, args.mixtures, 2, args.seed)
    frames = []
    for label, items in (("a", mixtures), ("c", quality.in_rooms(mixtures, args.seed))):
        rows, _ = quality.score(items, systems, 2, speaker_of, gender_of, {})
        frames.append(pd.DataFrame(rows).assign(test_set=label))
    frame = pd.concat(frames, ignore_index=True)
    if args.results:
        frame.to_parquet(args.results)
    print(f"$ python benchmarks/bench_mask_shaping.py {' '.join(sys.argv[1:])}\n")
    print(f"model: {args.model}; {args.mixtures} two-talker mixtures of held-out speakers, seed {args.seed}\n")
    print("| shape | set | SDRi | paired difference to id (95 % interval) |\n| --- | --- | --- | --- |")
    base = frame[frame["system"] == "id"].set_index(["test_set", "mixture"])["sdri"]
    for name in [*systems, "IBM"]:
        own = frame[frame["system"] == name].set_index(["test_set", "mixture"])["sdri"]
        for test_set, difference in (own - base).groupby(level=0):
            half = 1.96 * difference.std(ddof=1) / len(difference) ** 0.5
            print(
                f"| {name} | {test_set} | {own.loc[test_set].mean():.2f} | "
                f"{difference.mean():+.2f} ({difference.mean() - half:+.2f} .. {difference.mean() + half:+.2f}) |"
            )


if __name__ == "__main__":
    main()
