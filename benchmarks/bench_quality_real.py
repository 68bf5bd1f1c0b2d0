"""Separation quality on real speech of people the model never heard, beside the IBM and IRM ceilings.

Three test sets, all of speakers the model file lists as never used in training or validation:

(a) **held out**: the test speakers of each corpus the model trained on (the model file names its sources;
    the split is re-drawn with the same seed), whole-utterance mixtures by wsj0-2mix's test rules (0-5 dB,
    truncated to the shortest), by source pair, gender pair and child/adult;
(b) **never trained on**: two corpora of different kinds that the model never trained on, each scored alone
    (``b-fsdd``, ``b-msc``) and pooled: FSDD (6 speakers, spoken digits joined into 2-4 s pseudo-utterances
    with short pauses, one quiet room) and msc-malayalam (83 speakers reading Malayalam sentences on their own
    phones and laptops, whole recordings of 1-17 s, 8 kHz Opus); ``--outside-mixtures`` two-speaker mixtures of
    each, drawn as (a)'s. The script refuses a model whose file names one of them among its training sources
    or speakers;
(c) **room + noise**: the mixtures of (a), each in a simulated room (RT60 0.2-0.8 s, rooms of another seed
    than training's) with coloured noise at 5-20 dB SNR (a noise kind the recordings of training's noise
    folder do not hold); references are each talker's direct path plus 50 ms of early reflections.

Systems: the mask head, hard k-means and soft k-means on the embeddings (``--soft-beta``), and their blend
(the mean of the mask head's and soft k-means' masks); for 3 talkers k-means only (the mask head has two
masks). ``pick`` is an analysis system: per recording, the mask head's masks or soft k-means', whichever is
sharper on the loud bins (``mask_sharpness``: computable at inference time, no reference); it is printed
beside the oracle pick (the better of the two per recording, by SDRi), the ceiling of any such choice.
Prints SDRi / SI-SDRi, the ratio to the IBM ceiling, speed,
and which inference wins on (b) + (c): the sets the model never trained on, which is what
``export-model --inference`` should record for ``auto``.

    python benchmarks/bench_quality_real.py                       # the shipped model
    python benchmarks/bench_quality_real.py --model runs/x/model.pt --mixtures 300 --mixtures3 150
    python benchmarks/bench_quality_real.py --snapshots runs/x/snapshots   # quality against training time
    python benchmarks/bench_quality_real.py --model A.pt --source ../shared/corpora/speechocean762 ...  # one
        # explicit source list: every model compared is scored on the same held-out mixtures of (a) and (c)
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

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


def is_child(age) -> bool:
    """An age (``12``) or bracket (``"20-29"``, ``"<20"``) whose upper end is at most CHILD_MAX_AGE; an unknown
    one (empty) counts as an adult's, as speakers without an age table do."""
    numbers = [int(n) for n in re.findall(r"\d+", str(age))] if pd.notna(age) else []
    return bool(numbers) and max(numbers) <= CHILD_MAX_AGE


def speaker_ages(sources: list[CorpusSource]) -> dict[str, str]:
    """``{namespaced speaker: "child"|"adult"}``; speakers without an age table count as adults."""
    groups = {}
    for source in sources:
        table = Path(source.root) / "speakers.csv"
        if table.is_file():
            frame = pd.read_csv(table, dtype={"speaker": str})
            if "age" in frame.columns:
                for speaker, age in zip(frame["speaker"], frame["age"]):
                    groups[f"{source.source_name}/{speaker}"] = "child" if is_child(age) else "adult"
    return groups


def draw_mixtures(pool: SourcePool, count: int, n_speakers: int, seed: int) -> list[dict]:
    rng = np.random.default_rng([seed, n_speakers])
    mixtures = []
    for index in range(count):
        sources, utterances = pool.draw_utterances(rng, n_speakers)
        mixtures.append(
            {
                "index": index,
                "sources": sources,
                "mixture": sources.sum(0),
                "utterances": [pool.utterance_ids[u] for u in utterances],
            }
        )
    return mixtures


def condition(values: list[str]) -> str:
    return "+".join(sorted(values))


