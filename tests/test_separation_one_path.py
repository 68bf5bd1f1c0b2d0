"""One separation path: ``deepclust separate``, the ``separate-archive`` flow and the recipe's separation stage
give the same rows for the same inputs (bad ones included), and ``separate``'s output chains into ``evaluate``.

Real FSDD speech mixed by the real mixing stage; one test mixture is then cut short on disk (a real damaged
file). The model is a tiny untrained network: these tests prove the plumbing, not quality.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from deepclust import storage
from deepclust.archive import read_manifest, separate_archive
from deepclust.pipeline.driver import run_stage
from deepclust.separation.long import WindowConfig
from deepclust.stages.corpus import CorpusConfig, plan_corpus
from deepclust.stages.evaluate import EvaluateConfig, plan_evaluate
from deepclust.stages.mixtures import MixStageConfig, plan_mixtures
from deepclust.stages.separate import SeparateConfig, plan_separate

REPO = Path(__file__).resolve().parents[1]
COMPARED = [
    "relative_path",
    "mixture_id",
    "output_stem",
    "status",
    "error",
    "n_speakers",
    "windows",
    "sample_rate",
    "channels",
    "outputs",
    "input_id",
    "model_sha256",
    "settings",
]


def quiet(message):
    pass


@pytest.fixture(scope="module")
def mixture_set(tmp_path_factory, fsdd_dir):
    """A 2- and 3-speaker test set of real FSDD speech; one 2-speaker test mixture truncated on disk."""
    root = str(tmp_path_factory.mktemp("mixtures"))
    corpus = run_stage(
        plan_corpus(
            root,
            CorpusConfig(name="folder", root=str(fsdd_dir), pattern="fsdd", test_speakers=["george", "lucas", "theo"]),
        ),
        log=quiet,
    )
    mixtures = run_stage(
        plan_mixtures(root, corpus, MixStageConfig(sizes={"tr": 4, "cv": 2, "tt": 5}, test_speaker_counts=(2, 3))),
        log=quiet,
    )
    table = storage.read_parquet(mixtures)
    test = table[table["split"] == "tt"]
    assert set(test["num_speakers"]) == {2, 3}
    damaged = test[test["num_speakers"] == 2].iloc[0]
    data = Path(damaged["mixture_path"]).read_bytes()
    Path(damaged["mixture_path"]).write_bytes(data[: len(data) // 2])  # header promises more than is there
    return {"url": mixtures, "table": table, "damaged": damaged["mixture_id"], "root": root}


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deepclust.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )


def comparable(manifest: pd.DataFrame) -> pd.DataFrame:
    """Rows without timings (outputs are recorded relative to each run's own output folder)."""
    rows = manifest[COMPARED].copy().set_index("relative_path").sort_index()
    rows["outputs"] = [" ".join(outputs) for outputs in rows["outputs"]]
    return rows


def test_separate_then_evaluate_chain(mixture_set, tiny_model_url, tmp_path):
    separated = tmp_path / "separated"
    result = cli(
        "separate", "--model", tiny_model_url, "--input", mixture_set["url"], "--out", str(separated), "--device", "cpu"
    )
    assert result.returncode == 0, result.stderr
    manifest = read_manifest(str(separated))
    test = mixture_set["table"][mixture_set["table"]["split"] == "tt"]
    assert sorted(manifest["mixture_id"]) == sorted(test["mixture_id"])  # the test split only, by default
    assert f"completed with 1 failed inputs: {len(test) - 1} separated" in result.stdout

    evaluated = cli(
        "evaluate",
        "--mixtures",
        mixture_set["url"],
        "--separated",
        str(separated / "manifest.parquet"),
        "--oracles",
        "ibm",
        "--out",
        str(tmp_path / "eval"),
    )
    assert evaluated.returncode == 0, evaluated.stderr
    results_url = evaluated.stdout and next((tmp_path / "eval" / "evaluate").glob("*/manifest.parquet"))
    results = pd.read_parquet(results_url)
    model = results[results["system"] == "model"]
    assert sorted(model["mixture_id"]) == sorted(test["mixture_id"])
    by_id = model.set_index("mixture_id")
    assert by_id.loc[mixture_set["damaged"], "status"] != "done"  # nothing to score, and said so
    done = model[model["status"] == "done"]
    assert len(done) == len(test) - 1 and done["sdr"].notna().all()
    assert set(results[results["system"] == "ibm"]["mixture_id"]) >= set(done["mixture_id"])


def test_evaluate_refuses_a_separation_of_plain_files(mixture_set, tiny_model_url, tmp_path, fsdd_dir):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.wav").write_bytes((fsdd_dir / "1_theo_0.wav").read_bytes())
    assert (
        cli(
            "separate",
            "--model",
            tiny_model_url,
            "--input",
            str(folder),
            "--out",
            str(tmp_path / "sep"),
            "--device",
            "cpu",
        ).returncode
        == 0
    )
    evaluated = cli(
        "evaluate",
        "--mixtures",
        mixture_set["url"],
        "--separated",
        str(tmp_path / "sep" / "manifest.parquet"),
        "--out",
        str(tmp_path / "eval"),
    )
    assert evaluated.returncode != 0 and "do not name mixtures" in evaluated.stderr


def test_same_rows_whichever_command_separates(mixture_set, tiny_model_url, tmp_path, prefect_harness):
    from deepclust.flows.separate_archive import separate_archive_flow

    from deepclust.archive.config import ArchiveJobConfig

    # float32 as the recipe's stage separates (the command's "auto" is bf16 on a CPU that runs it).
    plain = str(tmp_path / "plain")
    separate_archive(tiny_model_url, mixture_set["url"], plain, device="cpu", precision="fp32")

    flow = str(tmp_path / "flow")
    state = separate_archive_flow(
        tiny_model_url,
        mixture_set["url"],
        flow,
        ArchiveJobConfig(device="cpu", files_per_batch=2, precision="fp32"),
        return_state=True,
    )
    assert state.is_completed() and state.message == "completed with 1 failed inputs"

    model_manifest = str(tmp_path / "model.parquet")  # what the training stage commits: the model's URL
    storage.write_parquet(pd.DataFrame([{"model_url": tiny_model_url}]), model_manifest)
    plan = plan_separate(
        str(tmp_path / "run"),
        model_manifest,
        mixture_set["url"],
        SeparateConfig(device="cpu", unit_size=2, window_seconds=WindowConfig.window_seconds),
    )
    stage_manifest = storage.read_parquet(run_stage(plan, log=quiet))

    rows = {
        "plain": comparable(read_manifest(plain)),
        "flow": comparable(read_manifest(flow)),
        "stage": comparable(stage_manifest),
    }
    pd.testing.assert_frame_equal(rows["plain"], rows["flow"])
    pd.testing.assert_frame_equal(rows["plain"], rows["stage"])
    bad = rows["plain"][rows["plain"]["mixture_id"] == mixture_set["damaged"]].iloc[0]
    assert bad["status"] == "failed" and "truncated" in bad["error"] and mixture_set["damaged"] in bad["error"]
    assert bad["outputs"] == ""
    # The recipe's evaluation reads any of them.
    results = run_stage(
        plan_evaluate(
            str(tmp_path / "run"),
            storage.join(plain, "manifest.parquet"),
            mixture_set["url"],
            EvaluateConfig(oracles=()),
        ),
        log=quiet,
    )
    test = mixture_set["table"][mixture_set["table"]["split"] == "tt"]
    assert (storage.read_parquet(results)["status"] == "done").sum() == len(test) - 1
