"""Every manifest kind has one schema (``deepclust.storage.manifests``): writers follow it, readers and the stage driver
refuse a manifest that does not, naming the file and the column."""

from __future__ import annotations

import pickle

import pandas as pd
import pytest

from deepclust import storage
from deepclust.corpora.manifest import COLUMNS as CORPUS_COLUMNS
from deepclust.evaluation import METRIC_COLUMNS, RESULT_COLUMNS
from deepclust.features.extract import MANIFEST_COLUMNS as FEATURE_COLUMNS
from deepclust.mixing.mix import MANIFEST_COLUMNS as MIXTURE_COLUMNS
from deepclust.pipeline.driver import run_stage
from deepclust.pipeline.plan import StageDefinition, StagePlan
from deepclust.pipeline.store import make_stage
from deepclust.separation.batch import MANIFEST_COLUMNS as SEPARATION_COLUMNS
from deepclust.storage.manifests import SCHEMAS, ManifestSchemaError, has_status, read_manifest, validate


def _model_row(**changes) -> dict:
    return {
        "model_url": "/runs/train/k/model.pt",
        "sha256": "0" * 64,
        "best_val_loss": 0.3,
        "epochs": 4,
        "history_url": "/runs/train/k/history.csv",
        "loss_curve_png": "",
        **changes,
    }


def test_every_writer_builds_its_rows_in_its_schemas_columns():
    assert list(CORPUS_COLUMNS) == SCHEMAS["corpus"].required
    assert MIXTURE_COLUMNS == SCHEMAS["mixtures"].required
    assert FEATURE_COLUMNS == SCHEMAS["features"].required
    assert SEPARATION_COLUMNS == SCHEMAS["separate"].names
    assert RESULT_COLUMNS == SCHEMAS["evaluate"].required
    assert [c for c in RESULT_COLUMNS if c in METRIC_COLUMNS] == METRIC_COLUMNS


def test_a_manifest_missing_a_column_is_refused_naming_the_file_and_the_column(tmp_path):
    url = str(tmp_path / "manifest.parquet")
    storage.write_parquet(pd.DataFrame([_model_row()]).drop(columns=["sha256"]), url)
    with pytest.raises(ManifestSchemaError, match=r"manifest.parquet: 'train' manifest lacks columns \['sha256'\]"):
        read_manifest(url, "train")


def test_a_column_of_the_wrong_type_is_refused_naming_it():
    with pytest.raises(ManifestSchemaError, match="column 'epochs' holds .*, not integers"):
        validate(pd.DataFrame([_model_row(epochs="four")]), "train", "train/manifest.parquet")


def test_nulls_and_extra_columns_pass():
    frame = pd.DataFrame([_model_row(), _model_row(best_val_loss=None, note="extra")])
    assert validate(frame, "train", "here") is frame


def test_an_optional_column_a_reader_needs_is_required_by_that_reader():
    results = pd.DataFrame(columns=SCHEMAS["evaluate"].required)
    validate(results, "evaluate", "results.parquet")
    with pytest.raises(ManifestSchemaError, match=r"lacks columns \['condition'\]"):
        validate(results, "evaluate", "results.parquet", needs=("condition",))


def test_only_the_kinds_whose_items_fail_one_by_one_have_a_status_column():
    assert {kind for kind in SCHEMAS if has_status(kind)} == {"mixtures", "features", "separate", "evaluate"}


def test_the_schema_error_survives_pickling_with_its_fields():
    error = pickle.loads(pickle.dumps(ManifestSchemaError("a/manifest.parquet", "features", "lacks columns ['x']")))
    assert (error.where, error.kind, str(error)) == (
        "a/manifest.parquet",
        "features",
        "a/manifest.parquet: 'features' manifest lacks columns ['x']",
    )


def test_the_driver_never_commits_a_manifest_of_the_wrong_shape(tmp_path):
    def plan(run_root):
        return StagePlan(make_stage(run_root, "train", {}), definition, [{"id": "only"}])

    definition = StageDefinition(
        "train",
        plan,
        lambda p, unit: {"rows": 1},
        lambda p, results: (pd.DataFrame([{"model_url": "m.pt"}]), {}),
        "train",
    )
    stage_plan = plan(str(tmp_path))
    with pytest.raises(ManifestSchemaError, match="train/.*/manifest.parquet: 'train' manifest lacks"):
        run_stage(stage_plan, log=lambda line: None)
    assert not stage_plan.stage.is_complete()
