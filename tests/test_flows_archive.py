"""The ``separate-archive`` flow: threads, a real Dask LocalCluster of 2 worker processes, S3, retries, and its
settings as one ``ArchiveJobConfig`` (from Python) or its dict form (from a deployment).

The model is a tiny untrained network: these tests prove the plumbing (every file accounted for, the
same manifest whatever runs the batches), not the separation quality.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from archive_fixtures import build_archive
from deepclust.flows.separate_archive import separate_archive_flow
from test_archive_separation import check_archive_result, read_output

from deepclust import storage
from deepclust.archive import read_manifest
from deepclust.archive.config import ArchiveJobConfig
from deepclust.separation.windows import WindowConfig

# As in test_archive_separation: 4 s windows, so the two 13 s recordings take the long-recording path.
WINDOW = WindowConfig(window_seconds=4.0, overlap_seconds=1.0, windows_per_batch=4)
JOB = ArchiveJobConfig(window=WINDOW, device="cpu")
# One xdist worker for the module: the archive, the thread run (compared with the Dask run), the Prefect
# harness and the S3 server are then made once; the Dask cluster (2 processes) never overlaps the other
# flow runs of this module.
pytestmark = pytest.mark.xdist_group("flows-archive")

COMPARED = [
    "input",
    "relative_path",
    "output_stem",
    "status",
    "error",
    "duration",
    "sample_rate",
    "channels",
    "output_sample_rate",
    "windows",
    "input_id",
    "model_sha256",
    "settings",
]


@pytest.fixture(scope="module")
def archive(tmp_path_factory, fsdd_dir, librispeech_dir):
    root = tmp_path_factory.mktemp("flow-archive") / "in"
    return root, build_archive(root, fsdd_dir, librispeech_dir)


@pytest.fixture(scope="module")
def thread_run(archive, tiny_model_url, prefect_harness, tmp_path_factory):
    """The whole archive through the flow on its default thread pool, once."""
    root, _ = archive
    out = tmp_path_factory.mktemp("flow-threads") / "out"
    state = separate_archive_flow(tiny_model_url, str(root), str(out), JOB, return_state=True)
    return out, state


def comparable(manifest, out) -> pd.DataFrame:
    """Manifest rows without timings (outputs are relative to ``out`` already; ``out`` in reasons replaced)."""
    rows = manifest[COMPARED].copy()
    rows["error"] = rows["error"].str.replace(storage.absolute(str(out)), "OUT", regex=False)
    rows["outputs"] = [" ".join(outputs) for outputs in manifest["outputs"]]
    return rows


def test_flow_separates_the_archive_and_its_final_state_counts_the_bad_inputs(archive, thread_run):
    root, expected = archive
    out, state = thread_run
    assert state.is_completed(), state.message
    assert state.message == f"completed with {len(expected['bad'])} failed inputs"
    summary = state.result()
    check_archive_result(summary, read_manifest(str(out)), expected, str(out))
    assert summary["separated"] == len(expected["good"])


def test_flow_rerun_skips_done_inputs_and_retries_only_failed_ones(archive, thread_run, tiny_model_url):
    root, expected = archive
    out, _ = thread_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("s*.wav")}
    state = separate_archive_flow(tiny_model_url, str(root), str(out), JOB, return_state=True)
    summary = state.result()
    assert summary["already_done"] == len(expected["good"]) and summary["separated"] == 0
    assert summary["failed"] == len(expected["bad"]) and state.message.endswith(f"{len(expected['bad'])} failed inputs")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("s*.wav")} == before


def test_flow_on_a_dask_cluster_of_two_processes_matches_the_thread_run(archive, thread_run, tiny_model_url, tmp_path):
    from distributed import Client, LocalCluster

    from deepclust.separation import separator as separator_module

    root, expected = archive
    out = tmp_path / "out"
    with (
        LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        state = separate_archive_flow(
            tiny_model_url, str(root), str(out), JOB, dask_address=cluster.scheduler_address, return_state=True
        )
        loads = client.run(lambda: sum(separator_module.SEPARATOR_LOADS.values()))
        threads = client.run(lambda: __import__("torch").get_num_threads())
    assert state.is_completed(), state.message
    assert state.message == f"completed with {len(expected['bad'])} failed inputs"
    # Both worker processes separated batches, and each loaded the model once (not once per batch).
    assert sorted(loads.values()) == [1, 1], loads
    assert set(threads.values()) == {1}

    thread_out, _ = thread_run
    manifest, thread_manifest = read_manifest(str(out)), read_manifest(str(thread_out))
    pd.testing.assert_frame_equal(comparable(manifest, out), comparable(thread_manifest, thread_out))
    # Same audio: separation is seeded; only float summation order may differ between thread counts.
    for rel, outputs in zip(manifest["relative_path"], manifest["outputs"]):
        for name in outputs:
            data, sr = read_output(storage.join(str(out), name))
            reference, reference_sr = read_output(storage.join(str(thread_out), name))
            assert sr == reference_sr and data.shape == reference.shape, (rel, name)
            np.testing.assert_allclose(data, reference, atol=1e-3, err_msg=name)


def test_flow_separates_an_s3_prefix(archive, tiny_model_url, s3_server, prefect_harness):
    root, expected = archive
    fs = s3_server.filesystem()
    picked = [
        "calls/mix_00.wav",
        "calls/2024/day 1/mix_01.flac",
        "zz_long/lecture.ogg",
        "bad/nan.wav",
        "bad/not_audio.wav",
    ]
    for rel in picked:
        fs.put_file(str(root / rel), f"{s3_server.bucket}/flow/in/{rel}")
    input_url, out_url = s3_server.url("flow", "in"), s3_server.url("flow", "out")
    # The settings in the form a deployment gives them: a dict, fields left out at their defaults.
    config = {"files_per_batch": 2, "device": "cpu", "window": WINDOW.to_dict()}
    state = separate_archive_flow(tiny_model_url, input_url, out_url, config, return_state=True)
    assert state.is_completed() and state.message == "completed with 2 failed inputs"
    rows = read_manifest(out_url).set_index("relative_path")
    assert sorted(rows.index) == sorted(picked)
    for rel in picked:
        if rel.startswith("bad/"):
            assert rows.loc[rel, "status"] == "failed" and expected["bad"][rel] in rows.loc[rel, "error"]
        else:
            assert rows.loc[rel, "status"] == "done", rows.loc[rel, "error"]
            assert all(storage.exists(storage.join(out_url, name)) for name in rows.loc[rel, "outputs"])
    assert not fs.exists(f"{s3_server.bucket}/flow/out/.lock")


@pytest.fixture()
def two_file_archive(archive, tmp_path):
    root, _ = archive
    small = tmp_path / "in"
    for rel in ("calls/mix_00.wav", "mix_03.wav"):
        (small / rel).parent.mkdir(parents=True, exist_ok=True)
        (small / rel).write_bytes((root / rel).read_bytes())
    return small


def test_transient_fault_in_a_batch_is_retried(
    two_file_archive, tiny_model_url, prefect_harness, tmp_path, monkeypatch
):
    from deepclust.archive import job as archive_job  # where the task calls it

    calls = []
    real = archive_job.separate_job_batch

    def flaky(separator, items, *args):
        calls.append(items[0]["relative_path"])
        if len(calls) == 1:
            raise ConnectionError("connection reset by the object store")
        return real(separator, items, *args)

    monkeypatch.setattr(archive_job, "separate_job_batch", flaky)
    state = separate_archive_flow(
        tiny_model_url,
        str(two_file_archive),
        str(tmp_path / "out"),
        ArchiveJobConfig(files_per_batch=1, window=WINDOW, device="cpu"),
        max_workers=1,
        return_state=True,
    )
    assert state.is_completed() and state.message in (None, "")
    assert len(calls) == 3 and calls[0] == calls[1]  # the failed batch ran again
    assert list(read_manifest(str(tmp_path / "out"))["status"]) == ["done", "done"]


def test_a_batch_that_fails_for_good_is_not_retried_and_fails_the_flow(
    two_file_archive, tiny_model_url, prefect_harness, tmp_path, monkeypatch
):
    from deepclust.archive import job as archive_job  # where the task calls it

    calls = []
    real = archive_job.separate_job_batch

    def broken(separator, items, *args):
        calls.append(items[0]["relative_path"])
        if items[0]["relative_path"] == "calls/mix_00.wav":
            raise ValueError("a bug, not a fault of the object store")
        return real(separator, items, *args)

    monkeypatch.setattr(archive_job, "separate_job_batch", broken)
    state = separate_archive_flow(
        tiny_model_url,
        str(two_file_archive),
        str(tmp_path / "out"),
        ArchiveJobConfig(files_per_batch=1, window=WINDOW, device="cpu"),
        max_workers=1,
        return_state=True,
    )
    assert state.is_failed() and "1 of 2 batches failed" in state.message
    assert calls.count("calls/mix_00.wav") == 1
    # The other batch was committed, and the lock released: a rerun redoes only the failed batch.
    manifest = read_manifest(str(tmp_path / "out"))
    assert list(manifest["relative_path"]) == ["mix_03.wav"] and list(manifest["status"]) == ["done"]
    assert not (tmp_path / "out" / ".lock").exists()


def test_cli_prefect_option_runs_the_flow(two_file_archive, tiny_model_url, prefect_harness, tmp_path, capsys, caplog):
    from deepclust.flows.cli import main  # the deepclust command: --prefect needs its Prefect runner

    (two_file_archive / "notes.wav").write_text("not a recording")
    main(
        [
            "separate-archive",
            "--model",
            tiny_model_url,
            "--input",
            str(two_file_archive),
            "--out",
            str(tmp_path / "out"),
            "--device",
            "cpu",
            "--prefect",
        ]
    )
    printed = capsys.readouterr()
    assert (
        "completed with 1 failed inputs: 2 separated, 0 already done, 1 failed" in printed.out
        and "notes.wav: text file named .wav" in printed.err
    )
    assert "for flow 'separate-archive'" in caplog.text  # it ran as a Prefect flow run


def test_a_deployments_config_dict_becomes_the_job_config_and_a_misspelt_field_is_refused():
    """What a deployment passes (JSON) is validated into an ``ArchiveJobConfig`` before the run starts."""
    from prefect.exceptions import ParameterTypeError
    from prefect.utilities.callables import parameter_schema

    urls = {"model_url": "model.pt", "input_url": "in", "out_url": "out"}
    given = {"n_speakers": 3, "window": {"window_seconds": 20.0}, "splits": ["tr", "tt"], "device": "cpu"}
    parameters = separate_archive_flow.validate_parameters({**urls, "config": given})
    assert parameters["config"] == ArchiveJobConfig(
        n_speakers=3, window=WindowConfig(window_seconds=20.0), splits=("tr", "tt"), device="cpu"
    )
    assert separate_archive_flow.validate_parameters(urls)["config"] == ArchiveJobConfig()
    for wrong, named in (({"n_speakerz": 3}, "n_speakerz"), ({"channel": 0}, "channel counts channels from 1")):
        with pytest.raises(ParameterTypeError, match=named):
            separate_archive_flow.validate_parameters({**urls, "config": wrong})
    schema = parameter_schema(separate_archive_flow).model_dump()  # what a deployment registers: JSON
    assert json.loads(json.dumps(schema))["properties"]["config"]["default"]["files_per_batch"] == 8
