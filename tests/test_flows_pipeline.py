"""The Prefect pipeline end to end on a tiny demo corpus: caching, invalidation, artifacts.

One ``prefect_test_harness`` for the session (tests/flows_fixtures.py); the first ``reproduce`` is
shared by the tests below (``tiny_run``), each of which adds its own runs on top.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time

import pandas as pd
import pytest

pytest.importorskip("prefect")

from flows_fixtures import counter_delta

from deepclust import storage  # noqa: E402
from deepclust.pipeline.store import COMPUTE_COUNTER  # noqa: E402
from deepclust.recipe.registry import STAGES  # noqa: E402  (the recipe's stages, in order)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _read_run(run_root) -> dict:
    return storage.read_json(storage.join(str(run_root), "run.json"))


def _task_runs_of(flow_run_id) -> list:
    """Every task run under a flow run and its subflow runs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentFlowRunId

    with get_client(sync_client=True) as client:
        flow_runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id]))
        )
        ids = [flow_run_id, *[run.id for run in flow_runs]]
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=200)


def test_reproduce_completes_and_a_rerun_computes_nothing(tiny_run):
    from deepclust.flows.reproduce import reproduce

    state = tiny_run["state"]
    assert state.is_completed(), state.message
    record = _read_run(tiny_run["run_root"])
    assert set(record["stages"]) == set(STAGES)
    for stage in STAGES:  # the first run computed every stage (and its units)
        assert tiny_run["computed"].get(stage) == 1, tiny_run["computed"]
    assert storage.exists(record["model"]) and storage.exists(record["report"])
    summary = pd.read_parquet(record["summary"])
    assert {"model", "ibm", "irm"} <= set(summary["system"])

    before = dict(COMPUTE_COUNTER)
    began = time.perf_counter()
    again = reproduce(copy.deepcopy(tiny_run["config"]), return_state=True)
    rerun_seconds = time.perf_counter() - began
    assert again.is_completed(), again.message
    assert counter_delta(before, dict(COMPUTE_COUNTER)) == {}, "a rerun with the same inputs recomputed something"
    rerun = _read_run(tiny_run["run_root"])
    assert {s: rerun["stages"][s]["key"] for s in STAGES} == {s: record["stages"][s]["key"] for s in STAGES}

    # No unit task ran; every stage commit came out of Prefect's cache.
    task_runs = _task_runs_of(again.state_details.flow_run_id)
    assert not [t for t in task_runs if "run_stage_unit" in t.task_key], [t.name for t in task_runs]
    finishes = [t for t in task_runs if "finish_stage" in t.task_key]
    assert len(finishes) == len(STAGES) and all(t.state.name == "Cached" for t in finishes), [
        (t.name, t.state.name) for t in finishes
    ]

    ratio = tiny_run["seconds"] / rerun_seconds
    print(f"first run {tiny_run['seconds']:.1f} s, rerun {rerun_seconds:.1f} s ({ratio:.1f}x faster)")
    assert ratio >= 5, f"rerun took {rerun_seconds:.1f} s vs {tiny_run['seconds']:.1f} s first ({ratio:.1f}x)"


def test_changing_a_training_parameter_reruns_only_train_separate_evaluate(tiny_run):
    from deepclust.flows.reproduce import reproduce

    first = _read_run(tiny_run["run_root"])
    config = copy.deepcopy(tiny_run["config"])
    config.train = dataclasses.replace(config.train, learning_rate=config.train.learning_rate * 2)

    before = dict(COMPUTE_COUNTER)
    state = reproduce(config, return_state=True)
    assert state.is_completed(), state.message
    computed = counter_delta(before, dict(COMPUTE_COUNTER))
    second = _read_run(tiny_run["run_root"])

    for stage in ("corpus", "mixtures", "features"):
        assert second["stages"][stage]["key"] == first["stages"][stage]["key"], stage
        assert not any(name.startswith(stage) for name in computed), computed
    for stage in ("train", "separate", "evaluate"):
        assert second["stages"][stage]["key"] != first["stages"][stage]["key"], stage
        assert computed.get(stage) == 1, computed
    # The first run's outputs are still there, untouched, for the old parameters.
    assert storage.exists(storage.join(first["stages"]["train"]["folder"], "_COMPLETE"))


