"""Faults through the Prefect flows: transient errors are retried, bad inputs are recorded (not
retried), and a process killed in the middle of ``extract_features`` resumes at shard granularity."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("prefect")

from flows_fixtures import counter_delta

from deepclust import storage  # noqa: E402
from deepclust.features.extract import FeatureConfig  # noqa: E402
from deepclust.features.shards import iter_shard  # noqa: E402
from deepclust.pipeline import driver  # noqa: E402
from deepclust.pipeline.store import COMPUTE_COUNTER  # noqa: E402
from deepclust.stages.features import plan_features  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[1]


def _mixture_manifest(tiny_run) -> str:
    return storage.read_json(str(tiny_run["run_root"] / "run.json"))["stages"]["mixtures"]["manifest"]


def _task_runs(flow_run_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])), limit=200)


def _features_config(shard_size: int) -> FeatureConfig:
    return dataclasses.replace(FeatureConfig(), utterances_per_shard=shard_size)


def test_a_unit_failing_transiently_twice_succeeds_on_retry(tiny_run, tmp_path, monkeypatch):
    from deepclust.flows.stages import extract_features, with_task_runner

    mixtures_url = _mixture_manifest(tiny_run)
    config = _features_config(50)
    plan = plan_features(str(tmp_path), mixtures_url, config)
    flaky_unit = plan.units[0]["id"]
    attempts = {"count": 0}
    real_run_unit = driver.run_unit

    # The real task runs; only the library call inside it is patched, to fail like a dropped NFS/S3
    # read would, twice, for one unit.
    def flaky_run_unit(plan, unit):
        if unit["id"] == flaky_unit:
            attempts["count"] += 1
            if attempts["count"] <= 2:
                raise OSError(5, f"Input/output error reading shard {unit['id']} (injected)")
        return real_run_unit(plan, unit)

    monkeypatch.setattr(driver, "run_unit", flaky_run_unit)
    began = time.perf_counter()
    state = with_task_runner(extract_features, max_workers=2)(str(tmp_path), mixtures_url, config, return_state=True)
    assert state.is_completed(), state.message
    assert attempts["count"] == 3
    runs = {run.name: run for run in _task_runs(state.state_details.flow_run_id)}
    flaky = runs[f"features-{flaky_unit}"]
    assert flaky.state.is_completed() and flaky.run_count == 3, (flaky.state, flaky.run_count)
    assert all(runs[f"features-{u['id']}"].run_count == 1 for u in plan.units if u["id"] != flaky_unit)
    assert plan.stage.is_complete()
    # Backoff: 1 s then 2 s, each stretched by up to 50 % of jitter.
    assert time.perf_counter() - began >= 3.0


def test_a_non_transient_failure_is_not_retried_and_a_rerun_redoes_only_that_unit(tiny_run, tmp_path, monkeypatch):
    from deepclust.flows.stages import extract_features, with_task_runner

    mixtures_url = _mixture_manifest(tiny_run)
    config = _features_config(45)
    plan = plan_features(str(tmp_path), mixtures_url, config)
    broken_unit = plan.units[-1]["id"]
    real_run_unit = driver.run_unit
    calls = []

    def broken_run_unit(plan, unit):  # a bug, not a fault: retrying cannot help
        if unit["id"] == broken_unit:
            calls.append(unit["id"])
            raise ValueError(f"unit {unit['id']}: injected bug")
        return real_run_unit(plan, unit)

    monkeypatch.setattr(driver, "run_unit", broken_run_unit)
    flow = with_task_runner(extract_features, max_workers=2)
    state = flow(str(tmp_path), mixtures_url, config, return_state=True)
    assert state.is_failed()
    assert broken_unit in state.message
    assert calls == [broken_unit]  # tried once
    assert not plan.stage.is_complete()
    done = {u["id"] for u in plan.units if storage.exists(plan.stage.unit_marker(u["id"]))}
    assert done == {u["id"] for u in plan.units} - {broken_unit}

    monkeypatch.setattr(driver, "run_unit", real_run_unit)
    before = dict(COMPUTE_COUNTER)
    state = flow(str(tmp_path), mixtures_url, config, return_state=True)
    assert state.is_completed(), state.message
    assert counter_delta(before, dict(COMPUTE_COUNTER)) == {"features:unit": 1, "features": 1}


def test_a_bad_mixture_is_recorded_and_the_stage_completes(tiny_run, tmp_path):
    from deepclust.flows.stages import extract_features

    mixtures = storage.read_parquet(_mixture_manifest(tiny_run))
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt this is not audio")
    bad_id = mixtures.loc[mixtures["split"] == "tr", "mixture_id"].iloc[3]
    mixtures.loc[mixtures["mixture_id"] == bad_id, "mixture_path"] = str(corrupt)
    manifest_url = str(tmp_path / "mixtures.parquet")
    storage.write_parquet(mixtures, manifest_url)

    state = extract_features(str(tmp_path / "run"), manifest_url, _features_config(60), return_state=True)
    assert state.is_completed(), state.message
    assert "1 item(s) failed" in state.message  # the final state names the failure
    features = storage.read_parquet(state.result())
    failed = features[features["status"] == "failed"]
    assert list(failed["mixture_id"]) == [bad_id]
    assert str(corrupt) in failed["error"].iloc[0]
    trained_on = mixtures["split"].isin(["tr", "cv"])  # features are made for the splits training reads
    assert (features["status"] == "done").sum() == trained_on.sum() - 1


CHILD = """
import json, sys, time
import dataclasses
from deepclust.features.extract import FeatureConfig
from deepclust.recipe import registry
from deepclust.flows.stages import extract_features, with_task_runner

