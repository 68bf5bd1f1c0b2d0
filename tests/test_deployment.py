"""deployments/prefect.yaml deployed to a real Prefect server and run by a real process worker.

The operations guide (deployments/README.md), step by step: create the work pools, start a process worker,
``prefect deploy --all``, trigger ``reproduce/quick`` with parameters (``prefect deployment run``), and
wait through the Prefect client until the flow run completes and has published ``dpcl-summary``.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from pathlib import Path

import pytest
import yaml

from server_fixtures import REPO, prefect_server, served_tiny_run, tiny_parameters  # noqa: F401

PREFECT_FILE = REPO / "deployments" / "prefect.yaml"
RUN_TIMEOUT = 300

pytestmark = [pytest.mark.xdist_group("prefect-server"), pytest.mark.timeout(600)]


def deployments_in_yaml() -> dict:
    spec = yaml.safe_load(PREFECT_FILE.read_text())
    flows = {"flows/reproduce.py:reproduce": "reproduce", "flows/stages.py:evaluate": "evaluate",
             "flows/separate_archive.py:separate_archive": "separate-archive"}
    return {f"{flows[d['entrypoint']]}/{d['name']}": d for d in spec["deployments"]}


def test_quick_deployment_parameters_are_the_quick_demo_config():
    """reproduce/quick in the YAML is demo_config(quick=True), so it stays a smoke test as configs change."""
    quick = deployments_in_yaml()["reproduce/quick"]["parameters"]["config"]
    assert quick == tiny_parameters(Path(quick["run_root"]))["config"] | {"run_root": quick["run_root"]}


def test_weekly_schedule_is_present_and_off_by_default():
    weekly = deployments_in_yaml()["reproduce/weekly"]
    assert [s["cron"] for s in weekly["schedules"]] == ["0 3 * * 1"]
    assert weekly["schedules"][0]["active"] is False


async def _schedule_ids(api_url: str, deployment_name: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(deployment_name)
            return [str(schedule.id) for schedule in deployment.schedules]


async def _wait_for(api_url: str, flow_run_id: str, timeout: float):
    """Poll the flow run through the Prefect client until it is final; returns (flow run, artifacts)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        async with get_client() as client:
            began = time.perf_counter()
            while True:
                flow_run = await client.read_flow_run(flow_run_id)
                if flow_run.state is not None and flow_run.state.is_final():
                    break
                if time.perf_counter() - began > timeout:
                    return flow_run, []
                await asyncio.sleep(2)
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
            return flow_run, artifacts


def test_deployed_reproduce_runs_on_a_process_worker(prefect_server, served_tiny_run):
    server = prefect_server
    began = time.perf_counter()
    for pool in ("deepclust-cpu", "deepclust-gpu"):
        server.cli("work-pool", "create", pool, "--type", "process", "--overwrite")
    server.cli("work-pool", "set-concurrency-limit", "deepclust-gpu", "1")
    # The worker polls every 2 s (default 15 s) so the test does not wait on it.
    worker = server.spawn([sys.executable, "-m", "prefect", "worker", "start", "--pool", "deepclust-cpu",
                           "--type", "process", "--name", "test-worker"], "worker.log",
                          env=server.env(PREFECT_WORKER_QUERY_SECONDS="2", PREFECT_WORKER_PREFETCH_SECONDS="5"))
    deployed = server.cli("deploy", "--prefect-file", str(PREFECT_FILE.relative_to(REPO)), "--all", "--no-prompt",
                          timeout=180)
    names = set(deployments_in_yaml())
    for name in names:
        assert f"Deployment '{name}' successfully created" in deployed.stdout.replace("\n", " "), deployed.stdout
    listed = server.cli("deployment", "inspect", "reproduce/weekly").stdout
    assert "'active': False" in listed and "0 3 * * 1" in listed
    # The guide's schedule steps: list, resume (on), pause (off again).
    schedules = server.cli("deployment", "schedule", "ls", "reproduce/weekly").stdout
    assert "0 3 * * 1" in schedules, schedules
    schedule_id = asyncio.run(_schedule_ids(server.api_url, "reproduce/weekly"))[0]
    server.cli("deployment", "schedule", "resume", "reproduce/weekly", schedule_id)
    assert "'active': True" in server.cli("deployment", "inspect", "reproduce/weekly").stdout
    server.cli("deployment", "schedule", "pause", "reproduce/weekly", schedule_id)
    assert "'active': False" in server.cli("deployment", "inspect", "reproduce/weekly").stdout

    # The tiny run the browser test made, run again through the deployment: every stage is found committed
    # (no second training), and the flow still publishes its reports.
    parameters = tiny_parameters(served_tiny_run["run_root"])
    triggered = server.cli("deployment", "run", "reproduce/quick", "--params", json.dumps(parameters),
                           "--flow-run-name", "test-deployed-quick")
    match = re.search(r"UUID:\s*([0-9a-f-]{36})", triggered.stdout)
    assert match, triggered.stdout
    flow_run, artifacts = asyncio.run(_wait_for(server.api_url, match.group(1), RUN_TIMEOUT))
    worker_log = (server.home / "worker.log").read_text()
    assert flow_run.state.is_completed(), (
        f"flow run {flow_run.state.type}: {flow_run.state.message}\nworker log:\n{worker_log[-6000:]}")
    keys = {artifact.key for artifact in artifacts}
    assert {"dpcl-summary", "dpcl-results", "dpcl-run"} <= keys, keys
    summary = next(artifact for artifact in artifacts if artifact.key == "dpcl-summary")
    assert "IBM SDRi" in summary.data
    assert worker.poll() is None, f"the worker exited:\n{worker_log[-4000:]}"
    print(f"deploy + deployment run on a process worker: {time.perf_counter() - began:.1f} s")


def test_regression_notification_automation_is_a_valid_prefect_automation():
    """deployments/automation-regression.yaml parses as a Prefect automation on a Failed reproduce run."""
    import uuid

    import yaml
    from prefect.events.schemas.automations import AutomationCore

    text = (REPO / "deployments" / "automation-regression.yaml").read_text()
    data = yaml.safe_load(text.replace("<NOTIFICATION-BLOCK-ID>", str(uuid.uuid4())))
    automation = AutomationCore.model_validate(data)
    assert automation.trigger.expect == {"prefect.flow-run.Failed"}
    assert automation.actions[0].type == "send-notification"


def test_the_main_job_prints_training_progress_and_stage_progress(served_tiny_run):
    """``deepclust reproduce`` as a user runs it: an epoch line (losses, time left) for every epoch, and the
    stages' unit progress, on the console; no ERROR line."""
    from deepclust.recipe.config import demo_config

    output = served_tiny_run["stderr"] + served_tiny_run["stdout"]
    epochs = demo_config("x", quick=True).train.max_epochs
    lines = re.findall(r"epoch (\d+) \(chunks of \d+, \d+ steps\): train [\d.]+, val [\d.]+.*left", output)
    assert [int(n) for n in lines] == list(range(1, epochs + 1)), output[-4000:]
    assert re.search(r"separate: \d+ units \(0 already done\)", output), output[-4000:]
    assert " ERROR " not in output and "| ERROR" not in output, output[-4000:]
