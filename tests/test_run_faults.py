"""Faults of the run itself stop it in one plain line and are never blamed on an input (issue 29).

Each fault is real: a CPU whose oneDNN has no bfloat16 LSTM (``ONEDNN_MAX_CPU_ISA=AVX2`` makes any x86-64 CPU
one, and changes nothing on a CPU that already is), a tmpfs that fills up, a manifest cut short."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from archive_fixtures import fsdd_mixture, write_wav
from test_archive_resume import environment

from deepclust.archive import read_manifest

REPO = Path(__file__).resolve().parents[1]
# What oneDNN runs on a CPU with AVX2 and nothing newer (AMD Zen 3, Intel Haswell-Broadwell): no bf16 LSTM.
AVX2_ONLY = {"ONEDNN_MAX_CPU_ISA": "AVX2"}


def separate(model, input_dir, out_dir, *flags, env=None, timeout=300) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "deepclust.cli",
        "separate",
        "--model",
        str(model),
        "--input",
        str(input_dir),
        "--out",
        str(out_dir),
        "--files-per-batch",
        "2",
        "--device",
        "cpu",
        "--listen",
        "0",
        *flags,
    ]
    return subprocess.run(command, cwd=REPO, env=env or environment(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def mixtures(tmp_path_factory, fsdd_dir) -> Path:
    """Six real two-talker mixtures (FSDD digits over each other), 8 kHz WAV, all one second long: a group of
    them goes through the network as one unpacked batch, the oneDNN path a CPU without bf16 cannot take."""
    folder = tmp_path_factory.mktemp("mixtures")
    for index in range(6):
        mixture = fsdd_mixture(fsdd_dir, index % 10, index)[:8000]
        write_wav(folder / f"m{index:03d}.wav", np.pad(mixture, (0, 8000 - len(mixture))))
    return folder


def one_plain_line(stderr: str) -> str:
    """The run's own words on stderr (log lines aside): exactly one line, no traceback."""
    assert "Traceback" not in stderr, stderr
    said = [line for line in stderr.splitlines() if line.startswith("deepclust ")]
    assert len(said) == 1, stderr
    return said[0]


def test_bf16_on_a_cpu_without_bf16_is_refused_before_any_input(mixtures, tmp_path, tiny_model_url):
    result = separate(tiny_model_url, mixtures, tmp_path / "out", "--precision", "bf16", env=environment(**AVX2_ONLY))
    assert result.returncode == 2, result.stderr
    line = one_plain_line(result.stderr)
    assert "cannot run the network in bfloat16" in line and "--precision auto" in line and "fp32" in line
    assert not (tmp_path / "out").exists()  # nothing started: no lock, no manifest, no row blaming an input


def deepclust_on_avx2(*arguments: str) -> subprocess.CompletedProcess:
    """``python -m deepclust.cli ARGUMENTS`` with oneDNN capped at AVX2 (no bf16 LSTM, as on an AVX2-only CPU)."""
    command = [sys.executable, "-m", "deepclust.cli", *arguments]
    return subprocess.run(command, cwd=REPO, env=environment(**AVX2_ONLY), capture_output=True, text=True, timeout=300)


def test_training_refuses_bf16_on_a_cpu_without_bf16_before_reading_any_data(tmp_path):
    corpus, out = str(tmp_path / "no-such-corpus"), str(tmp_path / "run")
    result = deepclust_on_avx2("train-dynamic", "--source", corpus, "--precision", "bf16", "--out", out)
    assert result.returncode == 2, result.stderr  # (a missing corpus would have been another error)
    assert "cannot run the network in bfloat16" in one_plain_line(result.stderr)


def test_auto_runs_float32_where_bf16_cannot_run_and_records_it(mixtures, tmp_path, tiny_model_url):
    result = separate(tiny_model_url, mixtures, tmp_path / "out", env=environment(**AVX2_ONLY))
    assert result.returncode == 0, result.stderr
    manifest = read_manifest(str(tmp_path / "out"))
    assert (manifest["status"] == "done").all() and len(manifest) == 6
    assert all('"precision": "fp32"' in settings for settings in manifest["settings"])


# A run whose network cannot run at all: a separator told fp32 (so nothing refuses it up front), then made to
# run its network in bf16 on a CPU whose oneDNN has none. The fault is the run's: every input would meet it.
BROKEN_NETWORK_RUN = textwrap.dedent("""
    import sys, torch
    from deepclust.archive import separate_archive
    from deepclust.faults.errors import NetworkFaultError
    from deepclust.separation.separator import Separator
    model, folder, out = sys.argv[1:4]
    separator = Separator(model, device="cpu", precision="fp32")
    separator.autocast_dtype = torch.bfloat16  # the injected fault: a bf16 network where oneDNN has no bf16 LSTM
    try:
        separate_archive(separator, folder, out, model_url=model, files_per_batch=2)
    except NetworkFaultError as error:
        print("STOPPED:", error)
        sys.exit(4)
    sys.exit(0)
""")


