"""The mixtures stage: mix lists (official or generated, wsj0-2mix protocol) become mixture WAVs and the
mixture manifest, in units of ``MixStageConfig.batch_size`` mixtures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pandas as pd

from deepclust import storage
from deepclust.mixing.mix import MixConfig
from deepclust.pipeline.plan import StageDefinition, StagePlan, concat_parts, config_dict, config_of, recipe_params
from deepclust.pipeline.store import make_stage
from deepclust.storage.manifests import read_manifest


@dataclass
class MixStageConfig:
    """wsj0-2mix recipe: 20k/5k/3k mixtures (scaled by ``scale``), relative SNR 0-5 dB, 8 kHz, 'min'.

    ``sample_rate`` and ``mode`` are ``deepclust.mixing.mix.MixConfig``'s (their defaults come from there);
    this config adds what the stage needs around it: list sizes, speaker counts, seed, unit size.
    """

    n_speakers: int = 2
    test_speaker_counts: tuple[int, ...] = (2,)  # add 3 for the paper's 2->3 speaker generalisation test
    sample_rate: int = MixConfig.sample_rate
    mode: str = MixConfig.mode
    sizes: dict = field(default_factory=lambda: {"tr": 20000, "cv": 5000, "tt": 3000})
    scale: float = 1.0
    seed: int = 0
    # Official lists, used instead of generating: {"tr": url, "cv": url, "tt": url}, and further lists by their
    # official name, whose last part is the split ({"mix_3_spk_tt": url}: the 3-speaker test set).
    mix_lists: dict | None = None
    batch_size: int = 250  # mixtures per work unit


def plan_mixtures(run_root: str, corpus_manifest_url: str, config: MixStageConfig) -> StagePlan:
    """Units: batches of mixtures per (split, speaker count). Lists are generated (or copied) first."""
    list_checksums = {}
    if config.mix_lists:
        list_checksums = {split: storage.sha256_of(url) for split, url in sorted(config.mix_lists.items())}
    stage = make_stage(
        run_root, "mixtures", {"config": recipe_params(config), "lists": list_checksums}, [corpus_manifest_url]
    )
    lists = prepare_mix_lists(stage, corpus_manifest_url, config)  # {list_name: (split, n_speakers, url, count)}
    units = []
    for name, (split, n_speakers, list_url, count) in sorted(lists.items()):
        for index, start in enumerate(range(0, count, config.batch_size)):
            units.append(
                {
                    "id": f"{name}-{index:04d}",
                    "split": split,
                    "n_speakers": n_speakers,
                    "list_url": list_url,
                    "start": start,
                    "stop": min(count, start + config.batch_size),
                }
            )
    return StagePlan(stage, STAGE, units, {"config": config_dict(config), "corpus_manifest_url": corpus_manifest_url})


def prepare_mix_lists(stage, corpus_manifest_url: str, config) -> dict:
    """Write (or copy) the mix lists in the official format into the stage; return what they hold.

    Returns ``{list_name: (split, n_speakers, list_url, count)}``. Generated lists follow the
    wsj0-2mix protocol (``deepclust.mixing.generate_mix_lists``); official lists are copied as given.
    """
    from deepclust.mixing.mixlist import generate_mix_lists, read_mix_list, write_mix_list

    lists = {}
    if config.mix_lists:
        for key, url in sorted(config.mix_lists.items()):
            split = key.rsplit("_", 1)[-1]  # "tt", or "tt" of "mix_3_spk_tt"
            entries = read_mix_list(url)
            n_speakers = len(entries[0].paths) if entries else config.n_speakers
            name = f"mix_{n_speakers}_spk_{split}"
            target = stage.path("lists", f"{name}.txt")
            if not storage.exists(target):
                write_mix_list(entries, target)
            lists[name] = (split, n_speakers, target, len(entries))
        return lists
    corpus = read_manifest(corpus_manifest_url, "corpus")
    wanted = [(config.n_speakers, ("tr", "cv", "tt"))]
    wanted += [(n, ("tt",)) for n in config.test_speaker_counts if n != config.n_speakers]
    for n_speakers, splits in wanted:
        sizes = {split: config.sizes[split] for split in splits}
        names = {split: f"mix_{n_speakers}_spk_{split}" for split in splits}
        targets = {split: stage.path("lists", f"{names[split]}.txt") for split in splits}
        if not all(storage.exists(t) for t in targets.values()):
            generated = generate_mix_lists(
                corpus, n_speakers=n_speakers, sizes=sizes, scale=config.scale, seed=config.seed + 1000 * n_speakers
            )
            for split in splits:
                write_mix_list(generated[split], targets[split])
        for split in splits:
            lists[names[split]] = (split, n_speakers, targets[split], len(read_mix_list(targets[split])))
    return lists


def _path_resolver(corpus: pd.DataFrame):
    """Map a listed path to a corpus file: exact path first, then by utterance id (the file stem).

    This is what lets the official WSJ0 lists (``wsj0/si_tr_s/01t/01to030v.wv1``) find converted WAVs.
    """
    by_path = set(corpus["path"])
    by_id = dict(zip(corpus["utterance_id"], corpus["path"]))

    def resolve(listed: str) -> str:
        if listed in by_path:
            return listed
        stem = os.path.splitext(os.path.basename(listed))[0]
        if stem in by_id:
            return by_id[stem]
        raise FileNotFoundError(f"{listed}: not in the corpus manifest (no utterance {stem!r})")

    return resolve


def mixtures_unit(plan, unit) -> dict:
    """Mix one unit's slice of its mix list into WAVs and write their manifest rows (with checksums) as a part file."""
    from deepclust.mixing.mix import create_mixtures
    from deepclust.mixing.mixlist import read_mix_list

    config = config_of(plan, MixStageConfig)
    corpus = read_manifest(plan.context["corpus_manifest_url"], "corpus")
    entries = read_mix_list(unit["list_url"])[unit["start"] : unit["stop"]]
    mix_config = MixConfig(sample_rate=config.sample_rate, mode=config.mode, n_speakers=unit["n_speakers"])
    manifest = create_mixtures(
        entries,
        unit["split"],
        plan.stage.url,
        mix_config,
        path_resolver=_path_resolver(corpus),
        corpus_manifest=corpus,
        write_manifest=False,
    )
    manifest["sha256"] = [
        storage.sha256_of(p) if s == "done" else "" for p, s in zip(manifest["mixture_path"], manifest["status"])
    ]
    part = plan.stage.path("parts", f"{unit['id']}.parquet")
    storage.write_parquet(manifest, part)
    return {"part": part, "rows": int(len(manifest)), "failed": int((manifest["status"] != "done").sum())}


def mixtures_finish(plan, results):
    """The mixture manifest from the parts, with the count per split and speaker count and the failures."""
    manifest = concat_parts(results)
    counts = manifest.groupby(["split", "num_speakers"]).size()
    info = {
        "mixtures": {f"{s}/{n}spk": int(c) for (s, n), c in counts.items()},
        "failed": int((manifest["status"] != "done").sum()),
    }
    return manifest, info


STAGE = StageDefinition(
    "mixtures",
    plan_mixtures,
    mixtures_unit,
    mixtures_finish,
    "mixtures",
    upstream=("corpus",),
    config_fields=("mixtures",),
)
