"""The end-to-end flow: corpus -> mixtures -> features -> train -> separate -> evaluate, then run.json.

Each stage is its own (sub)flow and reuses whatever the stage store already holds, so a rerun with the
same inputs recomputes nothing and a changed parameter recomputes only the stages downstream of it.

    python -m flows.reproduce --run-root runs/demo            # the README's demo job
    python -m flows.reproduce --run-root runs/quick --quick   # a smoke-test size
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from types import SimpleNamespace

from prefect import flow, get_run_logger
from prefect.states import Completed

from deepclust import storage
from deepclust.pipeline.config import ReproduceConfig, demo_config
from deepclust.pipeline.reproduce import write_run_record
from deepclust.pipeline.store import Stage
from flows import stages as stage_flows
from flows.stages import failed_items, with_task_runner
from tasks import publish_run_artifacts

STAGES = ("corpus", "mixtures", "features", "train", "separate", "evaluate")


def _plan_of(run_root: str, name: str, manifest_url: str):
    """What ``write_run_record`` reads from a plan (the stage folder), rebuilt from a manifest URL."""
    key = storage.parent(manifest_url).rstrip("/").rsplit("/", 1)[-1]
    return SimpleNamespace(stage=Stage(run_root=run_root, name=name, key=key))


@flow(name="reproduce", log_prints=True)
def reproduce(config: ReproduceConfig = ReproduceConfig(), max_workers: int | None = None,
              task_runner: str = "thread"):
    """Run (or reuse) every stage, write ``{run_root}/run.json``, publish the reports; returns the run record.

    ``task_runner``: "thread" (default) or "process"; ``max_workers``: parallel units per stage
    (default: the CPU count, at most 4).
    """
    logger = get_run_logger()
    began = time.perf_counter()
    root = config.run_root
    storage.makedirs(root)
    run = {name: with_task_runner(getattr(stage_flows, name), task_runner, max_workers)
           for name in ("make_corpus", "make_mixtures", "extract_features", "separate", "evaluate")}
    manifests = {}
    manifests["corpus"] = corpus = run["make_corpus"](root, config.corpus)
    manifests["mixtures"] = mixtures = run["make_mixtures"](root, corpus, config.mix)
    manifests["features"] = features = run["extract_features"](root, mixtures, config.features)
    manifests["train"] = model = stage_flows.train(root, features, config.model, config.train)
    manifests["separate"] = separated = run["separate"](root, model, mixtures, config.separate)
    manifests["evaluate"] = run["evaluate"](root, separated, mixtures, config.evaluate)

    plans = {name: _plan_of(root, name, url) for name, url in manifests.items()}
    url = write_run_record(config, plans, manifests, time.perf_counter() - began)
    record = storage.read_json(url)
    record["run_json"] = storage.absolute(url)
    failed = {name: failed_items(manifests[name]) for name in STAGES}
    publish_run_artifacts(record, failed)
    logger.info("report: %s", record.get("report"))
    logger.info("run record: %s", record["run_json"])
    if any(failed.values()):
        listing = ", ".join(f"{name}: {count}" for name, count in failed.items() if count)
        return Completed(message=f"completed; failed items recorded with their reasons ({listing})", data=record)
    return record


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m flows.reproduce", description=__doc__.splitlines()[0])
    parser.add_argument("--run-root", default="runs/demo")
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes (a minute or two)")
    parser.add_argument("--config", help="JSON file with a ReproduceConfig (as written in run.json)")
    parser.add_argument("--max-workers", type=int, default=None)
    parser.add_argument("--task-runner", choices=("thread", "process"), default="thread")
    return parser.parse_args(argv)


def config_from_dict(data: dict) -> ReproduceConfig:
    """A ReproduceConfig from its ``to_dict()`` form (e.g. ``run.json``'s ``config``)."""
    from pydantic import TypeAdapter

    return TypeAdapter(ReproduceConfig).validate_python(data)


def main(argv=None) -> int:
    from deepclust.pipeline.reproduce import print_summary

    args = parse_args(argv)
    if args.config:
        with open(args.config) as handle:
            data = json.load(handle)
        config = config_from_dict(data.get("config", data))
        config.run_root = args.run_root if "--run-root" in (argv or sys.argv) else config.run_root
    else:
        config = demo_config(args.run_root, quick=args.quick)
    record = reproduce(config, max_workers=args.max_workers, task_runner=args.task_runner)
    print_summary(record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
