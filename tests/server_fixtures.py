"""Fixtures for the tests that need a real Prefect server (UI and deployments), not the test harness.

Import them into a test module (``from server_fixtures import prefect_server, served_tiny_run``).
Like ``flows_fixtures``, each importing module gets its own fixture definition, so the server and the
tiny run are module-level singletons: the first module that asks starts them, and the server stops once
at the end of the session (or of the xdist worker). Mark the tests ``xdist_group("prefect-server")`` so
one xdist worker runs all of them against one server.

Everything is a subprocess on loopback, with ``PREFECT_HOME`` (SQLite database, profiles, logs) in a
temporary folder: nothing touches the user's ``~/.prefect``.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SERVER_START_TIMEOUT = 120

_SESSION: dict = {}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prefect_env(home: Path, api_url: str | None = None) -> dict:
    """The environment of every Prefect subprocess of these tests: its own home, no telemetry."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_LOGGING_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            # One torch thread per process: the suite runs two xdist workers on two cores.
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
    )
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def wait_healthy(api_url: str, process: subprocess.Popen, log: Path, timeout: float = SERVER_START_TIMEOUT) -> float:
    """Poll ``/api/health`` until it answers 200; fails with the server's log if it dies or times out."""
    began = time.perf_counter()
    while time.perf_counter() - began < timeout:
        if process.poll() is not None:
            pytest.fail(f"prefect server exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter() - began
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"prefect server not healthy after {timeout} s:\n{log.read_text()[-4000:]}")


def stop(process: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM the process group we started (server or worker and its children), then SIGKILL."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=grace)


@dataclass
class PrefectServer:
    port: int
    home: Path
    log: Path
    process: subprocess.Popen
    started_in: float
    children: list = field(default_factory=list)  # workers etc. to stop with the server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def env(self, **extra) -> dict:
        return {**prefect_env(self.home, self.api_url), **extra}

    def cli(self, *args: str, timeout: float = 120, check: bool = True, **popen) -> subprocess.CompletedProcess:
        """``prefect <args>`` against this server, from the repository root."""
        done = subprocess.run(
            [sys.executable, "-m", "prefect", *args],
            cwd=popen.pop("cwd", REPO),
            env=popen.pop("env", self.env()),
            capture_output=True,
            text=True,
            timeout=timeout,
            **popen,
        )
        if check and done.returncode != 0:
            pytest.fail(f"prefect {' '.join(args)} -> {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def spawn(self, args: list[str], log_name: str, **popen) -> subprocess.Popen:
        """A long-running subprocess (e.g. a worker) in its own process group, stopped with the server."""
        log = open(self.home / log_name, "w")
        process = subprocess.Popen(
            args,
            cwd=popen.pop("cwd", REPO),
            env=popen.pop("env", self.env()),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **popen,
        )
        self.children.append(process)
        return process

    def shutdown(self) -> None:
        for child in reversed(self.children):
            stop(child)
        stop(self.process)


def _start_server(home: Path) -> PrefectServer:
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = home / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        # The UI asks the API at PREFECT_UI_API_URL, which defaults to port 4200 whatever --port says.
        cwd=REPO,
        env={**prefect_env(home), "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api"},
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = PrefectServer(port=port, home=home, log=log, process=process, started_in=0.0)
    atexit.register(server.shutdown)  # also when the session is interrupted
    server.started_in = wait_healthy(server.api_url, process, log)
    print(f"prefect server on {server.url} (home {home}) healthy after {server.started_in:.1f} s")
    return server


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory) -> PrefectServer:
    """A real ``prefect server start`` on a free loopback port (SQLite in a temporary PREFECT_HOME)."""
    if "server" not in _SESSION:
        _SESSION["server"] = _start_server(tmp_path_factory.mktemp("prefect-home"))
        _SESSION["users"] = 0
    _SESSION["users"] += 1
    yield _SESSION["server"]
    _SESSION["users"] -= 1
    if _SESSION["users"] == 0:
        _SESSION.pop("server").shutdown()


def tiny_parameters(run_root: Path) -> dict:
    """The ``reproduce`` flow's parameters for the quick demo config (what ``--quick`` runs), as JSON."""
    from deepclust.recipe.config import demo_config

    return {"config": json.loads(json.dumps(demo_config(str(run_root), quick=True).to_dict()))}


@pytest.fixture(scope="session")
def served_tiny_run(prefect_server, tmp_path_factory) -> dict:
    """``deepclust reproduce --quick`` as a user runs it, in a subprocess reporting to the server.

    Returns ``run_root``, ``record`` (run.json), ``seconds`` and the command's output. The deployment test
    reuses the same run root and parameters, so its flow run finds every stage committed (and still
    publishes its artifacts) instead of training a second model.
    """
    if "tiny_run" not in _SESSION:
        run_root = tmp_path_factory.mktemp("served-run") / "run"
        began = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "deepclust.flows.cli", "reproduce", "--quick", "--out", str(run_root)],
            cwd=REPO,
            env=prefect_server.env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        seconds = time.perf_counter() - began
        if done.returncode != 0:
            pytest.fail(
                f"deepclust reproduce --quick -> {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
            )
        record = json.loads((run_root / "run.json").read_text())
        _SESSION["tiny_run"] = {
            "run_root": run_root,
            "record": record,
            "seconds": seconds,
            "stdout": done.stdout,
            "stderr": done.stderr,
        }
        print(f"deepclust reproduce --quick against {prefect_server.api_url}: {seconds:.1f} s")
    return _SESSION["tiny_run"]
