"""``deepclust separate --workers 2``: the archive job's batches on two local worker processes make the same
rows (settings, outputs, failed inputs with their reasons) and the same summary as the plain run in this
process; the tiny untrained model tests the plumbing, not quality."""

from __future__ import annotations

import json

import pytest
from archive_fixtures import PICKED
from test_archive_runners import SUMMARY_FIGURES, comparable

from deepclust.cli import main

pytestmark = pytest.mark.timeout(600)


def test_two_worker_processes_record_the_same_rows_as_the_plain_run(small_archive, tiny_model_url, tmp_path):
    flags = [
        "--input",
        str(small_archive),
        "--model",
        tiny_model_url,
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--files-per-batch",
        "2",
        "--window-seconds",
        "4",
        "--overlap-seconds",
        "1",
        "--listen",
        "0",
        "--max-consecutive-failures",
        "10",
    ]
    outs, summaries = {}, {}
    for runner, extra in (("plain", []), ("workers", ["--workers", "2"])):
        outs[runner] = str(tmp_path / runner)
        main(["separate", *flags, "--out", outs[runner], "--summary-json", str(tmp_path / f"{runner}.json"), *extra])
        summaries[runner] = json.loads((tmp_path / f"{runner}.json").read_text())
    plain, workers = comparable(outs["plain"]), comparable(outs["workers"])
    assert sorted(plain["relative_path"]) == sorted(PICKED)
    assert list(plain.loc[plain["relative_path"].str.startswith("bad/"), "status"]) == ["failed", "failed"]
    assert plain.equals(workers), plain.compare(workers)
    for figure in SUMMARY_FIGURES:
        assert summaries["plain"][figure] == summaries["workers"][figure], figure
    # A rerun finds everything done, whichever runner made it.
    main(
        ["separate", *flags, "--out", outs["workers"], "--summary-json", str(tmp_path / "again.json"), "--workers", "2"]
    )
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["separated"] == 0 and again["already_done"] == len(PICKED) - 2


def test_workers_must_be_at_least_one(tmp_path, tiny_model_url):
    with pytest.raises(SystemExit) as stop:
        main(
            [
                "separate",
                "--input",
                str(tmp_path),
                "--model",
                tiny_model_url,
                "--out",
                str(tmp_path / "o"),
                "--workers",
                "0",
            ]
        )
    assert stop.value.code == 2
