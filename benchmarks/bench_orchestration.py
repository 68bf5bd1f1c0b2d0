"""Orchestration overhead: ``extract_features`` and ``separate`` through the Prefect flows vs the same
library calls without Prefect (``deepclust.pipeline.driver.run_stage``), on the same data.

    python benchmarks/bench_orchestration.py                 # the demo corpus (README sizes)
    python benchmarks/bench_orchestration.py --quick         # smoke-test sizes

Each measurement computes the stage from scratch in a fresh run root (same inputs, so the same work).
"flow x1" maps units over one worker thread, exactly the library's sequential order: its ratio to the
library is the pure overhead (task runs, state changes, result persistence, progress artifacts, the
flow run itself). "flow xN" is the default thread pool, for reference. The Prefect server is whatever
``PREFECT_API_URL`` names, else Prefect's ephemeral one (started by a warm-up flow, not timed).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def _timed(fn) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes instead of the demo's")
    parser.add_argument("--repeats", type=int, default=2, help="alternating library/flow measurements")
    parser.add_argument("--workdir", default=None, help="where the shared upstream stages live (kept)")
    args = parser.parse_args(argv)

    import torch
    from deepclust.flows.stages import extract_features, separate, with_task_runner
    from prefect import flow

    from deepclust.pipeline.driver import run_stage
    from deepclust.recipe.config import demo_config
    from deepclust.stages.corpus import plan_corpus
    from deepclust.stages.features import plan_features
    from deepclust.stages.mixtures import plan_mixtures
    from deepclust.stages.separate import plan_separate
    from deepclust.stages.train import plan_train

    torch.set_num_threads(1)  # both paths alike; units in threads should not oversubscribe 2 cores
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-orchestration-"))
    config = demo_config(str(workdir / "upstream"), quick=args.quick)
    # Separation costs the same whatever the weights are: a short training run suffices here.
    config.train = dataclasses.replace(config.train, max_epochs=1, steps_per_epoch=2, max_train_seconds=None)
    root = config.run_root
    print(f"$ {shlex.join([sys.executable.rsplit('/', 1)[-1], *sys.argv])}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}, torch {torch.__version__}"
    )

    # Upstream stages once, by hand (not measured).
    began = time.perf_counter()
    quiet = lambda message: None  # noqa: E731
    corpus = run_stage(plan_corpus(root, config.corpus), log=quiet)
    mixtures = run_stage(plan_mixtures(root, corpus, config.mixtures), log=quiet)
    features = run_stage(plan_features(root, mixtures, config.features), log=quiet)
    model = run_stage(plan_train(root, features, config.model, config.train), log=quiet)
    print(f"upstream (corpus, mixtures, features, training) ready in {time.perf_counter() - began:.0f} s: {root}")

    @flow(name="bench-warm-up")
    def warm_up():
        return 1

    warm_up()  # starts the ephemeral server if there is no other

    workers = with_task_runner(extract_features).task_runner._max_workers
    cases = {
        "extract_features": (
            lambda r: run_stage(plan_features(r, mixtures, config.features), log=quiet),
            lambda r, n: with_task_runner(extract_features, max_workers=n)(r, mixtures, config.features),
            len(plan_features(str(workdir / "probe"), mixtures, config.features).units),
        ),
        "separate": (
            lambda r: run_stage(plan_separate(r, model, mixtures, config.separate), log=quiet),
            lambda r, n: with_task_runner(separate, max_workers=n)(r, model, mixtures, config.separate),
            len(plan_separate(str(workdir / "probe"), model, mixtures, config.separate).units),
        ),
    }
    counter = iter(range(10**6))
    fresh = lambda: str(workdir / f"measure-{next(counter)}")  # noqa: E731
    print()
    print(
        "| stage | units | library (s) | flow x1 (s) | flow x1 / library | "
        f"flow x{workers} (s) | flow x{workers} / library |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, (library, through_flow, units) in cases.items():
        times = {"library": [], "flow1": [], "flowN": []}
        for _ in range(args.repeats):
            times["library"].append(_timed(lambda: library(fresh())))
            times["flow1"].append(_timed(lambda: through_flow(fresh(), 1)))
            times["flowN"].append(_timed(lambda: through_flow(fresh(), workers)))
        lib, one, many = (statistics.median(times[k]) for k in ("library", "flow1", "flowN"))
        print(
            f"| {name} | {units} | {lib:.1f} | {one:.1f} | {one / lib:.2f}x | {many:.1f} | {many / lib:.2f}x |",
            flush=True,
        )
    print(f"\n(medians of {args.repeats}; target: flow / library < 1.15x on the demo corpus)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
