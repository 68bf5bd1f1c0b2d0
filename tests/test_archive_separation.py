"""Archive separation on local disk and on a real S3 server (SeaweedFS on loopback)."""

from __future__ import annotations

import io
import json
import math
import os
import time

import numpy as np
import pytest
import soundfile as sf
from archive_fixtures import build_archive, fsdd_mixture, upload_folder

from deepclust import storage
from deepclust.archive import commit_manifest, job_settings, plan_archive, read_manifest, separate_archive
from deepclust.separation.batch import separate_items
from deepclust.separation.inputs import list_archive, output_stem
from deepclust.separation.long import WindowConfig
from deepclust.separation.separator import Separator
from deepclust.storage.lock import FolderLock as ArchiveLock
from deepclust.storage.lock import LockBusyError
from deepclust.storage.lock import folder_lock as archive_lock

# 4 s windows: the two 13 s LibriSpeech mixtures go through the long-recording path (4 windows each).
WINDOW = WindowConfig(window_seconds=4.0, overlap_seconds=1.0, windows_per_batch=4)


@pytest.fixture(scope="module")
def archive(tmp_path_factory, fsdd_dir, librispeech_dir):
    root = tmp_path_factory.mktemp("archive") / "in"
    return root, build_archive(root, fsdd_dir, librispeech_dir)


@pytest.fixture(scope="module")
def separator(tiny_model_url):
    return Separator(tiny_model_url, device="cpu")


def read_output(url: str) -> tuple[np.ndarray, int]:
    data, sr = sf.read(io.BytesIO(storage.read_bytes(url)), dtype="float32")
    return data, sr


def check_archive_result(summary, manifest, expected, out_url):
    """Every good file separated into 2 tracks at 8 kHz of its length; every bad file failed with its reason."""
    good, bad = expected["good"], expected["bad"]
    assert sorted(manifest["relative_path"]) == sorted(good + list(bad))
    assert manifest["relative_path"].is_unique
    rows = manifest.set_index("relative_path")
    for rel in good:
        row = rows.loc[rel]
        assert row["status"] == "done", f"{rel}: {row['error']}"
        assert len(row["outputs"]) == 2
        stem = row["output_stem"]
        assert stem == (output_stem(rel) if rel != "collide/take.wav" else "collide/take_wav")
        for k, name in enumerate(row["outputs"], start=1):
            assert name == f"{stem}/s{k}.wav"  # relative to out: the folder can move
            url = storage.join(out_url, name)
            assert storage.exists(url)
            data, sr = read_output(url)
            assert sr == 8000 and data.ndim == 1
            assert len(data) == math.ceil(expected["durations"][rel] * 8000 - 1e-6), rel
        assert row["duration"] == pytest.approx(expected["durations"][rel], abs=1e-3)
        assert row["seconds"] > 0 and row["network_seconds"] > 0
    for rel, reason in bad.items():
        row = rows.loc[rel]
        assert row["status"] == "failed" and list(row["outputs"]) == []
        assert reason in row["error"] and rel in row["error"], (rel, row["error"])
    assert summary["failed"] == len(bad)
    assert summary["message"] == f"completed with {len(bad)} failed inputs"
    # Nothing was written outside the per-input folders, the manifest and (on S3) nothing temporary.
    leftovers = [u for u in storage.list_files(out_url) if "/.tmp-" in u or "/.partial" in u or u.endswith(".lock")]
    assert leftovers == []


