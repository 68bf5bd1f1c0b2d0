"""What an install puts on a user's path: the library and its Prefect side inside one namespace (issue 28)."""

import subprocess
import sys
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]


def test_every_library_package_is_listed_for_installation():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {".".join(path.parent.relative_to(REPO).parts) for path in (REPO / "deepclust").rglob("__init__.py")}
    assert folders - set(config["packages"]) == set(), "add these to [tool.setuptools] packages"
    assert config["package-dir"] == {"deepclust.flows": "flows", "deepclust.tasks": "tasks"}
    assert {"deepclust.flows", "deepclust.tasks"} <= set(config["packages"])


def test_the_prefect_side_imports_as_deepclust_flows_and_no_top_level_flows_or_tasks_is_installed(tmp_path):
    probe = (
        "import importlib.util as u, deepclust.flows.cli, deepclust.tasks.stage_tasks; "
        "print(u.find_spec('flows') is None, u.find_spec('tasks') is None, deepclust.flows.cli.__file__)"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    flows_absent, tasks_absent, cli_file = result.stdout.split()
    assert flows_absent == tasks_absent == "True"  # nothing named flows or tasks collides with a user's own
    assert Path(cli_file) == REPO / "flows" / "cli.py"
