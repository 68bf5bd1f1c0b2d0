"""The features stage: mixtures become feature shards (log-magnitude, IBM targets, weights), one unit per
shard, and the training set's normalisation statistics (merged from every training shard's own).
"""

from __future__ import annotations

import pandas as pd

from deepclust import storage
from deepclust.pipeline.plan import StageDefinition, StagePlan, concat_parts, config_dict, config_of, recipe_params
from deepclust.pipeline.store import make_stage
from deepclust.storage.manifests import read_manifest


def plan_features(run_root: str, mixture_manifest_url: str, config, splits=("tr", "cv")) -> StagePlan:
    """Units: one feature shard each (``utterances_per_shard`` mixtures of one split).

    Only the splits training reads (tr, cv) by default: test mixtures are separated from audio.
    """
    from deepclust.features.extract import plan_shards

    stage = make_stage(
        run_root, "features", {"config": recipe_params(config), "splits": list(splits)}, [mixture_manifest_url]
    )
    mixtures = read_manifest(mixture_manifest_url, "mixtures")
    # The library's one shard plan; a unit is named by its shard (``tr-00000``), as its shard file is.
    units = [
        {"id": _shard_name(shard_url), "split": split, "mixture_ids": list(rows["mixture_id"])}
        for split, shard_url, rows in plan_shards(mixtures, stage.url, config, splits)
    ]
    return StagePlan(stage, STAGE, units, {"config": config_dict(config), "mixture_manifest_url": mixture_manifest_url})


def _shard_name(shard_url: str) -> str:
    """``tr-00000`` of ``.../shards/tr-00000.parquet``."""
    return shard_url.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0]


def features_unit(plan, unit) -> dict:
    """Extract one feature shard; a training shard also returns its own normalisation statistics (merged at finish)."""
    from deepclust.features.extract import FeatureConfig, extract_shard
    from deepclust.features.normalisation import RunningStats
    from deepclust.features.shards import shard_extension

    config = config_of(plan, FeatureConfig)
    mixtures = read_manifest(plan.context["mixture_manifest_url"], "mixtures").set_index("mixture_id")
    rows = mixtures.loc[unit["mixture_ids"]].reset_index()
    shard_url = plan.stage.path("shards", f"{unit['id']}{shard_extension(config.shard_format)}")
    # Each shard accumulates its own statistics; finish merges the training ones.
    stats = RunningStats(config.stft.n_freq) if unit["split"] == "tr" else None
    manifest_rows = extract_shard(rows, shard_url, config, stats=stats)
    part = plan.stage.path("parts", f"{unit['id']}.parquet")
    storage.write_parquet(pd.DataFrame(manifest_rows), part)
    return {
        "part": part,
        "shard_url": shard_url,
        "split": unit["split"],
        "stats": stats.to_dict() if stats is not None and stats.count else None,
    }


def features_finish(plan, results):
    """Merge the training shards' statistics and write the feature index (``manifest.parquet``, ``stats.json``)."""
    from deepclust.features.extract import FeatureConfig, write_feature_index
    from deepclust.features.normalisation import RunningStats

    rows = concat_parts(results).to_dict("records")
    train_stats = [RunningStats.from_dict(r["stats"]) for r in results if r.get("stats")]
    if not train_stats:
        raise ValueError("feature extraction: no training ('tr') utterances to compute normalisation statistics")
    merged = train_stats[0]
    for other in train_stats[1:]:
        merged = merged.merge(other)
    manifest = write_feature_index(rows, plan.stage.url, config_of(plan, FeatureConfig), merged)
    return manifest, {
        "shards": len(results),
        "utterances": int(len(manifest)),
        "failed": int((manifest["status"] != "done").sum()),
    }


STAGE = StageDefinition(
    "features",
    plan_features,
    features_unit,
    features_finish,
    "features",
    upstream=("mixtures",),
    config_fields=("features",),
)