def test_archive_on_local_disk_separates_good_files_and_records_bad_ones(archive, separator, tmp_path):
    root, expected = archive
    out = tmp_path / "out"
    summary = separate_archive(separator, str(root), str(out), n_speakers=2, files_per_batch=8, window=WINDOW)
    manifest = read_manifest(str(out))
    check_archive_result(summary, manifest, expected, str(out))
    assert summary["separated"] == len(expected["good"]) and summary["already_done"] == 0
    rows = manifest.set_index("relative_path")
    assert rows.loc["zz_long/lecture.ogg", "windows"] == 4 and rows.loc["zz_long/lecture.ogg", "sample_rate"] == 22050
    assert rows.loc["calls/2024/day 1/mix_01.flac", "channels"] == 2
    # A name that needs sanitising still lands inside out.
    assert (out / "meetings" / "room_b_" / "mix_02" / "s1.wav").exists()

    # Rerun: only the failed inputs are tried again, the done ones are left alone.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("s*.wav")}
    again = separate_archive(separator, str(root), str(out), window=WINDOW)
    assert again["already_done"] == len(expected["good"]) and again["separated"] == 0
    assert again["failed"] == len(expected["bad"])
    assert {p: p.stat().st_mtime_ns for p in out.rglob("s*.wav")} == before

    # A new file is picked up; a deleted output makes its input todo again.
    (root / "late").mkdir()
    (root / "late" / "new.wav").write_bytes((root / "calls" / "mix_00.wav").read_bytes())
    (out / "calls" / "mix_04" / "s2.wav").unlink()
    todo, done = plan_archive(str(root), str(out), 2, job_settings(separator.model_url, WINDOW))
    assert sorted(item["relative_path"] for item in todo) == sorted(
        ["late/new.wav", "calls/mix_04.flac", *expected["bad"]]
    )
    assert len(done) == len(expected["good"]) - 1
    (root / "late" / "new.wav").unlink()
    (root / "late").rmdir()


def test_archive_on_s3_separates_good_files_and_records_bad_ones(archive, separator, s3_server):
    root, expected = archive
    fs = s3_server.filesystem()
    upload_folder(fs, root, f"{s3_server.bucket}/in")
    input_url, out_url = s3_server.url("in"), s3_server.url("out")
    assert sorted(list_archive(input_url)) == sorted(expected["good"] + list(expected["bad"]))
    summary = separate_archive(separator, input_url, out_url, n_speakers=2, files_per_batch=16, window=WINDOW)
    manifest = read_manifest(out_url)
    check_archive_result(summary, manifest, expected, out_url)
    assert all(u.startswith("s3://") for u in manifest["input"])
    assert not fs.exists(f"{s3_server.bucket}/out/.lock")


def test_unreadable_object_is_recorded_and_the_batch_goes_on(archive, separator, s3_server):
    root, _ = archive
    fs = s3_server.filesystem()
    prefix = f"{s3_server.bucket}/vanishing"
    for name in ("calls/mix_00.wav", "calls/mix_04.flac"):
        fs.put_file(str(root / name), f"{prefix}/in/{name}")
    input_url, out_url = s3_server.url("vanishing", "in"), s3_server.url("vanishing", "out")
    with archive_lock(out_url):
        todo, _ = plan_archive(input_url, out_url, 2, job_settings(separator.model_url, WINDOW))
        fs.rm(f"{prefix}/in/calls/mix_00.wav")  # listed, then gone: a lifecycle rule or another user
        rows = separate_items(separator, todo, out_url, WINDOW)
        commit_manifest(out_url, rows)
    by_rel = {r["relative_path"]: r for r in rows}
    assert by_rel["calls/mix_00.wav"]["status"] == "failed"
    assert "unreadable object" in by_rel["calls/mix_00.wav"]["error"]
    assert "vanishing/in/calls/mix_00.wav" in by_rel["calls/mix_00.wav"]["error"]
    assert by_rel["calls/mix_04.flac"]["status"] == "done"
    assert len(read_manifest(out_url)) == 2


def test_lock_refuses_a_second_run_and_takes_over_a_stale_one(tmp_path):
    out = str(tmp_path / "out")
    first = ArchiveLock(out, settle_seconds=0.0).acquire()
    try:
        with pytest.raises(LockBusyError, match="held by"):
            ArchiveLock(out, settle_seconds=0.0).acquire()
        # The holder stops beating (a crashed machine): once stale, the lock is taken over...
        record = json.loads((tmp_path / "out" / ".lock").read_text())
        record.update(heartbeat=time.time() - 3600, host="another-machine")
        (tmp_path / "out" / ".lock").write_text(json.dumps(record))
        second = ArchiveLock(out, stale_minutes=10, settle_seconds=0.0).acquire()
        # ...and the old holder finds out before it commits anything.
        with pytest.raises(RuntimeError, match="taken over"):
            first.check()
        second.release()
        assert not os.path.exists(tmp_path / "out" / ".lock")
    finally:
        first.release()