def score(mixtures, separators: dict, n_speakers: int, speaker_of, gender_of, age_of, batch: int = 8) -> tuple:
    """Rows of (mixture, system, sdri, si_sdri, ...) and seconds spent per system. A separator that keeps
    ``last_notes`` (one dict per item of its last batch: ``PickSeparator``'s choice) adds them to its rows."""
    rows, seconds = [], {name: 0.0 for name in separators}
    for start in range(0, len(mixtures), batch):
        chunk = mixtures[start : start + batch]
        estimates, notes = {}, {}
        for name, separator in separators.items():
            began = time.perf_counter()
            estimates[name] = separator.separate_batch([m["mixture"] for m in chunk], n_speakers)
            seconds[name] += time.perf_counter() - began
            notes[name] = getattr(separator, "last_notes", None) or [{}] * len(chunk)
        for offset, item in enumerate(chunk):
            sets = {name: estimates[name][offset] for name in separators}
            sets["IBM"] = ideal_binary_mask_estimates(item["mixture"], item["sources"])
            sets["IRM"] = ideal_ratio_mask_estimates(item["mixture"], item["sources"])
            results = evaluate_systems(item["mixture"], item["sources"], list(sets.values()))
            speakers = [speaker_of[u] for u in item["utterances"]]
            genders = [gender_of.get(s) for s in speakers]
            info = {
                "mixture": item["index"],
                "num_speakers": n_speakers,
                "corpora": condition([s.split("/", 1)[0] for s in speakers]),
                "gender_condition": gender_condition(genders) or "unknown",
                "ages": condition([age_of.get(s, "adult") for s in speakers]),
                "seconds_of_audio": item["mixture"].size / 8000,
            }
            for name, result in zip(sets, results):
                rows.append(
                    {
                        **info,
                        "system": name,
                        "sdri": float(np.mean(result["sdri"])),
                        "si_sdri": float(np.mean(result["si_sdri"])),
                        "sdr": float(np.mean(result["sdr"])),
                        **(notes[name][offset] if name in notes else {}),
                    }
                )
    return rows, seconds


def table(frame: pd.DataFrame, by: list[str], system: str) -> str:
    """Markdown: the system's mean SDRi / SI-SDRi beside IBM per group, and its share of the IBM ceiling."""
    pivot = frame.pivot_table(index=[*by, "mixture"], columns="system", values=["sdri", "si_sdri"]).reset_index()
    lines = [
        f"| {' | '.join(by)} | mixtures | {system} SDRi | SI-SDRi | IBM SDRi | IRM SDRi | ratio to IBM |",
        "| " + " | ".join(["---"] * (len(by) + 6)) + " |",
    ]
    for key, group in pivot.groupby(by):
        key = key if isinstance(key, tuple) else (key,)
        sdri, ibm = group[("sdri", system)].mean(), group[("sdri", "IBM")].mean()
        lines.append(
            f"| {' | '.join(map(str, key))} | {len(group)} | {sdri:.2f} | {group[('si_sdri', system)].mean():.2f} "
            f"| {ibm:.2f} | {group[('sdri', 'IRM')].mean():.2f} | {sdri / ibm:.2f} |"
        )
    return "\n".join(lines)


