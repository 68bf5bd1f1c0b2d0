"""deployments/prefect.yaml deployed to a real Prefect server and run by a real process worker.

The operations guide (deployments/README.md), step by step: create the work pools, start a process worker,
``prefect deploy --all``, trigger ``reproduce/quick`` with parameters (``prefect deployment run``), and
wait through the Prefect client until the flow run completes and has published ``dpcl-summary``. Before any
server: every deployment in the YAML validates against its flow, and every reproduce deployment names a preset
and resolves to a valid config.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time

import pytest
import yaml
from server_fixtures import REPO

PREFECT_FILE = REPO / "deployments" / "prefect.yaml"
RUN_TIMEOUT = 300

pytestmark = [pytest.mark.xdist_group("prefect-server"), pytest.mark.timeout(600)]


def deployments_in_yaml() -> dict:
    spec = yaml.safe_load(PREFECT_FILE.read_text())
    flows = {
        "flows/reproduce.py:reproduce": "reproduce",
        "flows/stages.py:evaluate": "evaluate",
        "flows/separate_archive.py:separate_archive_flow": "separate-archive",
    }
    return {f"{flows[d['entrypoint']]}/{d['name']}": d for d in spec["deployments"]}


# Parameters the YAML leaves to run time (its comments say so): placeholders for the validation below.
RUN_TIME_PARAMETERS = {
    "evaluate/default": {
        "run_root": "runs/x",
        "separation_manifest_url": "s.parquet",
        "mixture_manifest_url": "m.parquet",
    },
    "separate-archive/cpu": {"model_url": "model.pt", "input_url": "in", "out_url": "out"},
    "separate-archive/gpu": {"model_url": "model.pt", "input_url": "in", "out_url": "out"},
}
RECIPE_PARAMETERS = ("config", "preset", "run_root", "corpus", "mix_lists", "overrides")


def resolved(name: str):
    """A reproduce deployment's parameters, validated by its flow as Prefect does at run time, resolved to the
    config the flow run would run (``flows.reproduce.recipe_config``)."""
    from deepclust.flows.reproduce import recipe_config
    from prefect.flows import load_flow_from_entrypoint

    deployment = deployments_in_yaml()[name]
    parameters = load_flow_from_entrypoint(deployment["entrypoint"]).validate_parameters(deployment["parameters"])
    return recipe_config(**{key: parameters.get(key) for key in RECIPE_PARAMETERS})


def test_every_deployment_validates_against_its_flow_and_every_reproduce_one_resolves_to_a_config():
    """Each deployment's parameters are what its entrypoint accepts (Prefect's own validation, as a worker runs
    it); each reproduce deployment names a preset and resolves to a valid config: no hand copy to drift."""
    from prefect.flows import load_flow_from_entrypoint

    from deepclust.recipe.config import ReproduceConfig
    from deepclust.recipe.presets import PRESETS

    for name, deployment in deployments_in_yaml().items():
        flow = load_flow_from_entrypoint(deployment["entrypoint"])
        flow.validate_parameters({**(deployment.get("parameters") or {}), **RUN_TIME_PARAMETERS.get(name, {})})
        if name.startswith("reproduce/"):
            assert "config" not in deployment["parameters"], f"{name}: name a preset, do not copy a config"
            assert deployment["parameters"]["preset"] in PRESETS
            config = resolved(name)
            assert ReproduceConfig.from_dict(config.to_dict()) == config, name
            assert config.preset == deployment["parameters"]["preset"]


def test_the_wsj0_deployment_is_the_papers_recipe_on_the_gpu_pool_weekly_and_off():
    from deepclust.recipe.presets import preset_config

    deployment = deployments_in_yaml()["reproduce/wsj0-paper"]
    config = resolved("reproduce/wsj0-paper")
    paper = preset_config("paper", config.run_root)
    assert (config.mixtures.sizes, config.model, config.train, config.separate) == (
        paper.mixtures.sizes,
        paper.model,
        paper.train,
        paper.separate,
    )
    assert config.corpus.name == "wsj0" and config.corpus.root == deployment["parameters"]["corpus"]["root"]
    assert sorted(config.mixtures.mix_lists) == ["cv", "mix_3_spk_tt", "tr", "tt"]
    assert deployment["work_pool"]["name"] == "deepclust-gpu"
    assert [(s["cron"], s["active"]) for s in deployment["schedules"]] == [("0 3 * * 1", False)]


def test_the_demo_deployments_are_the_demo_presets_on_their_pools():
    from deepclust.recipe.config import demo_config

    for name, quick, run_root in (("reproduce/demo", False, "runs/weekly"), ("reproduce/quick", True, "runs/quick")):
        assert resolved(name) == demo_config(run_root, quick=quick), name
        assert deployments_in_yaml()[name]["work_pool"]["name"] == "deepclust-cpu"
    gpu = resolved("reproduce/demo-gpu")
    assert (gpu.train.device, gpu.separate.device, gpu.separate.kmeans) == ("cuda", "cuda", "torch")


def test_a_flow_run_given_a_whole_config_and_a_preset_is_refused_not_half_obeyed():
    from deepclust.flows.reproduce import recipe_config

    from deepclust.recipe.config import demo_config

    whole = demo_config("runs/q", quick=True)
    assert recipe_config(config=whole) is whole
    with pytest.raises(ValueError, match="a whole config or a preset, not both: drop preset, run_root"):
        recipe_config(config=whole, preset="paper", run_root="runs/p")


def test_weekly_schedules_are_present_and_off_by_default():
    for name in ("reproduce/demo", "reproduce/wsj0-paper"):
        schedules = deployments_in_yaml()[name]["schedules"]
        assert [(s["cron"], s["active"]) for s in schedules] == [("0 3 * * 1", False)], name


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
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
            )
            return flow_run, artifacts


def test_deployed_reproduce_runs_on_a_process_worker(prefect_server, served_tiny_run):
    server = prefect_server
    began = time.perf_counter()
    for pool in ("deepclust-cpu", "deepclust-gpu"):
        server.cli("work-pool", "create", pool, "--type", "process", "--overwrite")
    server.cli("work-pool", "set-concurrency-limit", "deepclust-gpu", "1")
    # The worker polls every 2 s (default 15 s) so the test does not wait on it.
    worker = server.spawn(
        [
            sys.executable,
            "-m",
            "prefect",
            "worker",
            "start",
            "--pool",
            "deepclust-cpu",
            "--type",
            "process",
            "--name",
            "test-worker",
        ],
        "worker.log",
        env=server.env(PREFECT_WORKER_QUERY_SECONDS="2", PREFECT_WORKER_PREFETCH_SECONDS="5"),
    )
    deployed = server.cli(
        "deploy", "--prefect-file", str(PREFECT_FILE.relative_to(REPO)), "--all", "--no-prompt", timeout=180
    )
    names = set(deployments_in_yaml())
    for name in names:
        assert f"Deployment '{name}' successfully created" in deployed.stdout.replace("\n", " "), deployed.stdout
    listed = server.cli("deployment", "inspect", "reproduce/wsj0-paper").stdout
    assert "'active': False" in listed and "0 3 * * 1" in listed
    # The guide's schedule steps: list, resume (on), pause (off again).
    schedules = server.cli("deployment", "schedule", "ls", "reproduce/demo").stdout
    assert "0 3 * * 1" in schedules, schedules
    schedule_id = asyncio.run(_schedule_ids(server.api_url, "reproduce/demo"))[0]
    server.cli("deployment", "schedule", "resume", "reproduce/demo", schedule_id)
    assert "'active': True" in server.cli("deployment", "inspect", "reproduce/demo").stdout
    server.cli("deployment", "schedule", "pause", "reproduce/demo", schedule_id)
    assert "'active': False" in server.cli("deployment", "inspect", "reproduce/demo").stdout

    # The tiny run the browser test made, run again through the deployment: every stage is found committed
    # (no second training), and the flow still publishes its reports.
    # The deployment's preset (quick) with this run root is what `deepclust reproduce --quick --out` resolved.
    parameters = {"run_root": str(served_tiny_run["run_root"])}
    triggered = server.cli(
        "deployment",
        "run",
        "reproduce/quick",
        "--params",
        json.dumps(parameters),
        "--flow-run-name",
        "test-deployed-quick",
    )
    match = re.search(r"UUID:\s*([0-9a-f-]{36})", triggered.stdout)
    assert match, triggered.stdout
    flow_run, artifacts = asyncio.run(_wait_for(server.api_url, match.group(1), RUN_TIMEOUT))
    worker_log = (server.home / "worker.log").read_text()
    assert flow_run.state.is_completed(), (
        f"flow run {flow_run.state.type}: {flow_run.state.message}\nworker log:\n{worker_log[-6000:]}"
    )
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