def _dead_pid() -> int:
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    return dead


def test_lock_of_a_killed_process_on_this_host_is_taken_over(tmp_path):
    from deepclust.storage.lock import machine_identity

    out = tmp_path / "out"
    out.mkdir()
    (out / ".lock").write_text(
        json.dumps(
            {
                "owner": "killed",
                **machine_identity(),
                "pid": _dead_pid(),
                "acquired": time.time(),
                "heartbeat": time.time(),
            }
        )
    )
    with archive_lock(str(out), settle_seconds=0.0) as lock:
        assert lock.owns()


def test_a_live_lock_of_another_container_with_our_host_name_is_not_taken(tmp_path):
    """A lock whose owner has our host name but another PID namespace is not taken for a dead one: two containers
    can share a host name while their PIDs live in separate namespaces, so 'no such PID here' says nothing about
    the other container's run. Only --break-lock takes it before it goes stale."""
    from deepclust.storage.lock import machine_identity

    out = tmp_path / "out"
    out.mkdir()
    other = {**machine_identity(), "pid_namespace": "pid:[4026531999]"}  # same host name, another namespace
    (out / ".lock").write_text(
        json.dumps(
            {"owner": "other-container", **other, "pid": _dead_pid(), "acquired": time.time(), "heartbeat": time.time()}
        )
    )
    with pytest.raises(LockBusyError, match="other-container.*--break-lock"):
        ArchiveLock(str(out), settle_seconds=0.0).acquire()
    with archive_lock(str(out), settle_seconds=0.0, break_lock=True) as lock:
        assert lock.owns()
    # A stale limit of the user's choosing: a heartbeat 2 minutes old is stale under --lock-stale-minutes 1.
    (out / ".lock").write_text(
        json.dumps(
            {"owner": "other-container", **other, "pid": 1, "acquired": time.time(), "heartbeat": time.time() - 120}
        )
    )
    with pytest.raises(LockBusyError):
        ArchiveLock(str(out), settle_seconds=0.0).acquire()
    with archive_lock(str(out), settle_seconds=0.0, stale_minutes=1) as lock:
        assert lock.owns()


@pytest.mark.parametrize(
    "name, stem",
    [
        ("a/b c/x.flac", "a/b_c/x"),
        ("../../etc/passwd.wav", "etc/passwd"),
        ("/abs/..hidden.wav", "abs/hidden"),
        ("..wav", "wav"),
    ],
)
def test_output_folder_never_leaves_out(name, stem):
    assert output_stem(name) == stem


