"""The evaluation stage: separated outputs against their references (BSS-eval SDR/SIR/SAR, SI-SDR) with
IBM/IRM oracle rows, then the summary tables and the Markdown report with its figures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
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
from deepclust.separation.inputs import resolve_outputs
from deepclust.storage.manifests import read_manifest


@dataclass
class EvaluateConfig:
    """The recipe's evaluation stage: metric backend, oracle masks scored beside the model, mixtures per unit."""

    backend: str = "fast"  # "fast" (agrees with mir_eval within 0.01 dB) or "mir_eval"
    oracles: tuple[str, ...] = ("ibm", "irm")
    unit_size: int = execution_only(100)  # mixtures per work unit: how the work is cut, not what it computes


def plan_evaluate(
    run_root: str, separation_manifest_url: str, mixture_manifest_url: str, config: EvaluateConfig
) -> StagePlan:
    """Units: batches of the separated mixtures. The separation manifest is the recipe's separation stage's or
    ``deepclust separate --input <mixture manifest>``'s (the same schema): its rows name their ``mixture_id``."""
    separated = read_manifest(separation_manifest_url, "separate")
    known = set(read_manifest(mixture_manifest_url, "mixtures")["mixture_id"])
    ids = [m for m in separated["mixture_id"] if m]
    if not ids or not set(ids) <= known:
        raise ValueError(
            f"{separation_manifest_url}: its rows do not name mixtures of {mixture_manifest_url}; "
            "separate the mixture manifest itself (deepclust separate --input MIXTURES.parquet)"
        )
    stage = make_stage(
        run_root, "evaluate", {"config": recipe_params(config)}, [separation_manifest_url, mixture_manifest_url]
    )
    units = [{"id": unit_id, "mixture_ids": chunk} for unit_id, chunk in range_units(ids, config.unit_size)]
    return StagePlan(
        stage,
        STAGE,
        units,
        {
            "config": config_dict(config),
            "separation_manifest_url": separation_manifest_url,
            "mixture_manifest_url": mixture_manifest_url,
        },
    )


def evaluate_unit(plan, unit) -> dict:
    """Score one batch of mixtures (model and oracle rows; a failed separation gives a failed row) into a part file.

    Each row's ``condition`` says whether its speakers were heard in training (``speaker_condition``).
    """
    from deepclust.evaluation import evaluate_mixtures

    config = config_of(plan, EvaluateConfig)
    mixtures = read_manifest(plan.context["mixture_manifest_url"], "mixtures")
    separated = read_manifest(plan.context["separation_manifest_url"], "separate").set_index("mixture_id")
    chosen = mixtures[mixtures["mixture_id"].isin(unit["mixture_ids"])]
    base = storage.parent(plan.context["separation_manifest_url"])  # outputs are recorded relative to it
    estimates = {
        mid: resolve_outputs(base, separated.loc[mid, "outputs"])
        for mid in unit["mixture_ids"]
        if separated.loc[mid, "status"] == "done"
    }
    results = evaluate_mixtures(chosen, estimates, oracles=config.oracles, backend=config.backend)
    training_speakers = (
        set(np.concatenate(mixtures.loc[mixtures["split"] == "tr", "speakers"].to_numpy()))
        if (mixtures["split"] == "tr").any()
        else set()
    )
    results["condition"] = [speaker_condition(s, training_speakers) for s in results["speakers"]]
    part = plan.stage.path("parts", f"{unit['id']}.parquet")
    storage.write_parquet(results, part)
    return {"part": part, "rows": int(len(results))}


def speaker_condition(speakers, training_speakers: set) -> str:
    """'closed' when every speaker was heard in training, 'open' when none was, else 'partly open'."""
    seen = [s in training_speakers for s in speakers]
    return "closed" if all(seen) else "open" if not any(seen) else "partly open"


def evaluate_finish(plan, results):
    """Write the results, summary and report.md; the report shows the model's loss curve and masks of a
    few example test mixtures."""
    from deepclust.reports.summary import write_reports

    table = concat_parts(results)
    figures = {}
    curve = _loss_curve_of(plan.context["separation_manifest_url"])
    if curve:
        figures["Loss curve"] = curve
    figures.update(_mask_figures(plan, table))
    if storage.is_local(plan.stage.url):  # relative links: report.md reads the same wherever the run folder goes
        folder = storage.absolute(plan.stage.url)
        figures = {title: os.path.relpath(png, folder) for title, png in figures.items()}
    reports = write_reports(table, plan.stage.url, figures)
    reports["figures"] = figures
    reports["listen_html"] = _listening_page(plan, table)
    # What was evaluated, so ``deepclust listen`` can redo the page from the stage folder alone.
    reports["mixture_manifest_url"] = storage.absolute(plan.context["mixture_manifest_url"])
    reports["separation_manifest_url"] = storage.absolute(plan.context["separation_manifest_url"])
    return table, reports


