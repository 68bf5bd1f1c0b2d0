"""Separation quality on real speech of people the model never heard, beside the IBM and IRM ceilings.

Three test sets, all of speakers the model file lists as never used in training or validation:

(a) **held out**: the test speakers of each corpus the model trained on (the model file names its sources;
    the split is re-drawn with the same seed), whole-utterance mixtures by wsj0-2mix's test rules (0-5 dB,
    truncated to the shortest), by source pair, gender pair and child/adult;
(b) **never trained on**: a corpus no model here trained on at all (FSDD: 6 speakers, spoken digits joined
    into 2-4 s pseudo-utterances with short pauses);
(c) **room + noise**: the mixtures of (a), each in a simulated room (RT60 0.2-0.8 s, rooms of another seed
    than training's) with coloured noise at 5-20 dB SNR (a noise kind the recordings of training's noise
    folder do not hold); references are each talker's direct path plus 50 ms of early reflections.

Systems: the mask head, hard k-means and soft k-means on the embeddings (``--soft-beta``), and their blend
(the mean of the mask head's and soft k-means' masks); for 3 talkers k-means only (the mask head has two
masks). Prints SDRi / SI-SDRi, the ratio to the IBM ceiling, speed,
and which inference wins on (b) + (c): the sets the model never trained on, which is what
``export-model --inference`` should record for ``auto``.

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
from deepclust.separation.separator import SOFT_KMEANS_BETA, Separator  # noqa: E402
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


FSDD = CORPORA / "fsdd" / "recordings"
DIGITS_PER_UTTERANCE = (4, 8)
DIGIT_PAUSE_SECONDS = (0.05, 0.25)


def fsdd_pool(utterances_per_speaker: int, seed: int) -> tuple[SourcePool, dict, dict]:
    """FSDD's digits joined into pseudo-utterances per speaker: ``(pool, speaker_of, gender_of)``."""
    from deepclust.audio import read_audio
    from deepclust.corpora.folder import prepare_folder, read_fsdd_genders

    rows = prepare_folder(str(FSDD), "fsdd", genders=read_fsdd_genders(str(FSDD)), test_fraction=0.0, seed=0)
    rng = np.random.default_rng([seed, 11])
    made = []
    for speaker, group in rows.groupby("speaker"):
        paths = sorted(group["path"])
        for index in range(utterances_per_speaker):
            chosen = rng.choice(len(paths), size=int(rng.integers(*DIGITS_PER_UTTERANCE)), replace=False)
            parts = []
            for k in chosen:
                parts.append(read_audio(paths[k], target_sr=8000)[0])
                parts.append(np.zeros(int(rng.uniform(*DIGIT_PAUSE_SECONDS) * 8000), dtype=np.float32))
            made.append((f"fsdd/{speaker}/{index:03d}", f"fsdd/{speaker}", np.concatenate(parts[:-1])))
    pool = SourcePool.from_waveforms(made, 8000)
    genders = {f"fsdd/{s}": g for s, g in zip(rows["speaker"], rows["gender"])}
    return pool, {u: s for u, s, _ in made}, genders


def in_rooms(mixtures: list[dict], seed: int) -> list[dict]:
    """The same mixtures in simulated rooms with coloured noise; references = early-reflection images."""
    from deepclust.training.augment import Augmenter, AugmentConfig

    config = AugmentConfig(room_probability=1.0, rt60_range=(0.2, 0.8), rooms=60, noise_probability=1.0,
                           snr_db_range=(5.0, 20.0), coloured_noise_share=1.0)
    augmenter = Augmenter(config, 8000, max(len(m["sources"]) for m in mixtures), seed=seed + 1_000)
    rng = np.random.default_rng([seed, 12])
    out = []
    for item in mixtures:
        mixture, targets = augmenter(rng, item["sources"].astype(np.float64))
        peak = max(np.abs(mixture).max(), np.abs(targets).max())
        scale = 0.9 / peak if peak > 0 else 1.0
        out.append({**item, "mixture": (mixture * scale).astype(np.float32), "sources": (targets * scale).astype(np.float32)})
    return out


def model_sources(loaded) -> list[CorpusSource]:
    """The corpora the model says it trained on (by their folder names, under ../shared/corpora), else the
    first shipped model's two."""
    named = [entry["name"] for entry in loaded.extra.get("sources") or []]
    if not named:
        return [CorpusSource.parse(s) for s in DEFAULT_SOURCES]
    return [CorpusSource(str(CORPORA / name), "auto", name) for name in named]