def test_cli_separates_an_s3_prefix_with_the_endpoint_from_the_environment(archive, tiny_model_url, s3_server):
    import subprocess
    import sys

    root, _ = archive
    fs = s3_server.filesystem()
    for name in ("mix_03.wav", "bad/nan.wav"):
        fs.put_file(str(root / name), f"{s3_server.bucket}/cli/in/{name}")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "deepclust.cli",
            "separate-archive",
            "--model",
            tiny_model_url,
            "--input",
            s3_server.url("cli", "in"),
            "--out",
            s3_server.url("cli", "out"),
            "--device",
            "cpu",
        ],
        env={**os.environ, **s3_server.env(), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "completed with 1 failed inputs" in result.stdout and "non-finite" in result.stderr
    assert fs.exists(f"{s3_server.bucket}/cli/out/mix_03/s2.wav")


def test_done_means_same_input_model_and_settings_and_folders_never_move(tmp_path, fsdd_dir, tiny_model_url):
    """'Done' holds only for the same input content, model and settings; a new input whose plain folder is
    taken gets its own (extension kept) and the finished one keeps its folder; a reserved name is separated."""
    import shutil

    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    for name in ("a.wav", "b.wav"):
        shutil.copy(fsdd_dir / f"{'1' if name == 'a.wav' else '2'}_theo_0.wav", root / name)
    shutil.copy(fsdd_dir / "3_theo_0.wav", root / "manifest.parquet.wav")
    separate_archive(tiny_model_url, str(root), str(out), n_speakers=2)
    manifest = read_manifest(str(out)).set_index("relative_path")
    assert (manifest["status"] == "done").all()
    assert manifest.loc["manifest.parquet.wav", "output_stem"] == "manifest.parquet_wav"  # not the manifest's name
    stamp = job_settings(tiny_model_url, WindowConfig())

    def todo_of(**kwargs):
        todo, done = plan_archive(str(root), str(out), **{"n_speakers": 2, "stamp": stamp, **kwargs})
        return sorted(item["relative_path"] for item in todo), {i["relative_path"]: i["output_stem"] for i in todo}

    assert todo_of() == ([], {})
    shutil.copy(fsdd_dir / "4_theo_0.wav", root / "a.flac")  # its plain folder a/ is a.wav's
    os.utime(root / "b.wav", ns=(1, 1))  # the same bytes, touched: size and mtime are the identity
    todo, stems = todo_of()
    assert todo == ["a.flac", "b.wav"] and stems["a.flac"] == "a_flac" and stems["b.wav"] == "b"

    other_model = tmp_path / "other.pt"
    other_model.write_bytes(open(tiny_model_url, "rb").read() + b"\0")  # another file: another checksum
    everything = sorted(["a.wav", "a.flac", "b.wav", "manifest.parquet.wav"])
    assert todo_of(stamp={**stamp, "model_sha256": storage.sha256_of(str(other_model))})[0] == everything
    assert (
        todo_of(stamp=job_settings(tiny_model_url, WindowConfig(window_seconds=4.0, overlap_seconds=1.0)))[0]
        == everything
    )
    todo, stems = todo_of(n_speakers=3)  # asking for 3 speakers redoes everything, in the same folders
    assert todo == everything and stems["a.wav"] == "a"


def test_symlinked_subfolder_of_an_archive_is_separated_and_resumes(tmp_path, fsdd_dir, tiny_model_url):
    import os

    from deepclust.archive import separate_archive

    elsewhere = tmp_path / "elsewhere" / "calls"
    elsewhere.mkdir(parents=True)
    archive = tmp_path / "archive"
    (archive / "direct").mkdir(parents=True)
    for index, target in enumerate((archive / "direct" / "a.wav", elsewhere / "b.wav")):
        sf.write(target, fsdd_mixture(fsdd_dir, 3, index), 8000)
    os.symlink(elsewhere, archive / "linked")
    out = tmp_path / "out"
    summary = separate_archive(tiny_model_url, str(archive), str(out), n_speakers=2)
    assert summary["done"] == 2 and summary["failed"] == 0
    assert (out / "linked" / "b" / "s1.wav").is_file()
    again = separate_archive(tiny_model_url, str(archive), str(out), n_speakers=2)
    assert again["already_done"] == 2 and again["separated"] == 0


def test_temporary_manifest_of_a_killed_write_is_removed_on_resume(tmp_path, fsdd_dir, tiny_model_url):
    """A SIGKILL during the manifest's atomic write leaves ``.tmp-manifest.parquet-*``; the next run's
    lock holder deletes it (seen once in a fresh-clone CI run of the kill-and-resume test)."""
    from deepclust.archive import separate_archive

    archive = tmp_path / "archive"
    archive.mkdir()
    sf.write(archive / "a.wav", fsdd_mixture(fsdd_dir, 2, 0), 8000)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".tmp-manifest.parquet-abc123").write_bytes(b"half a parquet file")
    summary = separate_archive(tiny_model_url, str(archive), str(out), n_speakers=2)
    assert summary["done"] == 1
    assert not list(out.glob(".tmp-*"))


def test_the_old_name_of_the_jobs_batch_step_still_works_and_says_its_new_name():
    """``deepclust.archive.separate_batch`` (a batch of manifest rows, not ``Separator.separate_batch``'s waveforms)
    is ``separate_job_batch`` now; the old name stays one release, with a warning naming the new one."""
    from deepclust import archive

    with pytest.warns(DeprecationWarning, match="separate_job_batch"):
        from deepclust.archive import separate_batch
    assert separate_batch is archive.separate_job_batch