def _listening_page(plan, table: pd.DataFrame) -> str | None:
    """``listen.html`` beside report.md (``deepclust.reports.listen``); its URL, or None when it cannot be
    written (the scores and the report stand without it)."""
    import logging

    from deepclust.faults.errors import BadAudioError
    from deepclust.reports.listen import evaluation_header, write_evaluation_page

    mixtures, separated = plan.context["mixture_manifest_url"], plan.context["separation_manifest_url"]
    try:
        header = evaluation_header(separated, mixtures, f"evaluate/{plan.stage.key}")
        return write_evaluation_page(table, mixtures, separated, plan.stage.url, header)["page"]
    except (BadAudioError, OSError, ValueError, KeyError) as error:
        logging.getLogger(__name__).warning("no listening page for %s: %s", plan.stage.url, error)
        return None


EXAMPLE_MIXTURES = 3


def _loss_curve_of(separation_manifest_url: str) -> str | None:
    """``loss_curve.png`` of the model that made these separations (named in the separation's marker)."""
    from deepclust.pipeline.store import COMPLETE

    marker = storage.join(storage.parent(separation_manifest_url), COMPLETE)
    if not storage.exists(marker):  # separated by `deepclust separate`, not by a recipe stage
        return None
    info = storage.read_json(marker).get("info", {})
    model_manifest_url = info.get("model_manifest_url")
    if not model_manifest_url or not storage.exists(model_manifest_url):
        return None
    png = read_manifest(model_manifest_url, "train")["loss_curve_png"].iloc[0]
    return png if png and storage.exists(png) else None


def _mask_figures(plan, table: pd.DataFrame, count: int = EXAMPLE_MIXTURES) -> dict:
    """``{"Masks: <mixture_id>": png}`` for a few test mixtures the model separated (one per speaker
    count first, then in order).

    The separator's binary masks are not stored, so each mask is recovered from the separated outputs
    themselves: ``|S_k| / sum_j |S_j|`` of their STFTs. Each output is the inverse STFT of the mixture
    times a binary mask, so this is that mask up to the smoothing of overlap-add at its edges.
    """
    from deepclust.audio import read_audio
    from deepclust.features.stft import StftConfig, stft_np
    from deepclust.reports.figures import plot_masks

    model_rows = table[(table["system"] == "model") & (table["status"] == "done")]
    if model_rows.empty:
        return {}
    ordered = pd.concat([model_rows.drop_duplicates("num_speakers"), model_rows]).drop_duplicates("mixture_id")
    separated = storage.read_parquet(plan.context["separation_manifest_url"]).set_index("mixture_id")
    mixtures = storage.read_parquet(plan.context["mixture_manifest_url"]).set_index("mixture_id")
    figures = {}
    for mixture_id in ordered["mixture_id"].head(count):
        mixture, rate = read_audio(mixtures.loc[mixture_id, "mixture_path"])
        config = StftConfig(sample_rate=rate)
        base = storage.parent(plan.context["separation_manifest_url"])
        urls = resolve_outputs(base, separated.loc[mixture_id, "outputs"])
        outputs = [read_audio(url, target_sr=rate)[0] for url in urls]
        magnitudes = np.abs(stft_np(np.stack([o[: len(mixture)] for o in outputs]), config))  # (K, frames, freq)
        masks = magnitudes / np.maximum(magnitudes.sum(0, keepdims=True), 1e-8)
        log_mag = np.log(np.abs(stft_np(mixture, config)) + 1e-6)  # (frames, freq)
        png = plan.stage.path("figures", f"masks-{mixture_id}.png")
        # No title: the report's heading names the mixture (and a long id would cover the panel titles).
        figures[f"Masks: {mixture_id}"] = plot_masks(log_mag, masks[:, : log_mag.shape[0]], png)
    return figures


STAGE = StageDefinition(
    "evaluate",
    plan_evaluate,
    evaluate_unit,
    evaluate_finish,
    "evaluate",
    upstream=("separate", "mixtures"),
    config_fields=("evaluate",),
)
