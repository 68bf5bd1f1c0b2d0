"""Separation quality on real read speech, open speakers: the shipped model (or any) on held-out people.

Builds the corpus the shipped model was trained from (speechocean762 + LibriSpeech, split per source with
the same seed), checks that none of its test speakers was used in training or validation (the model file
lists those), draws whole-utterance mixtures of test speakers as wsj0-2mix's test set does (0-5 dB,
truncated to the shortest), separates them and prints SDRi / SI-SDRi beside the IBM and IRM ceilings:
two speakers by the mask head and by k-means on the embeddings (with their speed), three speakers by
k-means, and the two-speaker figures broken down by source corpus, gender pair and child/adult.

    python benchmarks/bench_quality_real.py                       # the shipped model
    python benchmarks/bench_quality_real.py --model runs/x/model.pt --mixtures 300 --mixtures3 150
    python benchmarks/bench_quality_real.py --snapshots runs/x/snapshots   # quality against training time
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from deepclust import pretrained  # noqa: E402
from deepclust.corpora.sources import CorpusSource, prepare_sources  # noqa: E402
from deepclust.evaluation import evaluate_systems, gender_condition  # noqa: E402
from deepclust.model.checkpoint import load_model  # noqa: E402
from deepclust.separation.oracle import ideal_binary_mask_estimates, ideal_ratio_mask_estimates  # noqa: E402
from deepclust.separation.separator import Separator  # noqa: E402
from deepclust.training.dynamic_mixing import SourcePool  # noqa: E402

CORPORA = REPO.parent / "shared" / "corpora"
DEFAULT_SOURCES = [str(CORPORA / "speechocean762"), str(CORPORA / "librispeech-speakers")]
CHILD_MAX_AGE = 15  # speechocean762's children are 6-15 (SOURCE.md); LibriSpeech readers are adults


def speaker_ages(sources: list[CorpusSource]) -> dict[str, str]:
    """``{namespaced speaker: "child"|"adult"}``; speakers without an age table count as adults."""
    groups = {}
    for source in sources:
        table = Path(source.root) / "speakers.csv"
        if table.is_file():
            frame = pd.read_csv(table, dtype={"speaker": str})
            if "age" in frame.columns:
                for speaker, age in zip(frame["speaker"], frame["age"]):
                    groups[f"{source.source_name}/{speaker}"] = "child" if age <= CHILD_MAX_AGE else "adult"
    return groups


def draw_mixtures(pool: SourcePool, count: int, n_speakers: int, seed: int) -> list[dict]:
    rng = np.random.default_rng([seed, n_speakers])
    mixtures = []
    for index in range(count):
        sources, utterances = pool.draw_utterances(rng, n_speakers)
        mixtures.append({"index": index, "sources": sources, "mixture": sources.sum(0),
                         "utterances": [pool.utterance_ids[u] for u in utterances]})
    return mixtures


def condition(values: list[str]) -> str:
    return "+".join(sorted(values))


def score(mixtures, separators: dict, n_speakers: int, speaker_of, gender_of, age_of, batch: int = 8) -> tuple:
    """Rows of (mixture, system, sdri, si_sdri, ...) and seconds spent per system."""
    rows, seconds = [], {name: 0.0 for name in separators}
    for start in range(0, len(mixtures), batch):
        chunk = mixtures[start:start + batch]
        estimates = {}
        for name, separator in separators.items():
            began = time.perf_counter()
            estimates[name] = separator.separate_batch([m["mixture"] for m in chunk], n_speakers)
            seconds[name] += time.perf_counter() - began
        for offset, item in enumerate(chunk):
            sets = {name: estimates[name][offset] for name in separators}
            sets["IBM"] = ideal_binary_mask_estimates(item["mixture"], item["sources"])
            sets["IRM"] = ideal_ratio_mask_estimates(item["mixture"], item["sources"])
            results = evaluate_systems(item["mixture"], item["sources"], list(sets.values()))
            speakers = [speaker_of[u] for u in item["utterances"]]
            genders = [gender_of.get(s) for s in speakers]
            info = {"mixture": item["index"], "num_speakers": n_speakers,
                    "corpora": condition([s.split("/", 1)[0] for s in speakers]),
                    "gender_condition": gender_condition(genders) or "unknown",
                    "ages": condition([age_of.get(s, "adult") for s in speakers]),
                    "seconds_of_audio": item["mixture"].size / 8000}
            for name, result in zip(sets, results):
                rows.append({**info, "system": name, "sdri": float(np.mean(result["sdri"])),
                             "si_sdri": float(np.mean(result["si_sdri"])), "sdr": float(np.mean(result["sdr"]))})
    return rows, seconds


def table(frame: pd.DataFrame, by: list[str], system: str) -> str:
    """Markdown: the system's mean SDRi / SI-SDRi beside IBM per group, and its share of the IBM ceiling."""
    pivot = frame.pivot_table(index=[*by, "mixture"], columns="system", values=["sdri", "si_sdri"]).reset_index()
    lines = [f"| {' | '.join(by)} | mixtures | {system} SDRi | SI-SDRi | IBM SDRi | IRM SDRi | ratio to IBM |",
             "| " + " | ".join(["---"] * (len(by) + 6)) + " |"]
    for key, group in pivot.groupby(by):
        key = key if isinstance(key, tuple) else (key,)
        sdri, ibm = group[("sdri", system)].mean(), group[("sdri", "IBM")].mean()
        lines.append(f"| {' | '.join(map(str, key))} | {len(group)} | {sdri:.2f} | {group[('si_sdri', system)].mean():.2f} "
                     f"| {ibm:.2f} | {group[('sdri', 'IRM')].mean():.2f} | {sdri / ibm:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=pretrained.path())
    parser.add_argument("--source", action="append", help="corpus folders (default: the two real corpora)")
    parser.add_argument("--test-fraction", type=float, default=0.25)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--mixtures", type=int, default=300, help="two-speaker test mixtures")
    parser.add_argument("--mixtures3", type=int, default=150, help="three-speaker test mixtures")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--snapshots", help="a folder of epoch-NNN.pt: two-speaker SDRi of each (training time)")
    parser.add_argument("--results", help="write every row to this Parquet file")
    parser.add_argument("--whitened", action="store_true", help="also k-means on whitened embeddings (2 speakers)")
    parser.add_argument("--phase-iterations", type=int, default=0,
                        help="also the mask head with this many MISI phase iterations (2 speakers)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    began = time.perf_counter()

    sources = [CorpusSource.parse(s) for s in (args.source or DEFAULT_SOURCES)]
    corpus = prepare_sources(sources, test_fraction=args.test_fraction, seed=args.split_seed)
    test_rows = corpus[corpus["subset"] == "test"]
    snapshots = sorted(Path(args.snapshots).glob("epoch-*.pt")) if args.snapshots else []
    loaded = load_model(str(snapshots[-1]) if snapshots else args.model)
    args.model = str(snapshots[-1]) if snapshots else args.model
    heard = set(loaded.extra.get("training_speakers", [])) | set(loaded.extra.get("cv_speakers", []))
    overlap = heard & set(test_rows["speaker"])
    if overlap:
        raise SystemExit(f"{args.model} was trained on {len(overlap)} of the test speakers, e.g. {sorted(overlap)[:3]}")
    pool = SourcePool(test_rows, 8000)
    speaker_of = dict(zip(corpus["utterance_id"], corpus["speaker"]))
    gender_of = dict(zip(corpus["speaker"], corpus["gender"]))
    age_of = speaker_ages(sources)
    print(f"$ python benchmarks/bench_quality_real.py {' '.join(sys.argv[1:])}")
    print(f"model: {args.model} ({loaded.model.num_parameters / 1e6:.1f} M parameters, "
          f"{len(loaded.extra.get('training_speakers', [])) or 'unknown'} training speakers); "
          f"test: {len(pool.speakers)} held-out speakers, {pool.seconds / 60:.0f} min"
          f"{'; none heard in training or validation' if heard else '; the model does not list its speakers'}")

    if args.snapshots:
        mixtures = draw_mixtures(pool, args.mixtures, 2, args.seed)
        # (the speaker check above used --model; each snapshot lists its own speakers too)
        print("| snapshot | epoch | steps | SDRi (mask head) | SDRi (k-means) | IBM |\n| --- | --- | --- | --- | --- | --- |")
        for path in sorted(Path(args.snapshots).glob("epoch-*.pt")):
            snapshot = load_model(str(path))
            separators = {"mask": Separator(snapshot, device="cpu", inference="auto"),
                          "kmeans": Separator(snapshot, device="cpu", inference="kmeans")}
            frame = pd.DataFrame(score(mixtures, separators, 2, speaker_of, gender_of, age_of)[0])
            means = frame.groupby("system")["sdri"].mean()
            print(f"| {path.name} | {snapshot.extra.get('epoch')} | {snapshot.extra.get('global_step')} | "
                  f"{means['mask']:.2f} | {means['kmeans']:.2f} | {means['IBM']:.2f} |", flush=True)
        return

    has_masks = bool(getattr(loaded.model.config, "mask_heads", 0))
    two = {"k-means": Separator(loaded, device="cpu", inference="kmeans")}
    if args.whitened:
        two["k-means (whitened)"] = Separator(loaded, device="cpu", inference="kmeans", whiten=True)
    if has_masks:
        heads = {"mask head": Separator(loaded, device="cpu", inference="mask")}
        if args.phase_iterations:
            heads[f"mask head + MISI {args.phase_iterations}"] = Separator(
                loaded, device="cpu", inference="mask", phase_iterations=args.phase_iterations)
        two = {**heads, **two}
    rows2, seconds2 = score(draw_mixtures(pool, args.mixtures, 2, args.seed), two, 2, speaker_of, gender_of, age_of)
    rows3, seconds3 = score(draw_mixtures(pool, args.mixtures3, 3, args.seed), {"k-means": two["k-means"]}, 3,
                            speaker_of, gender_of, age_of)
    frame = pd.DataFrame(rows2 + rows3)
    if args.results:
        frame.to_parquet(args.results)
    main_system = next(iter(two))
    print("\n## Overall (open speakers)\n")
    print("| speakers | system | mixtures | SDRi | SI-SDRi | IBM SDRi | IRM SDRi | ratio to IBM |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for n, group in frame.groupby("num_speakers"):
        means = group.groupby("system")[["sdri", "si_sdri"]].mean()
        for system in [s for s in (*two, "IBM", "IRM") if s in means.index and s not in ("IBM", "IRM")]:
            print(f"| {n} | {system} | {group['mixture'].nunique()} | {means.loc[system, 'sdri']:.2f} | "
                  f"{means.loc[system, 'si_sdri']:.2f} | {means.loc['IBM', 'sdri']:.2f} | {means.loc['IRM', 'sdri']:.2f} | "
                  f"{means.loc[system, 'sdri'] / means.loc['IBM', 'sdri']:.2f} |")
    audio = frame[frame["system"] == "IBM"].query("num_speakers == 2")["seconds_of_audio"].sum()
    print("\n## Inference speed, two speakers (CPU, this run)\n")
    for system, seconds in seconds2.items():
        print(f"- {system}: {seconds:.1f} s for {audio:.0f} s of audio ({audio / seconds:.0f}x real time)")
    if has_masks:
        print(f"- mask head / k-means speed-up: {seconds2['k-means'] / seconds2['mask head']:.1f}x")
    two_speaker = frame[frame["num_speakers"] == 2]
    for by in ("corpora", "gender_condition", "ages"):
        print(f"\n## Two speakers by {by} ({main_system})\n")
        print(table(two_speaker, [by], main_system))
    print(f"\nwall time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
