"""Fixtures for the Prefect flow tests: ONE ``prefect_test_harness`` per test session, and a tiny run.

Import the fixtures into a test module (``from flows_fixtures import prefect_harness, tiny_run``).
Each importing module gets its own fixture definition, so the harness and the tiny run are kept in
module-level singletons: whichever module asks first starts them, and they stop once, at the end of
the session (or of the xdist worker).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

# The harness's temporary SQLite server does not need to report telemetry.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

_SESSION: dict = {}


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect server + database shared by every flow test of this session."""
    from prefect.testing.utilities import prefect_test_harness

    if "harness" not in _SESSION:
        harness = prefect_test_harness(server_startup_timeout=120)
        harness.__enter__()
        _SESSION["harness"] = harness
        _SESSION["harness_users"] = 0
    _SESSION["harness_users"] += 1
    yield
    _SESSION["harness_users"] -= 1
    if _SESSION["harness_users"] == 0:
        _SESSION.pop("harness").__exit__(None, None, None)


def tiny_config(run_root: str | Path):
    """The quick demo config, a little smaller still (2 cores shared with other jobs)."""
    import dataclasses

    from deepclust.recipe.config import demo_config

    config = demo_config(str(run_root), quick=True)
    config.train = dataclasses.replace(config.train, max_epochs=2, steps_per_epoch=4)
    return config


def counter_delta(before: dict, after: dict) -> dict:
    """Stage computations between two snapshots of ``COMPUTE_COUNTER``."""
    return {
        name: after.get(name, 0) - before.get(name, 0) for name in after if after.get(name, 0) != before.get(name, 0)
    }


@pytest.fixture(scope="session")
def tiny_run(prefect_harness, tmp_path_factory):
    """``reproduce`` through the flows once on the tiny demo config; what it did and how long it took."""
    if "tiny_run" not in _SESSION:
        from deepclust.flows.reproduce import reproduce

        from deepclust.pipeline.store import COMPUTE_COUNTER

        run_root = tmp_path_factory.mktemp("flows-run") / "run"
        config = tiny_config(run_root)
        before = dict(COMPUTE_COUNTER)
        began = time.perf_counter()
        state = reproduce(config, return_state=True)
        seconds = time.perf_counter() - began
        _SESSION["tiny_run"] = {
            "config": config,
            "state": state,
            "seconds": seconds,
            "computed": counter_delta(before, dict(COMPUTE_COUNTER)),
            "run_root": run_root,
        }
    return _SESSION["tiny_run"]