real = registry.STAGES["features"]

def slower_features_unit(plan, unit):
    time.sleep(0.3)  # widen each shard so the test can kill the process between and inside shards
    return real.compute_unit(plan, unit)

registry.STAGES["features"] = dataclasses.replace(real, compute_unit=slower_features_unit)
run_root, mixtures_url, config = sys.argv[1], sys.argv[2], FeatureConfig.from_dict(json.loads(sys.argv[3]))
with_task_runner(extract_features, max_workers=1)(run_root, mixtures_url, config)
"""


def test_killed_feature_extraction_resumes_at_shard_granularity(tiny_run, tmp_path):
    import json

    from deepclust.flows.stages import extract_features
    from prefect.settings import get_current_settings

    mixtures_url = _mixture_manifest(tiny_run)
    config = _features_config(8)
    run_root = str(tmp_path / "run")
    plan = plan_features(run_root, mixtures_url, config)
    total = len(plan.units)
    assert total >= 10
    markers = Path(plan.stage.url) / "units"
    env = {
        **os.environ,
        "PREFECT_API_URL": str(get_current_settings().api.url),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, run_root, mixtures_url, json.dumps(config.to_dict())],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and child.poll() is None:
        if markers.is_dir() and len(list(markers.glob("*.json"))) >= 3:
            break
        time.sleep(0.02)
    assert child.poll() is None, f"the child ended before it could be killed: {child.stderr.read().decode()[-2000:]}"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stderr.close()

    finished = {p.stem: p.read_bytes() for p in markers.glob("*.json")}
    assert 3 <= len(finished) < total, (len(finished), total)
    assert not plan.stage.is_complete()
    shards = Path(plan.stage.url) / "shards"
    for shard in shards.glob("[!.]*"):  # every visible shard is whole (atomic writes)
        assert list(iter_shard(str(shard))), shard

    before = dict(COMPUTE_COUNTER)
    state = extract_features(run_root, mixtures_url, config, return_state=True)
    assert state.is_completed(), state.message
    computed = counter_delta(before, dict(COMPUTE_COUNTER))
    assert computed == {"features:unit": total - len(finished), "features": 1}
    for unit_id, marker in finished.items():  # finished shards were not redone
        assert (markers / f"{unit_id}.json").read_bytes() == marker
    assert plan.stage.is_complete()
    assert sorted(p.stem for p in shards.iterdir()) == sorted(u["id"] for u in plan.units)  # no leftovers
    assert not [p for p in Path(plan.stage.url).rglob(".tmp-*")]
    features = pd.read_parquet(plan.stage.manifest_url)
    mixtures = storage.read_parquet(mixtures_url)
    wanted = mixtures[(mixtures["status"] == "done") & mixtures["split"].isin(["tr", "cv"])]
    assert sorted(features["mixture_id"]) == sorted(wanted["mixture_id"])
    for shard in shards.iterdir():
        assert list(iter_shard(str(shard)))
