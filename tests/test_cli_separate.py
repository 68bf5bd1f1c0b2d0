"""`deepclust separate` on a folder of 8 kHz and 16 kHz mixtures, and `--help` on every command."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from deepclust.audio import read_audio, resample
from deepclust.features.extract import FeatureConfig
from deepclust.features.normalisation import FeatureStats
from deepclust.model.blstm import DeepClusteringNet, ModelConfig
from deepclust.model.checkpoint import save_model
from deepclust.separation.inputs import safe_relative_stem

REPO = Path(__file__).resolve().parents[1]
COMMANDS = [
    "corpus",
    "mix",
    "features",
    "train",
    "train-dynamic",
    "export-model",
    "separate",
    "separate-archive",
    "compare",
    "evaluate",
    "reproduce",
    "demo",
]


def run_cli(*args, check=True):
    return subprocess.run(
        [sys.executable, "-m", "deepclust.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=check,
        timeout=300,
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = run_cli(command, "--help")
    assert result.returncode == 0 and "usage: deepclust " + command in result.stdout


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """An untrained network in a real model file: enough to prove the file plumbing, not quality."""
    import torch

    torch.manual_seed(0)
    model = DeepClusteringNet(ModelConfig(hidden=16, layers=1, emb_dim=4))
    url = tmp_path_factory.mktemp("model") / "model.pt"
    save_model(str(url), model, FeatureStats(np.zeros(129), np.ones(129)), FeatureConfig().to_dict())
    return url


def test_separate_folder_of_8k_and_16k_mixtures(tmp_path, fsdd_dir, tiny_model):
    a, _ = read_audio(fsdd_dir / "1_jackson_3.wav")
    b, _ = read_audio(fsdd_dir / "7_nicolas_5.wav")
    n = min(len(a), len(b))
    mixture = 0.5 * (a[:n] + b[:n])
    inputs = tmp_path / "in"
    (inputs / "calls" / "day 1").mkdir(parents=True)
    sf.write(inputs / "m8k.wav", mixture, 8000)
    sf.write(inputs / "calls" / "day 1" / "m16k.flac", resample(mixture, 8000, 16000), 16000)
    sf.write(inputs / "calls" / "stereo.wav", np.stack([mixture, mixture], axis=1), 8000)
    (inputs / "calls" / "broken.wav").write_bytes(b"RIFF....not really")
    sf.write(inputs / "silent.wav", np.zeros(8000, dtype=np.float32), 8000)
    (inputs / "notes.txt").write_text("not audio, not listed")

    out = tmp_path / "out"
    result = run_cli(
        "separate", "--model", str(tiny_model), "--input", str(inputs), "--out", str(out), "--speakers", "2"
    )
    assert "3 separated, 0 already done, 2 failed" in result.stdout, result.stdout + result.stderr

    manifest = pd.read_parquet(out / "manifest.parquet")
    assert {"input", "status", "error", "outputs"} <= set(manifest.columns)
    by_name = {Path(p).name: row for p, row in zip(manifest["input"], manifest.to_dict("records"))}
    assert set(by_name) == {"m8k.wav", "m16k.flac", "stereo.wav", "broken.wav", "silent.wav"}
    assert by_name["broken.wav"]["status"] == "failed" and "broken.wav" in by_name["broken.wav"]["error"]
    assert by_name["silent.wav"]["status"] == "failed" and "silent" in by_name["silent.wav"]["error"]
    assert by_name["m16k.flac"]["sample_rate"] == 16000

    expected = {"m8k": out / "m8k", "m16k": out / "calls" / "day_1" / "m16k", "stereo": out / "calls" / "stereo"}
    for name, folder in expected.items():
        for k in (1, 2):
            separated, sr = sf.read(folder / f"s{k}.wav")
            assert sr == 8000 and abs(len(separated) - n) <= 1, (name, len(separated), n)
    row = by_name["m8k.wav"]
    assert [Path(p).name for p in row["outputs"]] == ["s1.wav", "s2.wav"]


def test_single_file_input_and_three_speakers(tmp_path, fsdd_dir, tiny_model):
    out = tmp_path / "out"
    run_cli(
        "separate",
        "--model",
        str(tiny_model),
        "--input",
        str(fsdd_dir / "2_theo_9.wav"),
        "--out",
        str(out),
        "--speakers",
        "3",
    )
    assert sorted(p.name for p in (out / "2_theo_9").iterdir()) == ["s1.wav", "s2.wav", "s3.wav"]


def test_the_listen_line_counts_the_inputs_the_page_holds_not_the_flag(tmp_path, fsdd_dir, tiny_model):
    """``--listen 6`` over two inputs makes a page of two; a rerun that separates nothing makes a page of none
    (issue 29: the line used to say 6 both times)."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("1_theo_0.wav", "2_theo_9.wav"):
        (inputs / name).write_bytes((fsdd_dir / name).read_bytes())
    command = [
        "separate",
        "--model",
        str(tiny_model),
        "--input",
        str(inputs),
        "--out",
        str(tmp_path / "out"),
        "--device",
        "cpu",
        "--listen",
        "6",
    ]
    first, again = run_cli(*command), run_cli(*command)
    assert "2 separated, 0 already done" in first.stdout and "(a spot check of 2 inputs;" in first.stdout, first.stdout
    assert "0 separated, 2 already done" in again.stdout and "(a spot check of 0 inputs;" in again.stdout, again.stdout


@pytest.mark.parametrize(
    "name, expected",
    [
        ("/data/in/a/b.wav", "a/b"),
        ("/data/in/../../etc/passwd.wav", "etc/passwd"),
        ("/data/in/we ird$name.flac", "we_ird_name"),
        ("/data/in/.hidden.wav", "hidden"),
    ],
)
def test_output_names_cannot_escape_the_output_folder(name, expected):
    assert safe_relative_stem(name, "/data/in") == expected


def test_prefect_path_on_an_offline_machine_logs_no_telemetry_error(tmp_path, fsdd_dir, tiny_model):
    """The CLI turns the ephemeral server's analytics off unless the user set the variable (with it on, this
    machine logs ``ERROR ... send_telemetry_heartbeat``: no network)."""
    import os

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.wav").write_bytes((fsdd_dir / "1_theo_0.wav").read_bytes())
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PREFECT_API_URL", "PREFECT_SERVER_ANALYTICS_ENABLED", "DO_NOT_TRACK")
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "separate",
            "--model",
            str(tiny_model),
            "--input",
            str(tmp_path / "in"),
            "--out",
            str(tmp_path / "out"),
            "--prefect",
            "--device",
            "cpu",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**env, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 separated" in result.stdout
    output = result.stdout + result.stderr
    assert "ERROR" not in output and "telemetry" not in output, output[-3000:]


def test_prefect_defaults_fill_only_what_the_user_left_unset(monkeypatch):
    from deepclust.cli import PREFECT_DEFAULTS, prefect_defaults

    for name in PREFECT_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "7")
    prefect_defaults()
    import os

    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "7"  # the user's choice stands
    monkeypatch.delenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS")
    prefect_defaults()
    assert int(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]) >= 60