def print_overall(title: str, frame: pd.DataFrame, systems: list[str]) -> dict:
    """Markdown rows per speaker count and system; returns ``{(n, system): mean SDRi}``."""
    print(f"\n## {title}\n")
    print("| speakers | system | mixtures | SDRi | SI-SDRi | IBM SDRi | IRM SDRi | ratio to IBM |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    found = {}
    for n, group in frame.groupby("num_speakers"):
        means = group.groupby("system")[["sdri", "si_sdri"]].mean()
        for system in [s for s in systems if s in means.index]:
            sdri = means.loc[system, "sdri"]
            found[(n, system)] = sdri
            print(f"| {n} | {system} | {group['mixture'].nunique()} | {sdri:.2f} | {means.loc[system, 'si_sdri']:.2f} "
                  f"| {means.loc['IBM', 'sdri']:.2f} | {means.loc['IRM', 'sdri']:.2f} | {sdri / means.loc['IBM', 'sdri']:.2f} |")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=pretrained.path())
    parser.add_argument("--source", action="append", help="corpus folders (default: those the model names)")
    parser.add_argument("--test-fraction", type=float, default=0.25)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--mixtures", type=int, default=300, help="two-speaker test mixtures (sets a and c)")
    parser.add_argument("--mixtures3", type=int, default=150, help="three-speaker test mixtures (set a)")
    parser.add_argument("--outside-mixtures", type=int, default=200, help="two-speaker mixtures of set b")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--soft-beta", type=float, default=SOFT_KMEANS_BETA)
    parser.add_argument("--sets", default="a,b,c", help="which test sets to run")
    parser.add_argument("--systems", default="mask,kmeans,soft,blend",
                        help="which inferences to score (mask, kmeans, soft, blend)")
    parser.add_argument("--snapshots", help="a folder of epoch-NNN.pt: two-speaker SDRi of each (training time)")
    parser.add_argument("--results", help="write every row to this Parquet file")
    parser.add_argument("--whitened", action="store_true", help="also k-means on whitened embeddings (2 speakers)")
    parser.add_argument("--phase-iterations", type=int, default=0,
                        help="also the mask head and the blend with this many MISI phase iterations (2 speakers)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    sets = set(args.sets.split(","))

    snapshots = sorted(Path(args.snapshots).glob("epoch-*.pt")) if args.snapshots else []
    loaded = load_model(str(snapshots[-1]) if snapshots else args.model)
    args.model = str(snapshots[-1]) if snapshots else args.model
    sources = [CorpusSource.parse(s) for s in args.source] if args.source else model_sources(loaded)
    corpus = prepare_sources(sources, test_fraction=args.test_fraction, seed=args.split_seed)
    test_rows = corpus[corpus["subset"] == "test"]
    heard = set(loaded.extra.get("training_speakers", [])) | set(loaded.extra.get("cv_speakers", []))
    overlap = heard & set(test_rows["speaker"])
    if overlap:
        raise SystemExit(f"{args.model} was trained on {len(overlap)} of the test speakers, e.g. {sorted(overlap)[:3]}")
    if any(s.startswith("fsdd/") for s in heard):
        sets.discard("b")  # FSDD is the never-trained corpus only for models that never trained on it
    pool = SourcePool(test_rows, 8000)
    speaker_of = dict(zip(corpus["utterance_id"], corpus["speaker"]))
    gender_of = dict(zip(corpus["speaker"], corpus["gender"]))
    age_of = speaker_ages(sources)
    print(f"$ python benchmarks/bench_quality_real.py {' '.join(sys.argv[1:])}")
    print(f"model: {args.model} ({loaded.model.num_parameters / 1e6:.1f} M parameters, "
          f"{len(loaded.extra.get('training_speakers', [])) or 'unknown'} training speakers); "
          f"held out: {len(pool.speakers)} speakers of {', '.join(s.source_name for s in sources)}, "
          f"{pool.seconds / 60:.0f} min"
          f"{'; none heard in training or validation' if heard else '; the model does not list its speakers'}")

    if args.snapshots:
        mixtures = draw_mixtures(pool, args.mixtures, 2, args.seed)
        # (the speaker check above used --model; each snapshot lists its own speakers too)
        print("| snapshot | epoch | steps | SDRi (mask head) | SDRi (k-means) | SDRi (soft k-means) | IBM |\n"
              "| --- | --- | --- | --- | --- | --- | --- |")
        for path in snapshots:
            snapshot = load_model(str(path))
            separators = {"mask": Separator(snapshot, device="cpu", inference="auto"),
                          "kmeans": Separator(snapshot, device="cpu", inference="kmeans"),
                          "soft": Separator(snapshot, device="cpu", inference="soft-kmeans", soft_beta=args.soft_beta)}
            frame = pd.DataFrame(score(mixtures, separators, 2, speaker_of, gender_of, age_of)[0])
            means = frame.groupby("system")["sdri"].mean()
            print(f"| {path.name} | {snapshot.extra.get('epoch')} | {snapshot.extra.get('global_step')} | "
                  f"{means['mask']:.2f} | {means['kmeans']:.2f} | {means['soft']:.2f} | {means['IBM']:.2f} |", flush=True)
        return

    has_masks = bool(getattr(loaded.model.config, "mask_heads", 0))
    two = {"k-means": Separator(loaded, device="cpu", inference="kmeans"),
           f"soft k-means (beta {args.soft_beta:g})": Separator(loaded, device="cpu", inference="soft-kmeans",
                                                                soft_beta=args.soft_beta)}
    if args.whitened:
        two["k-means (whitened)"] = Separator(loaded, device="cpu", inference="kmeans", whiten=True)
    if has_masks:
        heads = {"mask head": Separator(loaded, device="cpu", inference="mask"),
                 "blend (mask head + soft k-means)": Separator(loaded, device="cpu", inference="blend",
                                                               soft_beta=args.soft_beta)}
        if args.phase_iterations:
            heads[f"mask head + MISI {args.phase_iterations}"] = Separator(
                loaded, device="cpu", inference="mask", phase_iterations=args.phase_iterations)
            heads[f"blend + MISI {args.phase_iterations}"] = Separator(
                loaded, device="cpu", inference="blend", soft_beta=args.soft_beta,
                phase_iterations=args.phase_iterations)
        two = {**heads, **two}
    wanted = set(args.systems.split(","))
    two = {name: separator for name, separator in two.items()
           if name.split(" ")[0].replace("k-means", "kmeans") in wanted}
    three = {k: v for k, v in two.items() if k.startswith(("k-means", "soft"))}
    systems = list(two)
    frames, seconds2 = {}, {}
    mixtures2 = draw_mixtures(pool, args.mixtures, 2, args.seed)
    if "a" in sets:
        rows2, seconds2 = score(mixtures2, two, 2, speaker_of, gender_of, age_of)
        rows3 = score(draw_mixtures(pool, args.mixtures3, 3, args.seed), three, 3, speaker_of, gender_of,
                      age_of)[0] if three and args.mixtures3 else []
        frames["a"] = pd.DataFrame(rows2 + rows3).assign(test_set="a: held out")
        print_overall("(a) Held-out speakers of the training corpora", frames["a"], systems)
    if "b" in sets:
        outside, outside_speaker_of, outside_gender_of = fsdd_pool(40, args.seed)
        rows, _ = score(draw_mixtures(outside, args.outside_mixtures, 2, args.seed), two, 2, outside_speaker_of,
                        outside_gender_of, {})
        frames["b"] = pd.DataFrame(rows).assign(test_set="b: never trained on (FSDD)")
        print_overall("(b) A corpus never trained on (FSDD, 6 speakers, joined digits)", frames["b"], systems)
    if "c" in sets:
        rows, _ = score(in_rooms(mixtures2, args.seed), two, 2, speaker_of, gender_of, age_of)
        frames["c"] = pd.DataFrame(rows).assign(test_set="c: held out, room + noise")
        print_overall("(c) The held-out mixtures of (a) in a room with noise", frames["c"], systems)
    frame = pd.concat(frames.values(), ignore_index=True)
    if args.results:
        frame.to_parquet(args.results)
    if seconds2:
        audio = frames["a"].query("system == 'IBM' and num_speakers == 2")["seconds_of_audio"].sum()
        print("\n## Inference speed, two speakers (CPU, this run)\n")
        for system, seconds in seconds2.items():
            print(f"- {system}: {seconds:.1f} s for {audio:.0f} s of audio ({audio / seconds:.0f}x real time)")
    unseen = frame[frame["test_set"].str[0].isin(["b", "c"]) & (frame["num_speakers"] == 2)]
    if not unseen.empty:
        means = unseen.groupby("system")["sdri"].mean()
        best = max(systems, key=lambda name: means.get(name, -np.inf))
        print(f"\nbest two-speaker inference on the sets never trained on (b + c): {best} "
              f"({', '.join(f'{s} {means[s]:.2f}' for s in systems if s in means)} dB SDRi)")
    if "a" in frames:
        two_speaker = frames["a"][frames["a"]["num_speakers"] == 2]
        main_system = systems[0]
        for by in ("corpora", "gender_condition", "ages"):
            print(f"\n## (a) Two speakers by {by} ({main_system})\n")
            print(table(two_speaker, [by], main_system))
    print(f"\nwall time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