def test_a_network_that_fails_on_any_input_stops_the_run_and_marks_no_input_failed(mixtures, tmp_path, tiny_model_url):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-c", BROKEN_NETWORK_RUN, tiny_model_url, str(mixtures), str(out)],
        cwd=REPO,
        env=environment(**AVX2_ONLY),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 4, result.stdout + result.stderr
    assert "the network fails on any input" in result.stdout and "m000.wav" in result.stdout
    manifest = read_manifest(str(out))
    assert not (manifest["status"] == "failed").any(), manifest[["relative_path", "status", "error"]]
    assert len(manifest) == 0  # nothing was done, and nothing is recorded as if it had been tried


def test_an_input_the_network_cannot_take_is_still_that_inputs_failed_row(tmp_path, tiny_model_url):
    """The other side of the line: an input too long to hold in memory is the input's fault (the known-good
    input separates), so it becomes a failed row and the batch goes on."""
    from deepclust.separation.batch import check_network
    from deepclust.separation.separator import Separator

    separator = Separator(tiny_model_url, device="cpu", precision="fp32")
    check_network(separator, 2, MemoryError("cannot allocate 3 TB"), "huge.wav")  # returns: not the run's


def _mount_tmpfs_script(size: str, body: str) -> list[str]:
    """``body`` in a shell where ``$MNT`` is a fresh tmpfs of ``size``: as root directly, else in a user
    namespace of its own (``unshare -rm``)."""
    script = f'set -e; MNT=$(mktemp -d); mount -t tmpfs -o size={size} tmpfs "$MNT"; {body}'
    if os.geteuid() == 0:
        return ["unshare", "-m", "sh", "-c", script]
    return ["unshare", "-rm", "sh", "-c", script]


def _can_mount_tmpfs() -> str:
    if not shutil.which("unshare"):
        return "no unshare(1) here to mount a small tmpfs"
    probe = subprocess.run(_mount_tmpfs_script("1m", "true"), capture_output=True, text=True)
    return "" if probe.returncode == 0 else f"cannot mount a tmpfs here: {probe.stderr.strip()}"


@pytest.mark.skipif(bool(_can_mount_tmpfs()), reason=_can_mount_tmpfs() or "tmpfs")
def test_a_full_disk_stops_the_run_in_one_line_and_a_rerun_after_freeing_space_finishes(
    tmp_path, fsdd_dir, tiny_model_url
):
    folder = tmp_path / "long"
    folder.mkdir()
    for index in range(12):  # 12 inputs of ~6 s: their outputs (~190 KB each) overflow a 1 MB tmpfs
        mixture = np.concatenate([fsdd_mixture(fsdd_dir, (index + k) % 10, index + k) for k in range(6)])
        write_wav(folder / f"m{index:03d}.wav", mixture)
    cli = (
        f"{sys.executable} -m deepclust.cli separate --model {tiny_model_url} --input {folder} "
        f'--out "$MNT/out" --files-per-batch 2 --device cpu --listen 0'
    )
    body = (
        f"{cli} 2> {tmp_path}/first.err && echo FIRST=0 || echo FIRST=$?; "
        f'cp -r "$MNT/out" {tmp_path}/after-full; '
        f'mount -o remount,size=64m "$MNT"; {cli} > {tmp_path}/second.out 2>&1; echo SECOND=$?; '
        f'cp -r "$MNT/out" {tmp_path}/after-rerun'
    )
    result = subprocess.run(
        _mount_tmpfs_script("1m", body), cwd=REPO, env=environment(), capture_output=True, text=True, timeout=600
    )
    assert "FIRST=4" in result.stdout, (result.stdout, (tmp_path / "first.err").read_text())
    line = one_plain_line((tmp_path / "first.err").read_text())
    assert "output location is full" in line and "inputs are done and kept" in line and "run the same command" in line
    stopped = read_manifest(str(tmp_path / "after-full"))
    assert not (stopped["status"] == "failed").any()  # nothing blamed on an input
    done_before = int((stopped["status"] == "done").sum())
    assert "SECOND=0" in result.stdout, (tmp_path / "second.out").read_text()
    finished = read_manifest(str(tmp_path / "after-rerun"))
    assert len(finished) == 12 and (finished["status"] == "done").all()
    assert f", {done_before} already done," in (tmp_path / "second.out").read_text()


