"""The recipe's separation stage: the test mixtures, separated by the one separation loop.

The mixture manifest becomes an input manifest (``inputs_from_mixtures``); each unit is a batch of its
rows, separated by ``deepclust.separation.batch.separate_items`` into ``<stage>/<split>/<mixture_id>/``,
exactly as ``deepclust separate --input <mixture manifest>`` would: the same rows, the same schema, the
same error policy. A unit's rows are committed (its part file and marker) as soon as it finishes.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from deepclust import storage
from deepclust.pipeline.plan import (
    StageDefinition,
    StagePlan,
    concat_parts,
    config_dict,
    config_of,
    execution_only,
    recipe_params,
)
from deepclust.pipeline.store import make_stage, range_units
from deepclust.separation.inputs import assign_output_stems, inputs_from_mixtures
from deepclust.separation.long import WindowConfig


@dataclass
class SeparateConfig:
    """The recipe's separation stage (the one separation loop, ``deepclust.separation.batch``).

    ``device``, ``batch_size`` and ``unit_size`` say where and in what groups the mixtures are separated, not
    what comes out: they are ``execution_only`` (not in the stage key)."""

    kmeans: str = "auto"  # "auto" (torch on CUDA, scikit-learn on CPU), "torch" (batched) or "sklearn"
    device: str = execution_only("auto")
    # "auto" (what the model file records for K speakers; else its mask head, else k-means), "mask", "kmeans",
    # "soft-kmeans" or "blend" (deepclust.separation.separator)
    inference: str = "auto"
    # The recipe separates in float32 unless told otherwise, so a run's table does not depend on the CPU it ran
    # on; "bf16" and "int8" are what ``deepclust separate --precision`` takes (and refuses where they cannot run).
    precision: str = "fp32"
    batch_size: int = execution_only(WindowConfig.windows_per_batch)  # mixtures per network forward / batched k-means
    # Test utterances are separated whole, as the paper does (wsj0-2mix mixtures last at most ~ 20 s);
    # only longer recordings would be cut into windows.
    window_seconds: float = 60.0
    unit_size: int = execution_only(100)  # mixtures per work unit (one Prefect task each)
    splits: tuple[str, ...] = ("tt",)


def plan_separate(
    run_root: str, model_manifest_url: str, mixture_manifest_url: str, config: SeparateConfig
) -> StagePlan:
    """Units: batches of ``config.unit_size`` test mixtures (input-manifest rows), named by their range."""
    stage = make_stage(
        run_root, "separate", {"config": recipe_params(config)}, [model_manifest_url, mixture_manifest_url]
    )
    items = inputs_from_mixtures(mixture_manifest_url, tuple(config.splits)).to_dict("records")
    stems = assign_output_stems([item["relative_path"] for item in items])
    for item in items:
        item["output_stem"] = stems[item["relative_path"]]
    units = [{"id": unit_id, "items": chunk} for unit_id, chunk in range_units(items, config.unit_size)]
    return StagePlan(
        stage,
        STAGE,
        units,
        {
            "config": config_dict(config),
            "model_manifest_url": model_manifest_url,
            "mixture_manifest_url": mixture_manifest_url,
        },
    )


def separate_unit(plan, unit) -> dict:
    """Separate one batch of input rows with the training stage's model (cached per process) into a part file."""
    from deepclust.archive import job_settings, separate_job_batch
    from deepclust.separation.separator import cached_separator
    from deepclust.stages.train import model_url_of

    config = config_of(plan, SeparateConfig)
    model_url = model_url_of(plan.context["model_manifest_url"])
    separator = cached_separator(model_url, config.device, config.kmeans, config.inference, precision=config.precision)
    # The job-wide settings, with the precision the separator resolved on its own device (what the rows record).
    job = job_settings(
        model_url, window_of(config), config.inference, config.kmeans, separator.precision, device=config.device
    )
    # The job's batch step; a transient fault fails the unit (the driver or Prefect retries it), so a stage is
    # never committed with rows that a retry could have made.
    rows = separate_job_batch(separator, unit["items"], plan.stage.url, job)
    part = plan.stage.path("parts", f"{unit['id']}.parquet")
    storage.write_parquet(pd.DataFrame(rows), part)
    return {"part": part, "rows": len(rows)}


def window_of(config: SeparateConfig) -> WindowConfig:
    """The ``WindowConfig`` of the stage's config: its window length and batch size, the rest by default."""
    return WindowConfig(window_seconds=config.window_seconds, windows_per_batch=config.batch_size)


def separate_finish(plan, results):
    """The separation manifest from the parts, with the counts separated and failed and the model manifest used
    (the evaluation report finds the loss curve through it)."""
    manifest = concat_parts(results)
    return manifest, {
        "separated": int((manifest["status"] == "done").sum()),
        "failed": int((manifest["status"] != "done").sum()),
        "model_manifest_url": plan.context["model_manifest_url"],
    }


STAGE = StageDefinition(
    "separate",
    plan_separate,
    separate_unit,
    separate_finish,
    "separate",
    upstream=("train", "mixtures"),
    config_fields=("separate",),
)
