"""The six stages of the recipe, each split into plan -> units -> finish.

``plan_*`` decides the stage folder (by content key) and its work units; ``run_unit`` does one unit
(a batch of mixtures, a feature shard) and is skipped when its marker exists; ``finish`` merges the unit
results into the stage manifest and commits it. ``run_stage`` runs a plan by hand (no Prefect); the
Prefect flows in ``flows/`` map the same units over task runners. Every function takes and returns URLs
and small JSON-able values, never arrays.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable


from deepclust import storage
from deepclust.pipeline.store import Stage, batches, make_stage


@dataclass
class StagePlan:
    """A stage folder plus the units of work it needs; JSON-able so it can travel through Prefect."""

    stage: Stage
    kind: str
    units: list[dict] = field(default_factory=list)
    context: dict = field(default_factory=dict)

    @property
    def manifest_url(self) -> str:
        return self.stage.manifest_url

    def to_dict(self) -> dict:
        return {"stage": dataclasses.asdict(self.stage), "kind": self.kind, "units": self.units,
                "context": self.context}

    @classmethod
    def from_dict(cls, data: dict) -> "StagePlan":
        return cls(stage=Stage(**data["stage"]), kind=data["kind"], units=data["units"], context=data["context"])


def run_unit(plan: StagePlan, unit: dict):
    """Do one unit of a stage (idempotent: a finished unit returns its recorded result)."""
    from deepclust.pipeline import units as unit_impl

    return plan.stage.run_unit(unit["id"], lambda: getattr(unit_impl, f"{plan.kind}_unit")(plan, unit))


def finish(plan: StagePlan, results: list) -> str:
    """Merge unit results, write the manifest and the marker; returns the manifest URL."""
    from deepclust.pipeline import units as unit_impl

    if plan.stage.is_complete():
        return plan.manifest_url
    manifest, info = getattr(unit_impl, f"{plan.kind}_finish")(plan, results)
    return plan.stage.commit(manifest, info)


def run_stage(plan: StagePlan, map_units: Callable | None = None, log: Callable = print) -> str:
    """Run a plan without Prefect: skip it when committed, else run the missing units, then commit."""
    if plan.stage.is_complete():
        log(f"[{plan.stage.name}] reused {plan.stage.url}")
        return plan.manifest_url
    began = time.perf_counter()
    mapper = map_units or (lambda fn, items: [fn(item) for item in items])
    results = mapper(lambda unit: run_unit(plan, unit), plan.units)
    url = finish(plan, results)
    log(f"[{plan.stage.name}] {len(plan.units)} units in {time.perf_counter() - began:.1f} s -> {plan.stage.url}")
    return url


# Planning ------------------------------------------------------------------------------------------

def plan_corpus(run_root: str, config) -> StagePlan:
    from deepclust.pipeline.units import corpus_source_fingerprint

    params = {"config": config, "source": corpus_source_fingerprint(config)}
    stage = make_stage(run_root, "corpus", params)
    return StagePlan(stage, "corpus", [{"id": "corpus"}], {"config": dataclasses.asdict(config)})


def plan_mixtures(run_root: str, corpus_manifest_url: str, config) -> StagePlan:
    """Units: batches of mixtures per (split, speaker count). Lists are generated (or copied) first."""
    from deepclust.pipeline.units import prepare_mix_lists

    list_checksums = {}
    if config.mix_lists:
        list_checksums = {split: storage.sha256_of(url) for split, url in sorted(config.mix_lists.items())}
    stage = make_stage(run_root, "mixtures", {"config": config, "lists": list_checksums}, [corpus_manifest_url])
    lists = prepare_mix_lists(stage, corpus_manifest_url, config)  # {list_name: (split, n_speakers, url, count)}
    units = []
    for name, (split, n_speakers, list_url, count) in sorted(lists.items()):
        for index, start in enumerate(range(0, count, config.batch_size)):
            units.append({"id": f"{name}-{index:04d}", "split": split, "n_speakers": n_speakers,
                          "list_url": list_url, "start": start, "stop": min(count, start + config.batch_size)})
    return StagePlan(stage, "mixtures", units,
                     {"config": dataclasses.asdict(config), "corpus_manifest_url": corpus_manifest_url})


def plan_features(run_root: str, mixture_manifest_url: str, config, splits=("tr", "cv")) -> StagePlan:
    """Units: one feature shard each (``utterances_per_shard`` mixtures of one split).

    Only the splits training reads (tr, cv) by default: test mixtures are separated from audio.
    """
    stage = make_stage(run_root, "features", {"config": config, "splits": list(splits)}, [mixture_manifest_url])
    mixtures = storage.read_parquet(mixture_manifest_url)
    mixtures = mixtures[mixtures["split"].isin(splits)]
    mixtures = mixtures[mixtures["status"] == "done"] if "status" in mixtures else mixtures
    units = []
    for split, group in mixtures.groupby("split", sort=True):
        for index, ids in enumerate(batches(list(group["mixture_id"]), config.utterances_per_shard)):
            units.append({"id": f"{split}-{index:05d}", "split": split, "mixture_ids": ids})
    return StagePlan(stage, "features", units,
                     {"config": _config_dict(config), "mixture_manifest_url": mixture_manifest_url})


# Settings that say where or how fast a stage runs, not what it computes: kept out of stage keys, so
# moving a run to another device or thread count reuses its finished stages.
EXECUTION_ONLY = {"device", "num_threads"}


def _recipe(config) -> dict:
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in EXECUTION_ONLY}


def plan_training(run_root: str, feature_manifest_url: str, model_config, train_config) -> StagePlan:
    """One unit: training resumes from its own checkpoints inside the stage folder."""
    stage = make_stage(run_root, "train", {"model": model_config, "train": _recipe(train_config)},
                       [feature_manifest_url])
    return StagePlan(stage, "train", [{"id": "train"}],
                     {"model": dataclasses.asdict(model_config), "train": dataclasses.asdict(train_config),
                      "feature_manifest_url": feature_manifest_url})


def plan_separation(run_root: str, model_manifest_url: str, mixture_manifest_url: str, config) -> StagePlan:
    """Units: batches of test mixtures; each writes ``<mixture_id>/s1.wav ..``."""
    stage = make_stage(run_root, "separate", {"config": _recipe(config)}, [model_manifest_url, mixture_manifest_url])
    mixtures = storage.read_parquet(mixture_manifest_url)
    mixtures = mixtures[mixtures["split"].isin(config.splits)]
    if "status" in mixtures:
        mixtures = mixtures[mixtures["status"] == "done"]
    units = [{"id": f"batch-{i:05d}", "mixture_ids": ids}
             for i, ids in enumerate(batches(list(mixtures["mixture_id"]), config.unit_size))]
    return StagePlan(stage, "separate", units,
                     {"config": dataclasses.asdict(config), "model_manifest_url": model_manifest_url,
                      "mixture_manifest_url": mixture_manifest_url})


def plan_evaluation(run_root: str, separation_manifest_url: str, mixture_manifest_url: str, config) -> StagePlan:
    stage = make_stage(run_root, "evaluate", {"config": config}, [separation_manifest_url, mixture_manifest_url])
    separated = storage.read_parquet(separation_manifest_url)
    units = [{"id": f"batch-{i:05d}", "mixture_ids": ids}
             for i, ids in enumerate(batches(list(separated["mixture_id"]), config.unit_size))]
    return StagePlan(stage, "evaluate", units,
                     {"config": dataclasses.asdict(config), "separation_manifest_url": separation_manifest_url,
                      "mixture_manifest_url": mixture_manifest_url})


def _config_dict(config) -> dict:
    return config.to_dict() if hasattr(config, "to_dict") else dataclasses.asdict(config)