def test_a_truncated_manifest_is_rebuilt_from_its_copy_and_no_finished_input_is_redone(
    mixtures, tmp_path, tiny_model_url
):
    out = tmp_path / "out"
    assert separate(tiny_model_url, mixtures, out).returncode == 0
    manifest = out / "manifest.parquet"
    manifest.write_bytes(manifest.read_bytes()[: manifest.stat().st_size // 2])  # as a failing disk leaves it
    rerun = separate(tiny_model_url, mixtures, out)
    assert rerun.returncode == 0, rerun.stderr
    assert "0 separated, 6 already done" in rerun.stdout, rerun.stdout + rerun.stderr
    assert "damaged" in rerun.stderr and "manifest.parquet" in rerun.stderr
    assert len(read_manifest(str(out))) == 6  # and manifest.parquet is whole again


def test_a_manifest_damaged_beyond_its_copy_stops_the_run_naming_the_file_and_what_to_do(
    mixtures, tmp_path, tiny_model_url
):
    out = tmp_path / "out"
    assert separate(tiny_model_url, mixtures, out).returncode == 0
    for damaged in (out / "manifest.parquet", out / ".manifest" / "base-copy.parquet"):
        damaged.write_bytes(damaged.read_bytes()[:100])
    rerun = separate(tiny_model_url, mixtures, out)
    assert rerun.returncode == 4, rerun.stderr
    line = one_plain_line(rerun.stderr)
    assert "manifest.parquet is damaged" in line and "move it aside" in line
    assert not list(out.glob("*/s1.wav.*"))  # nothing new was written: it stopped before any input


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid``, from each process's parent in /proc/<pid>/stat (any Linux kernel)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "(command name)": state, ppid, ...
        except (OSError, IndexError):
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [child for child, its_parent in parents.items() if its_parent == parent]
        found += kids
        frontier += kids
    return found


def test_a_worker_process_killed_mid_run_stops_it_in_one_line_and_the_rerun_finishes(
    tmp_path, fsdd_dir, tiny_model_url
):
    import signal
    import time

    folder = tmp_path / "many"
    for index in range(80):  # enough batches that the kill lands while the workers are busy
        write_wav(folder / f"m{index:03d}.wav", fsdd_mixture(fsdd_dir, index % 10, index))
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "deepclust.cli",
        "separate",
        "--model",
        tiny_model_url,
        "--input",
        str(folder),
        "--out",
        str(out),
        "--files-per-batch",
        "2",
        "--device",
        "cpu",
        "--listen",
        "0",
        "--workers",
        "2",
    ]
    run = subprocess.Popen(
        command, cwd=REPO, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and run.poll() is None:
        parts = out / ".manifest" / "parts"
        workers = (
            [pid for pid in _children(run.pid) if b"multiprocessing" in Path(f"/proc/{pid}/cmdline").read_bytes()]
            if parts.is_dir()
            else []
        )
        if parts.is_dir() and any(parts.iterdir()) and workers:
            os.kill(workers[-1], signal.SIGKILL)  # as the out-of-memory killer would
            break
        time.sleep(0.05)
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 4, stderr
    line = one_plain_line(stderr)
    assert "a worker process died" in line and "inputs are done and kept" in line
    stopped = read_manifest(str(out))
    assert not (stopped["status"] == "failed").any()
    rerun = separate(tiny_model_url, folder, out)
    assert rerun.returncode == 0, rerun.stderr
    assert len(read_manifest(str(out))) == 80


def test_the_recorded_precision_is_the_one_of_the_device_the_network_runs_on(tiny_model_url):
    """``job_settings`` resolves "auto" on the job's device: on a CUDA host told ``device="cpu"`` the rows say
    what the CPU ran (bf16 on AMX), not what CUDA would have (fp32)."""
    from deepclust.archive import job_settings
    from deepclust.model.device import inference_precision
    from deepclust.separation.long import WindowConfig

    on_cpu = job_settings(tiny_model_url, WindowConfig(), precision="auto", device="cpu")["precision"]
    on_cuda = job_settings(tiny_model_url, WindowConfig(), precision="auto", device="cuda")["precision"]
    assert on_cpu == inference_precision("auto", "cpu") and on_cuda == "fp32"


def test_the_recipe_separation_key_holds_its_precision():
    from deepclust.pipeline.plan import recipe_params
    from deepclust.stages.separate import SeparateConfig

    assert recipe_params(SeparateConfig())["precision"] == "fp32"
    assert recipe_params(SeparateConfig(precision="bf16")) != recipe_params(SeparateConfig())


def test_a_recipe_asking_for_bf16_on_a_cpu_without_it_stops_before_its_first_stage(tmp_path):
    result = deepclust_on_avx2(
        "reproduce",
        "--corpus",
        "demo",
        "--preset",
        "quick",
        "--set",
        "train.precision=bf16",
        "--no-prefect",
        "--out",
        str(tmp_path / "run"),
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "cannot run the network in bfloat16" in one_plain_line(result.stderr)
    assert not (tmp_path / "run").exists()  # no stage ran: no corpus was synthesised
