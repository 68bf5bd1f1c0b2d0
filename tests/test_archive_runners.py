"""One archive job, two runners: ``deepclust separate`` (batches in a loop here) and ``--prefect`` (one Prefect
task per batch) run the same job (``deepclust.archive.separate_archive``), so the same flags make the same
rows, and the same store outage is ridden out the same way (a real SeaweedFS server killed and restarted).

The model is a tiny untrained network: these tests prove the job's plumbing, not separation quality.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time

import numpy as np
import pandas as pd
import pytest
from archive_fixtures import PICKED, RestartableS3, talking_to, upload_fsdd_mixtures

from deepclust import archive, storage
from deepclust.archive import job as archive_job
from deepclust.archive import read_manifest

pytestmark = [pytest.mark.xdist_group("flows-archive"), pytest.mark.timeout(900)]

# Every row column a runner could get wrong (timings differ from run to run, so they are left out).
COMPARED = [
    "input",
    "relative_path",
    "output_stem",
    "status",
    "error",
    "duration",
    "sample_rate",
    "channels",
    "downmix",
    "output_sample_rate",
    "windows",
    "n_speakers",
    "input_id",
    "model_sha256",
    "settings",
]
SUMMARY_FIGURES = [
    "inputs",
    "already_done",
    "separated",
    "done",
    "failed",
    "transient",
    "manifest_writes",
    "manifest_rows_written",
    "message",
]


def comparable(out: str) -> pd.DataFrame:
    manifest = read_manifest(out)
    rows = manifest[COMPARED].copy()
    rows["error"] = rows["error"].str.replace(storage.absolute(out), "OUT", regex=False)
    rows["outputs"] = [" ".join(outputs) for outputs in manifest["outputs"]]
    return rows.sort_values("relative_path").reset_index(drop=True)


def test_plain_and_prefect_runners_record_the_same_rows_for_the_same_flags(
    small_archive, tiny_model_url, prefect_harness, tmp_path
):
    """``deepclust separate`` with and without ``--prefect``, every job flag set away from its default: the same
    rows (status, error, settings with k-means, precision and channel, outputs), the same summary figures
    (manifest I/O included), and a listening page from both."""
    from deepclust.flows.cli import main  # the deepclust command: --prefect needs its Prefect runner

    flags = [
        "--input",
        str(small_archive),
        "--model",
        tiny_model_url,
        "--device",
        "cpu",
        "--kmeans",
        "torch",
        "--precision",
        "fp32",
        "--channel",
        "2",
        "--files-per-batch",
        "3",
        "--window-seconds",
        "4",
        "--overlap-seconds",
        "1",
        "--batch-size",
        "4",
        "--max-consecutive-failures",
        "10",
        "--retry-minutes",
        "1",
        "--listen",
        "2",
        "--inference",
        "kmeans",
    ]
    outs, summaries = {}, {}
    for runner, extra in (("plain", []), ("prefect", ["--prefect"])):
        outs[runner] = str(tmp_path / runner)
        summary_json = tmp_path / f"{runner}.json"
        try:
            main(["separate", *flags, "--out", outs[runner], "--summary-json", str(summary_json), *extra])
        except SystemExit as stop:  # a success returns; any exit code is a failure here
            pytest.fail(f"{runner}: exit {stop.code}")
        summaries[runner] = json.loads(summary_json.read_text())

    plain, prefect = comparable(outs["plain"]), comparable(outs["prefect"])
    pd.testing.assert_frame_equal(plain, prefect)
    assert sorted(plain["relative_path"]) == sorted(PICKED)
    assert list(plain.loc[plain["relative_path"].str.startswith("bad/"), "status"]) == ["failed", "failed"]
    assert (plain.loc[~plain["relative_path"].str.startswith("bad/"), "status"] == "done").all(), plain["error"]
    for settings in plain["settings"]:
        recorded = json.loads(settings)
        assert (recorded["kmeans"], recorded["precision"], recorded["channel"]) == ("torch", "fp32", 2), recorded
        assert (recorded["inference"], recorded["window_seconds"]) == ("kmeans", 4.0), recorded
    stereo = plain.set_index("relative_path").loc["calls/2024/day 1/mix_01.flac"]
    assert stereo["downmix"] == "channel 2 of 2, chosen by --channel"
    assert stereo["outputs"] and all(
        storage.exists(storage.join(outs["prefect"], name)) for name in stereo["outputs"].split(" ")
    )

    for figure in SUMMARY_FIGURES:
        assert summaries["plain"][figure] == summaries["prefect"][figure], figure
    assert summaries["prefect"]["manifest_writes"] > 0 and summaries["prefect"]["manifest_rows_written"] > 0
    assert summaries["plain"]["listen"] and summaries["prefect"]["listen"]
    assert storage.exists(summaries["prefect"]["listen"])


class Outages:
    """A real outage at chosen calls: the server killed as the call begins (connections refused), and started
    again ``seconds`` later from a thread, so the call and whatever follows meet a store that is down."""

    def __init__(self, server: RestartableS3, monkeypatch, seconds: float = 2.0):
        self.server, self.monkeypatch, self.seconds = server, monkeypatch, seconds
        self.began: list[str] = []
        self.threads: list[threading.Thread] = []
        self.guard = threading.Lock()

    def at(self, owner, name: str, call: int = 1) -> None:
        """Begin an outage at the ``call``-th call of ``owner.name`` (counted across threads)."""
        real, calls = getattr(owner, name), itertools.count(1)

        def with_an_outage(*args, **kwargs):
            with self.guard:
                if next(calls) == call:
                    self.begin(name)
            return real(*args, **kwargs)

        self.monkeypatch.setattr(owner, name, with_an_outage)

    def begin(self, what: str) -> None:
        self.server.stop()
        self.began.append(what)

        def restart():
            time.sleep(self.seconds)
            self.server.start()

        thread = threading.Thread(target=restart, name=f"restart-after-{what}")
        thread.start()
        self.threads.append(thread)

    def wait(self) -> None:
        for thread in self.threads:
            thread.join(timeout=120)


class RetryWarnings(logging.Handler):
    """The retry warnings of ``deepclust.faults.transient`` while in the block (a handler of its own: Prefect's logging
    setup replaces the root handlers that pytest's ``caplog`` relies on)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if ": transient fault (" in record.getMessage():
            self.messages.append(record.getMessage())

    def __enter__(self):
        logging.getLogger("deepclust.faults.transient").addHandler(self)
        return self

    def __exit__(self, *exc):
        logging.getLogger("deepclust.faults.transient").removeHandler(self)

    def __repr__(self) -> str:
        return f"RetryWarnings({self.messages})"


@pytest.mark.slow  # eight restarts of a real S3 server: about four minutes on two cores
def test_prefect_runner_rides_out_a_store_outage_as_the_plain_runner_does(
    tmp_path, fsdd_dir, tiny_model_url, prefect_harness
):
    """Input and output on S3; the store goes down as the listing begins, as the first batch begins, as the last
    batch's lock check and commit begin, and as the compaction begins, each time for a few seconds. Both runners
    retry every one of these through the outage and end with every input done and the same rows."""
    from deepclust.flows.separate_archive import separate_archive_flow

    from deepclust.archive.config import ArchiveJobConfig
    from deepclust.storage.lock import FolderLock
    from deepclust.storage.manifest_log import ManifestLog

    server = RestartableS3(tmp_path / "s3")
    server.start()
    try:
        upload_fsdd_mixtures(server, fsdd_dir, tmp_path / "local")
        fs = server.server.filesystem()
        job = ArchiveJobConfig(files_per_batch=2, device="cpu", kmeans="torch", retry_seconds=120.0)
        runs = {
            "plain": lambda out: archive.separate_archive(tiny_model_url, server.server.url("in"), out, job),
            "prefect": lambda out: separate_archive_flow(
                tiny_model_url, server.server.url("in"), out, job, max_workers=1, return_state=True
            ),
        }
        rows, summaries = {}, {}
        for runner, run in runs.items():
            out = server.server.url(f"out-{runner}")
            retries = RetryWarnings()
            with talking_to(server), pytest.MonkeyPatch.context() as patch, retries:
                outages = Outages(server, patch)
                outages.at(archive_job, "plan_archive")  # where the job calls it
                outages.at(archive_job, "separate_job_batch")
                outages.at(FolderLock, "check", call=2)  # the second (last) batch's, just before its commit
                outages.at(ManifestLog, "compact")
                try:
                    result = run(out)
                finally:
                    outages.wait()
                summaries[runner] = result.result() if runner == "prefect" else result
                if runner == "prefect":
                    assert result.is_completed(), result.message
                assert outages.began == ["plan_archive", "separate_job_batch", "check", "compact"], outages.began
                for what in ("listing s3://", "checking the lock", "compacting the manifest"):  # the job's own
                    assert any(message.startswith(what) for message in retries.messages), (runner, what, retries)
                rows[runner] = comparable(out)
        for runner in runs:
            assert summaries[runner]["message"] == "completed" and summaries[runner]["separated"] == 4, runner
            assert (rows[runner]["status"] == "done").all(), rows[runner]["error"]
            assert not fs.exists(f"{server.server.bucket}/out-{runner}/.lock")
        plain, prefect = rows["plain"].drop(columns="error"), rows["prefect"].drop(columns="error")
        pd.testing.assert_frame_equal(plain, prefect)
        assert summaries["plain"]["manifest_writes"] == summaries["prefect"]["manifest_writes"]
        assert np.isclose(summaries["plain"]["audio_seconds"], summaries["prefect"]["audio_seconds"])
    finally:
        server.stop()
