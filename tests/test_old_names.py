"""One name per concept (issue 28): command, stage, stage module and manifest kind share the stage's name. The
names they had before still work for one release, each with a warning that names the new one."""

import subprocess
import sys
import warnings

import pandas as pd
import pytest

from deepclust.recipe.config import ReproduceConfig
from deepclust.recipe.overrides import apply_overrides
from deepclust.recipe.presets import preset_config
from deepclust.recipe.registry import STAGES
from deepclust.reports.history import config_fingerprint
from deepclust.storage.manifests import SCHEMAS, validate


def test_each_stage_has_one_name_for_its_command_module_and_manifest_kind():
    from deepclust.cli import build_parser

    commands = set(build_parser()._subparsers._group_actions[0].choices)
    for name, definition in STAGES.items():
        assert definition.name == name and definition.manifest_kind == name
        assert name in commands, f"no command named for the {name} stage"
        module = definition.plan.__module__
        assert module == f"deepclust.stages.{name}" and definition.plan.__name__ == f"plan_{name}"


def test_the_old_command_name_runs_the_new_command_and_says_so(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "deepclust", "mix", "--corpus-manifest", str(tmp_path / "absent.parquet")]
        + ["--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "deepclust mix is now deepclust mixtures" in result.stderr
    assert "absent.parquet" in result.stderr and result.returncode != 0  # it ran the mixtures command on that input


def test_old_manifest_kinds_find_the_schema_with_a_warning():
    frame = pd.DataFrame([{"model_url": "m.pt"}])
    with pytest.warns(DeprecationWarning, match="'model' is now 'train'"):
        assert SCHEMAS["model"] is SCHEMAS["train"]
    with pytest.warns(DeprecationWarning):
        with pytest.raises(Exception, match="'train' manifest lacks"):
            validate(frame, "model", "train/manifest.parquet")
    with pytest.raises(KeyError, match="no manifest kind 'modle'"):
        SCHEMAS["modle"]


def test_an_old_run_json_and_an_old_set_path_read_as_the_mixtures_config_and_the_recipe_stays_one_recipe():
    paper = preset_config("paper")
    old = paper.to_dict()
    old["mix"] = old.pop("mixtures")
    assert ReproduceConfig.from_dict(old).mixtures == paper.mixtures
    with pytest.warns(FutureWarning, match="mix is now mixtures"):
        changed = apply_overrides(paper, ["mix.scale=0.5"])
    assert changed.mixtures.scale == 0.5
    # The history's recipe fingerprint was computed with the old spelling: runs before and after the rename are one
    # recipe (this is the fingerprint every earlier run of the paper preset recorded).
    assert config_fingerprint(paper) == "33668404059588d2"


def test_old_module_paths_import_the_moved_modules_with_a_warning():
    for old in ("deepclust.errors", "deepclust.stages.training"):
        sys.modules.pop(old, None)  # imported earlier in this process: the finder is asked again
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import deepclust.stages.training as old_training
        from deepclust.errors import RunFaultError
    from deepclust.faults.errors import RunFaultError as moved
    from deepclust.stages import train

    assert RunFaultError is moved and old_training is train
    assert any("deepclust.errors is now deepclust.faults.errors" in str(w.message) for w in caught)
