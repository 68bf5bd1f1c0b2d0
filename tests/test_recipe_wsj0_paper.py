"""``deepclust reproduce --preset paper`` end to end on a WSJ0-shaped tree with official lists, at a tiny ``--set``
scale: both curriculum phases train, the 2- and 3-speaker test sets are separated by k-means and scored, the report
lays the results out as the paper does, and run.json and the history record the preset and the overrides."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from wsj0_fixtures import write_lists

from deepclust import cli

pytestmark = pytest.mark.slow

TINY = ["train.max_epochs=1", "train.steps_per_epoch=2", "train.batch_size=4"]


@pytest.fixture(scope="module")
def paper_run(wsj0_tree, tmp_path_factory):
    folder = tmp_path_factory.mktemp("paper-run")
    out = folder / "run"
    argv = [
        "reproduce",
        "--preset",
        "paper",
        "--corpus",
        "wsj0",
        "--wsj0-root",
        str(wsj0_tree),
        "--mix-lists",
        str(write_lists(folder / "lists")),
        "--out",
        str(out),
        "--no-prefect",
    ]
    for override in TINY:
        argv += ["--set", override]
    cli.main(argv)
    return {"out": out, "record": json.loads((out / "run.json").read_text())}


def test_the_paper_preset_runs_end_to_end_and_records_what_was_asked(paper_run):
    record = paper_run["record"]
    assert record["preset"] == "paper" and record["overrides"] == TINY
    assert record["config"]["train"]["curriculum_chunk_frames"] == 400
    assert record["config"]["train"]["max_train_seconds"] is None and record["training"]["time_capped"] is False
    history = pd.read_parquet(record["history"]["url"])
    assert history["preset"].tolist() == ["paper"] and history["overrides"].tolist() == [" ".join(TINY)]


def test_both_curriculum_phases_train(paper_run):
    history = pd.read_csv(paper_run["out"] / "train" / paper_run["record"]["stages"]["train"]["key"] / "history.csv")
    assert sorted(set(history["stage"])) == [0, 1]  # 100-frame chunks, then 400-frame chunks


def test_the_two_and_three_speaker_test_sets_are_separated_with_kmeans_and_scored(paper_run):
    results = pd.read_parquet(paper_run["record"]["results"])
    model = results[results["system"] == "model"]
    assert (model["status"] == "done").all(), model["error"].tolist()
    assert sorted(model["num_speakers"]) == [2, 2, 3]
    assert set(model["gender_condition"].dropna()) == {"same", "different"}
    assert set(results["system"]) == {"model", "ibm", "irm"}
    separated = pd.read_parquet(paper_run["record"]["stages"]["separate"]["manifest"])
    assert {json.loads(s)["inference"] for s in separated["settings"]} == {"kmeans"}


def test_the_report_lays_the_results_out_as_the_paper_does(paper_run):
    with open(paper_run["record"]["report"]) as handle:
        report = handle.read()
    section = report.split("## As the paper reports it", 1)[1].split("##", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith("| test set | mixtures | model SDRi | IBM SDRi | IRM SDRi | paper SDRi | DPCL++ SDRi")
    cells = [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in rows[1:]]
    by_label = {row[0]: row for row in cells}
    assert list(by_label) == [
        "2 speakers, different gender",
        "2 speakers, same gender",
        "2 speakers, overall",
        "3 speakers, overall",
    ]
    assert [by_label[label][1] for label in by_label] == ["1", "1", "2", "1"]  # mixtures in each row
    assert by_label["2 speakers, overall"][5:7] == ["6.00", "10.30"]  # Hershey et al. / Isik et al. abstracts
    assert "open-speaker test mixtures" in section