def mask_sharpness(masks: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """How decided masks are: the mean of ``|2 m - 1|`` over masks and bins, each bin weighted by ``weights``.

    0 when every mask is 0.5, 1 when every mask is 0 or 1; it reads the mask head's independent sigmoids and soft
    k-means' masks (which sum to one) alike.

    Args:
        masks: ``(batch, K, frames, freq)`` in [0, 1]; weights: ``(batch, frames, freq)`` >= 0 (e.g. the mixture's
            magnitude on its loud bins).

    Returns:
        ``(batch,)``.

    >>> mask_sharpness(torch.tensor([[[[0.0, 1.0]], [[1.0, 0.5]]]]), torch.ones(1, 1, 2))
    tensor([0.7500])
    """
    if masks.dim() != 4 or weights.shape != masks.shape[:1] + masks.shape[2:]:
        raise ValueError(
            f"expected masks (batch, K, frames, freq) and weights (batch, frames, freq), "
            f"got {tuple(masks.shape)} and {tuple(weights.shape)}"
        )
    decided = (2.0 * masks.float() - 1.0).abs().mean(1)  # (batch, frames, freq)
    return (decided * weights).flatten(1).sum(1) / weights.flatten(1).sum(1).clamp_min(1e-12)


def mask_agreement(masks: torch.Tensor, others: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The ``weights``-weighted share of bins whose loudest mask is the same in both sets, under the order of
    ``others``' masks that agrees best (soft k-means' speaker order is arbitrary).

    Args:
        masks, others: ``(batch, K, frames, freq)``; weights: ``(batch, frames, freq)`` >= 0.

    Returns:
        ``(batch,)`` in [1/K!, 1] (K = 2: [0.5, 1]).
    """
    labels, total = masks.argmax(1), weights.flatten(1).sum(1).clamp_min(1e-12)
    shares = [
        ((labels == others[:, list(order)].argmax(1)) * weights).flatten(1).sum(1) / total
        for order in itertools.permutations(range(masks.shape[1]))
    ]
    return torch.stack(shares).amax(0)


PICK = "pick (mask head or soft k-means, the sharper)"


class PickSeparator:
    """Per recording, the mask head's masks or soft k-means' (one network forward for both), whichever has the
    higher ``mask_sharpness`` on the loud bins, weighted by the mixture's magnitude. After each batch,
    ``last_notes`` holds per item the choice, both sharpnesses and the two mask sets' agreement
    (``mask_agreement``), which go into the benchmark's rows: other rules can be tried on a results file."""

    def __init__(self, loaded, soft_beta: float):
        self.head = Separator(loaded, device="cpu", inference="mask")
        self.clustering = Separator(loaded, device="cpu", inference="soft-kmeans", soft_beta=soft_beta)
        self.last_notes: list[dict] = []

    def separate_batch(self, waveforms, n_speakers: int) -> list[np.ndarray]:
        batch = self.clustering.embed_batch(waveforms, embeddings=True, masks=True)
        head_masks, _ = self.head.assign(batch, n_speakers)
        soft_masks, _ = self.clustering.assign(batch, n_speakers)
        weights = batch["spectra"].abs().float() * batch["valid"]
        head_sharpness, soft_sharpness = mask_sharpness(head_masks, weights), mask_sharpness(soft_masks, weights)
        use_soft = soft_sharpness > head_sharpness
        agreement = mask_agreement(head_masks, soft_masks, weights)
        self.last_notes = [
            {
                "pick": "soft" if soft else "mask",
                "mask_sharpness": float(h),
                "soft_sharpness": float(c),
                "mask_soft_agreement": float(a),
            }
            for soft, h, c, a in zip(use_soft.tolist(), head_sharpness, soft_sharpness, agreement)
        ]
        masks = torch.where(use_soft[:, None, None, None], soft_masks, head_masks)
        return self.clustering.reconstruct_masks(batch, masks)


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


MSC = CORPORA / "msc-malayalam"


def msc_pool(seed: int) -> tuple[SourcePool, dict, dict]:
    """Every recording of msc-malayalam, whole (the corpus is never trained on, so every speaker is held out):
    ``(pool, speaker_of, gender_of)``. ``seed`` is unused: nothing is drawn here."""
    corpus = prepare_sources([CorpusSource.parse(str(MSC))], test_fraction=0.25, seed=0)  # the split is ignored
    return (
        SourcePool(corpus, 8000),
        dict(zip(corpus["utterance_id"], corpus["speaker"])),
        dict(zip(corpus["speaker"], corpus["gender"])),
    )


@dataclass(frozen=True)
class OutsideCorpus:
    """A corpus of set (b): ``key`` (rows are labelled ``b-<key>``), the ``name`` and ``folder`` a training source
    of it would have, a ``title`` for the printout, and ``pool(seed) -> (pool, speaker_of, gender_of)``."""

    key: str
    name: str
    folder: Path
    title: str
    pool: Callable[[int], tuple[SourcePool, dict, dict]]

    @property
    def label(self) -> str:
        return f"b-{self.key}: never trained on ({self.name})"


OUTSIDE = {
    corpus.key: corpus
    for corpus in (
        OutsideCorpus("fsdd", "fsdd", FSDD.parent, "FSDD, 6 speakers, joined digits", lambda seed: fsdd_pool(40, seed)),
        OutsideCorpus(
            "msc", "msc-malayalam", MSC, "msc-malayalam, 83 speakers reading Malayalam on their own devices", msc_pool
        ),
    )
}


def training_use(extra: dict, corpus: OutsideCorpus) -> str | None:
    """Where a model file (its ``extra``) says it trained on ``corpus``: a training source of that name or inside
    that folder, or training / validation speakers named ``<name>/...``; None when it says nothing of the kind."""
    folder = corpus.folder.resolve()
    for source in extra.get("sources") or []:
        root = Path(str(source.get("root", ""))).resolve()
        if source.get("name") == corpus.name or root == folder or folder in root.parents:
            return f"training source {source.get('name')} ({source.get('root')})"
    heard = [*extra.get("training_speakers", []), *extra.get("cv_speakers", [])]
    named = [s for s in heard if str(s).startswith(corpus.name + "/")]
    return f"{len(named)} training or validation speakers, e.g. {named[0]}" if named else None


def in_rooms(mixtures: list[dict], seed: int) -> list[dict]:
    """The same mixtures in simulated rooms with coloured noise; references = early-reflection images."""
    from deepclust.training.augment import AugmentConfig, Augmenter

    config = AugmentConfig(
        room_probability=1.0,
        rt60_range=(0.2, 0.8),
        rooms=60,
        noise_probability=1.0,
        snr_db_range=(5.0, 20.0),
        coloured_noise_share=1.0,
    )
    augmenter = Augmenter(config, 8000, max(len(m["sources"]) for m in mixtures), seed=seed + 1_000)
    rng = np.random.default_rng([seed, 12])
    out = []
    for item in mixtures:
        mixture, targets = augmenter(rng, item["sources"].astype(np.float64))
        peak = max(np.abs(mixture).max(), np.abs(targets).max())
        scale = 0.9 / peak if peak > 0 else 1.0
        out.append(
            {**item, "mixture": (mixture * scale).astype(np.float32), "sources": (targets * scale).astype(np.float32)}
        )
    return out


def model_sources(loaded) -> list[CorpusSource]:
    """The corpora the model says it trained on (by their folder names, under ../shared/corpora), else the
    first shipped model's two."""
    named = [entry["name"] for entry in loaded.extra.get("sources") or []]
    if not named:
        return [CorpusSource.parse(s) for s in DEFAULT_SOURCES]
    return [CorpusSource(str(CORPORA / name), "auto", name) for name in named]


def mixture_count(frame: pd.DataFrame) -> int:
    """Mixtures in rows of one or more test sets (each set numbers its mixtures from 0)."""
    return len(frame.drop_duplicates(["test_set", "mixture"]))


def print_pick(frames: dict[str, pd.DataFrame], head: str, soft: str) -> None:
    """Two speakers, per set and pooled: the mask head, soft k-means, ``PICK`` and the oracle pick (per recording
    the better of the two by SDRi, the ceiling of any per-recording choice between them)."""
    two_speaker = {key: f[f["num_speakers"] == 2] for key, f in frames.items()}
    groups = {key: [key] for key in two_speaker}
    pools = {"b pooled": [k for k in two_speaker if k[0] == "b"], "b + c": [k for k in two_speaker if k[0] in "bc"]}
    for name, members in pools.items():
        if len(members) > 1 and members not in groups.values():  # else it repeats a row above
            groups[name] = members
    print(f"\n## Per-recording choice, two speakers: {PICK} against the oracle pick (SDRi, dB)\n")
    print(
        "| set | mixtures | mask head | soft k-means | pick | oracle pick | pick took soft k-means "
        "| oracle took soft k-means | pick chose as the oracle |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, members in groups.items():
        rows = pd.concat([two_speaker[k] for k in members])
        sdri = rows.pivot_table(index=["test_set", "mixture"], columns="system", values="sdri")
        took_soft = rows[rows["system"] == PICK].set_index(["test_set", "mixture"])["pick"].eq("soft")
        soft_better = sdri[soft] > sdri[head]
        print(
            f"| {name} | {len(sdri)} | {sdri[head].mean():.2f} | {sdri[soft].mean():.2f} | {sdri[PICK].mean():.2f} "
            f"| {sdri[[head, soft]].max(axis=1).mean():.2f} | {took_soft.mean():.0%} | {soft_better.mean():.0%} "
            f"| {(took_soft.reindex(sdri.index) == soft_better).mean():.0%} |"
        )


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
            print(
                f"| {n} | {system} | {mixture_count(group)} | {sdri:.2f} | {means.loc[system, 'si_sdri']:.2f} "
                f"| {means.loc['IBM', 'sdri']:.2f} | {means.loc['IRM', 'sdri']:.2f} "
                f"| {sdri / means.loc['IBM', 'sdri']:.2f} |"
            )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=pretrained.path())
    parser.add_argument("--source", action="append", help="corpus folders (default: those the model names)")
    parser.add_argument("--test-fraction", type=float, default=0.25)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--mixtures", type=int, default=300, help="two-speaker test mixtures (sets a and c)")
    parser.add_argument("--mixtures3", type=int, default=150, help="three-speaker test mixtures (set a)")
    parser.add_argument(
        "--outside-mixtures", type=int, default=200, help="two-speaker mixtures of set b, per never-trained corpus"
    )
    parser.add_argument(
        "--outside", default=",".join(OUTSIDE), help=f"the never-trained corpora of set b ({', '.join(OUTSIDE)})"
    )
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--soft-beta", type=float, default=SOFT_KMEANS_BETA)
    parser.add_argument("--sets", default="a,b,c", help="which test sets to run")
    parser.add_argument(
        "--systems",
        default="mask,kmeans,soft,blend",
        help="which inferences to score (mask, kmeans, soft, blend; pick: the analysis system)",
    )
    parser.add_argument("--snapshots", help="a folder of epoch-NNN.pt: two-speaker SDRi of each (training time)")
    parser.add_argument("--results", help="write every row to this Parquet file")
    parser.add_argument("--whitened", action="store_true", help="also k-means on whitened embeddings (2 speakers)")
    parser.add_argument(
        "--phase-iterations",
        type=int,
        default=0,
        help="also the mask head and the blend with this many MISI phase iterations (2 speakers)",
    )
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
    outside = [OUTSIDE[key] for key in args.outside.split(",")] if "b" in sets else []
    for never_trained in outside:
        used = training_use(loaded.extra, never_trained)
        if used:  # set (b) means never trained on: a model that names the corpus is not scored on it
            raise SystemExit(
                f"{args.model} lists {never_trained.name} in training ({used}); set b is for corpora it "
                f"never trained on: leave {never_trained.key} out of --outside"
            )
    pool = SourcePool(test_rows, 8000)
    speaker_of = dict(zip(corpus["utterance_id"], corpus["speaker"]))
    gender_of = dict(zip(corpus["speaker"], corpus["gender"]))
    age_of = speaker_ages(sources)
    print(f"$ python benchmarks/bench_quality_real.py {' '.join(sys.argv[1:])}")
    print(
        f"model: {args.model} ({loaded.model.num_parameters / 1e6:.1f} M parameters, "
        f"{len(loaded.extra.get('training_speakers', [])) or 'unknown'} training speakers); "
        f"held out: {len(pool.speakers)} speakers of {', '.join(s.source_name for s in sources)}, "
        f"{pool.seconds / 60:.0f} min"
        f"{'; none heard in training or validation' if heard else '; the model does not list its speakers'}"
    )

    if args.snapshots:
        mixtures = draw_mixtures(pool, args.mixtures, 2, args.seed)
        # (the speaker check above used --model; each snapshot lists its own speakers too)
        print(
            "| snapshot | epoch | steps | SDRi (mask head) | SDRi (k-means) | SDRi (soft k-means) | IBM |\n"
            "| --- | --- | --- | --- | --- | --- | --- |"
        )
        for path in snapshots:
            snapshot = load_model(str(path))
            separators = {
                "mask": Separator(snapshot, device="cpu", inference="auto"),
                "kmeans": Separator(snapshot, device="cpu", inference="kmeans"),
                "soft": Separator(snapshot, device="cpu", inference="soft-kmeans", soft_beta=args.soft_beta),
            }
            frame = pd.DataFrame(score(mixtures, separators, 2, speaker_of, gender_of, age_of)[0])
            means = frame.groupby("system")["sdri"].mean()
            print(
                f"| {path.name} | {snapshot.extra.get('epoch')} | {snapshot.extra.get('global_step')} | "
                f"{means['mask']:.2f} | {means['kmeans']:.2f} | {means['soft']:.2f} | {means['IBM']:.2f} |",
                flush=True,
            )
        return

    has_masks = bool(getattr(loaded.model.config, "mask_heads", 0))
    two = {
        "k-means": Separator(loaded, device="cpu", inference="kmeans"),
        f"soft k-means (beta {args.soft_beta:g})": Separator(
            loaded, device="cpu", inference="soft-kmeans", soft_beta=args.soft_beta
        ),
    }
    if args.whitened:
        two["k-means (whitened)"] = Separator(loaded, device="cpu", inference="kmeans", whiten=True)
    if has_masks:
        heads = {
            "mask head": Separator(loaded, device="cpu", inference="mask"),
            "blend (mask head + soft k-means)": Separator(
                loaded, device="cpu", inference="blend", soft_beta=args.soft_beta
            ),
        }
        if args.phase_iterations:
            heads[f"mask head + MISI {args.phase_iterations}"] = Separator(
                loaded, device="cpu", inference="mask", phase_iterations=args.phase_iterations
            )
            heads[f"blend + MISI {args.phase_iterations}"] = Separator(
                loaded,
                device="cpu",
                inference="blend",
                soft_beta=args.soft_beta,
                phase_iterations=args.phase_iterations,
            )
        heads[PICK] = PickSeparator(loaded, args.soft_beta)
        two = {**heads, **two}
    wanted = set(args.systems.split(","))
    two = {
        name: separator for name, separator in two.items() if name.split(" ")[0].replace("k-means", "kmeans") in wanted
    }
    three = {k: v for k, v in two.items() if k.startswith(("k-means", "soft"))}
    systems = list(two)
    frames, seconds2, set_seconds = {}, {}, {}
    mixtures2 = draw_mixtures(pool, args.mixtures, 2, args.seed)
    clock = time.perf_counter()
    if "a" in sets:
        rows2, seconds2 = score(mixtures2, two, 2, speaker_of, gender_of, age_of)
        rows3 = (
            score(draw_mixtures(pool, args.mixtures3, 3, args.seed), three, 3, speaker_of, gender_of, age_of)[0]
            if three and args.mixtures3
            else []
        )
        frames["a"] = pd.DataFrame(rows2 + rows3).assign(test_set="a: held out")
        print_overall("(a) Held-out speakers of the training corpora", frames["a"], systems)
        set_seconds["a"], clock = time.perf_counter() - clock, time.perf_counter()
    for never_trained in outside:
        key = f"b-{never_trained.key}"
        outside_pool, outside_speaker_of, outside_gender_of = never_trained.pool(args.seed)
        rows, _ = score(
            draw_mixtures(outside_pool, args.outside_mixtures, 2, args.seed),
            two,
            2,
            outside_speaker_of,
            outside_gender_of,
            {},
        )
        frames[key] = pd.DataFrame(rows).assign(test_set=never_trained.label)
        print_overall(f"({key}) A corpus never trained on ({never_trained.title})", frames[key], systems)
        set_seconds[key], clock = time.perf_counter() - clock, time.perf_counter()
    if len(outside) > 1:
        print_overall(
            f"(b) The corpora never trained on, pooled ({' + '.join(c.name for c in outside)})",
            pd.concat([frames[f"b-{c.key}"] for c in outside]),
            systems,
        )
    if "c" in sets:
        rows, _ = score(in_rooms(mixtures2, args.seed), two, 2, speaker_of, gender_of, age_of)
        frames["c"] = pd.DataFrame(rows).assign(test_set="c: held out, room + noise")
        print_overall("(c) The held-out mixtures of (a) in a room with noise", frames["c"], systems)
        set_seconds["c"] = time.perf_counter() - clock
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
        # pick is an analysis system: a model file cannot name it for auto
        best = max([s for s in systems if s != PICK], key=lambda name: means.get(name, -np.inf))
        counts = unseen.drop_duplicates(["test_set", "mixture"])["test_set"].str.split(":").str[0].value_counts()
        print(
            f"\nbest two-speaker inference on the sets never trained on "
            f"({' + '.join(f'{k} {n}' for k, n in sorted(counts.items()))} mixtures): {best} "
            f"({', '.join(f'{s} {means[s]:.2f}' for s in systems if s in means)} dB SDRi)"
        )
    head_name, soft_name = "mask head", f"soft k-means (beta {args.soft_beta:g})"
    if {PICK, head_name, soft_name} <= set(systems):
        print_pick(frames, head_name, soft_name)
    if "a" in frames:
        two_speaker = frames["a"][frames["a"]["num_speakers"] == 2]
        main_system = systems[0]
        for by in ("corpora", "gender_condition", "ages"):
            print(f"\n## (a) Two speakers by {by} ({main_system})\n")
            print(table(two_speaker, [by], main_system))
    print(
        f"\nwall time {time.perf_counter() - began:.0f} s "
        f"({', '.join(f'{key} {seconds:.0f} s' for key, seconds in set_seconds.items())})"
    )


if __name__ == "__main__":
    main()
