"""Kill `deepclust separate` / `separate-archive` midway (SIGKILL), rerun: the result equals an uninterrupted run.

Both commands run the one separation job: a crash loses at most the batch in flight."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from archive_fixtures import build_archive

from deepclust.archive import read_manifest

REPO = Path(__file__).resolve().parents[1]


def cli(model, input_dir, out_dir, command="separate-archive") -> list[str]:
    return [
        sys.executable,
        "-m",
        "deepclust.cli",
        command,
        "--model",
        str(model),
        "--input",
        str(input_dir),
        "--out",
        str(out_dir),
        "--speakers",
        "2",
        "--window-seconds",
        "4",
        "--overlap-seconds",
        "1",
        "--files-per-batch",
        "2",
        "--device",
        "cpu",
        "--listen",
        "0",
    ]  # no spot-check page: outputs only


def environment(**extra) -> dict:
    # One thread: the run is small, and two processes share two cores in CI.
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **extra}


def outputs_of(out_dir: Path) -> dict[str, np.ndarray]:
    return {p.relative_to(out_dir).as_posix(): sf.read(p, dtype="int16")[0] for p in sorted(out_dir.rglob("*.wav"))}


@pytest.mark.parametrize("command", ["separate-archive", "separate"])
def test_killed_run_resumes_to_the_same_outputs(command, tmp_path, tiny_model_url, fsdd_dir, librispeech_dir):
    archive = tmp_path / "in"
    expected = build_archive(archive, fsdd_dir, librispeech_dir)
    inputs = len(expected["good"]) + len(expected["bad"])

    reference = tmp_path / "reference"
    subprocess.run(
        cli(tiny_model_url, archive, reference),
        cwd=REPO,
        env=environment(),
        check=True,
        capture_output=True,
        timeout=300,
    )

    out = tmp_path / "out"
    run = subprocess.Popen(
        cli(tiny_model_url, archive, out, command),
        cwd=REPO,
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Kill it once a few batches are committed, while outputs are still being written.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and run.poll() is None:
        if len(read_manifest(str(out))) >= 6:  # rows committed so far (the append-only parts included)
            break
        time.sleep(0.01)
    os.kill(run.pid, signal.SIGKILL)
    assert run.wait(timeout=30) == -signal.SIGKILL, "the run finished before it could be killed"
    committed = read_manifest(str(out))
    assert 6 <= len(committed) < inputs
    for row in committed[committed["status"] == "done"].itertuples():  # nothing committed is lost or partial
        for url in row.outputs:
            assert sf.info(str(out / url)).frames > 0, url  # outputs are recorded relative to out
    assert (out / ".lock").exists()  # the killed run could not release its lock

    rerun = subprocess.run(
        cli(tiny_model_url, archive, out, command),
        cwd=REPO,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"completed with {len(expected['bad'])} failed inputs" in rerun.stdout
    # Committed rows were kept, not redone (failed ones are retried by design).
    kept = int((committed["status"] == "done").sum())
    assert f", {kept} already done," in rerun.stdout, rerun.stdout

    manifest = read_manifest(str(out))
    assert len(manifest) == inputs and manifest["relative_path"].is_unique
    reference_manifest = read_manifest(str(reference)).set_index("relative_path")
    for row in manifest.itertuples():
        assert row.status == reference_manifest.loc[row.relative_path, "status"]
    # Same files, same samples; nothing partial or temporary left, no lock.
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert left == sorted(p.relative_to(reference).as_posix() for p in reference.rglob("*") if p.is_file())
    kept_on_purpose = {".manifest/base-copy.parquet"}  # the manifest's copy (deepclust.storage.manifest_log.BASE_COPY)
    assert not any(part.startswith(".") for name in set(left) - kept_on_purpose for part in name.split("/"))
    resumed, uninterrupted = outputs_of(out), outputs_of(reference)
    assert resumed.keys() == uninterrupted.keys() and len(resumed) == 2 * len(expected["good"])
    for name, samples in uninterrupted.items():
        np.testing.assert_array_equal(resumed[name], samples, err_msg=name)
