"""The whole recipe by hand (no Prefect): corpus -> mixtures -> features -> training -> separation ->
evaluation, each stage cached in the stage store, then ``run.json`` naming every output.

The Prefect flow ``flows.reproduce`` runs the very same plans; this module is what a notebook uses.
"""

from __future__ import annotations

import json
import time

from deepclust import storage
from deepclust.pipeline import stages
from deepclust.pipeline.config import ReproduceConfig


def training_outcome(info: dict, train_config) -> dict:
    """How training ended. A run stopped by the wall-clock cap is not the recipe's result: its model depends
    on the machine's speed, so it is flagged (``time_capped``) with a message saying how far it got."""
    reason = info.get("stopped_reason")
    outcome = {"stopped_reason": reason, "epochs": info.get("epochs"), "max_epochs": train_config.max_epochs,
               "best_val_loss": info.get("best_val_loss"), "time_capped": reason == "time budget"}
    if outcome["time_capped"]:
        outcome["message"] = (f"training stopped by the time cap ({train_config.max_train_seconds:.0f} s) after "
                              f"{outcome['epochs']} of {train_config.max_epochs} epochs: not the recipe's result")
    return outcome


def write_run_record(config: ReproduceConfig, plans: dict, manifests: dict, seconds: float) -> str:
    """``{run_root}/run.json``: every stage's manifest URL and key, the model and the results table."""
    from deepclust.pipeline.units import model_url_of

    evaluate = plans["evaluate"].stage
    reports = evaluate.info()
    record = {
        "run_root": storage.absolute(config.run_root),
        "model": storage.absolute(model_url_of(manifests["train"])),
        "results": reports.get("results_parquet"),
        "results_csv": reports.get("results_csv"),
        "summary": reports.get("summary_parquet"),
        "report": reports.get("report_md"),
        "stages": {name: {"manifest": storage.absolute(manifests[name]), "key": plan.stage.key,
                          "folder": storage.absolute(plan.stage.url)} for name, plan in plans.items()},
        "seconds": round(seconds, 1),
        "training": training_outcome(plans["train"].stage.info(), config.train),
        "config": config.to_dict(),
    }
    url = storage.join(config.run_root, "run.json")
    storage.write_json(record, url)
    return url


def reproduce(config: ReproduceConfig, log=print) -> dict:
    """Run every stage (reusing finished ones) and return the run record."""
    began = time.perf_counter()
    root = config.run_root
    storage.makedirs(root)
    plans, manifests = {}, {}

    def run(name, plan):
        plans[name] = plan
        manifests[name] = stages.run_stage(plan, log=log)
        return manifests[name]

    corpus = run("corpus", stages.plan_corpus(root, config.corpus))
    mixtures = run("mixtures", stages.plan_mixtures(root, corpus, config.mix))
    features = run("features", stages.plan_features(root, mixtures, config.features))
    model = run("train", stages.plan_training(root, features, config.model, config.train))
    separated = run("separate", stages.plan_separation(root, model, mixtures, config.separate))
    run("evaluate", stages.plan_evaluation(root, separated, mixtures, config.evaluate))
    url = write_run_record(config, plans, manifests, time.perf_counter() - began)
    record = storage.read_json(url)
    record["run_json"] = storage.absolute(url)
    return record


def print_summary(record: dict, log=print) -> None:
    from deepclust.reports.summary import headline, markdown_table

    summary = storage.read_parquet(record["summary"])
    log(markdown_table(headline(summary)))
    if (record.get("training") or {}).get("time_capped"):
        log(f"WARNING: {record['training']['message']}")
    log(f"report: {record['report']}")
    log(f"run record: {record.get('run_json')}")


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(reproduce(ReproduceConfig()), indent=2))