def test_artifacts_hold_the_results_and_summary_rows(tiny_run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey

    from deepclust.reports.summary import headline

    record = _read_run(tiny_run["run_root"])
    keys = [
        "dpcl-results",
        "dpcl-summary",
        "dpcl-summary-table",
        "dpcl-loss-curve",
        "dpcl-run",
        "dpcl-progress-features",
        "dpcl-progress-separate",
    ]
    with get_client(sync_client=True) as client:
        latest = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=keys))
        )
    artifacts = {artifact.key: artifact for artifact in latest}
    assert set(keys) <= set(artifacts), sorted(artifacts)

    results = pd.read_parquet(record["results"])
    rows = (
        json.loads(artifacts["dpcl-results"].data)
        if isinstance(artifacts["dpcl-results"].data, str)
        else artifacts["dpcl-results"].data
    )
    assert len(rows) == len(results)
    assert {r["mixture_id"] for r in rows} == set(results["mixture_id"])
    assert {r["system"] for r in rows} == {"model", "ibm", "irm"}

    summary = pd.read_parquet(record["summary"])
    markdown = artifacts["dpcl-summary"].data
    assert "IBM SDRi" in markdown and "paper SDRi" in markdown
    assert "## As the paper reports it" in markdown and "| 2 speakers, overall |" in markdown  # the paper's layout
    for row in headline(summary).itertuples(index=False):
        assert f"| {row.speakers} | {row.condition} | {row.mixtures} | {row[3]:.2f} |" in markdown
    table = artifacts["dpcl-summary-table"].data
    table = json.loads(table) if isinstance(table, str) else table
    assert len(table) == len(summary)

    history = pd.read_csv(storage.join(record["stages"]["train"]["folder"], "history.csv"))
    curve = artifacts["dpcl-loss-curve"].data
    curve = json.loads(curve) if isinstance(curve, str) else curve
    assert [r["epoch"] for r in curve] == list(history["epoch"])
    assert float(artifacts["dpcl-progress-features"].data) == 100.0


def test_a_run_named_by_a_preset_is_the_config_the_command_line_resolves(tiny_run):
    """The deployments' way: ``reproduce(preset=..., run_root=..., overrides=[...])`` runs the config the command
    line resolves for the same words; the tiny run's stages are reused, and run.json records what was asked."""
    from deepclust.flows.reproduce import reproduce

    before = dict(COMPUTE_COUNTER)
    overrides = [f"train.steps_per_epoch={tiny_run['config'].train.steps_per_epoch}"]
    state = reproduce(preset="quick", run_root=str(tiny_run["run_root"]), overrides=overrides, return_state=True)
    assert state.is_completed(), state.message
    assert counter_delta(before, dict(COMPUTE_COUNTER)) == {}
    record = _read_run(tiny_run["run_root"])
    assert (record["preset"], record["overrides"]) == ("quick", overrides)
    assert record["config"]["train"] == json.loads(json.dumps(tiny_run["config"].train.to_dict()))


def test_history_grows_and_an_injected_regression_fails_the_run(tiny_run):
    """Every run appends to the history; a run well below the best earlier run of its recipe ends Failed."""
    from deepclust.flows.reproduce import reproduce
    from prefect.client.orchestration import get_client

    from deepclust.reports.history import config_fingerprint, read_history

    record = _read_run(tiny_run["run_root"])
    history_url = record["history"]["url"]
    history = read_history(history_url)
    ours = history[history["config_fingerprint"] == config_fingerprint(tiny_run["config"])]
    assert len(ours) >= 1, history[["run_id", "config_fingerprint"]]
    assert {"sdri_2spk_open", "ibm_sdri_2spk_open", "code_version", "machine"} <= set(history.columns)
    # An earlier run of the same recipe that scored 3 dB more: the next run must be flagged against it.
    better = ours.iloc[[-1]].assign(
        run_id="earlier-better-run", run_root="/elsewhere/better", sdri_2spk_open=ours["sdri_2spk_open"].iloc[-1] + 3.0
    )
    storage.write_parquet(pd.concat([history, better], ignore_index=True), history_url)
    try:
        state = reproduce(copy.deepcopy(tiny_run["config"]), return_state=True)
        after = read_history(history_url)
    finally:  # the other tests of this session rerun the same recipe: leave no better run behind
        storage.write_parquet(history, history_url)
    assert state.is_failed()
    assert "quality regression" in state.message and "earlier-better-run" in state.message
    flagged = _read_run(tiny_run["run_root"])["history"]["regression"]
    assert flagged["best_run_id"] == "earlier-better-run" and 2.9 < flagged["drop"] < 3.1
    assert len(after) == len(history) + 2

    async def artifact_keys():
        async with get_client() as client:
            return {a.key for a in await client.read_artifacts()}

    import asyncio

    assert {"dpcl-history", "dpcl-history-trend"} <= asyncio.run(artifact_keys())
