"""Bad inputs get reasons a person can act on, and a recording is never called silent when it is not (issue 20).

Every fault is a real file made here (cut short, the wrong format behind the right suffix, text, zero bytes,
NaN, digital silence, a directory and a FIFO named like audio) beside a good file and an anti-phase stereo
take, run through ``deepclust separate`` on local disk and on a real S3 server (SeaweedFS on loopback). For
each input: its status, a reason that names it and no scratch copy, and nothing written for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from archive_fixtures import fsdd_mixture, upload_folder

from deepclust import storage
from deepclust.archive import read_manifest, separate_archive
from deepclust.audio import read_audio
from deepclust.audio.blocks import BlockReader
from deepclust.faults.errors import BadAudioError
from deepclust.separation.batch import separate_items
from deepclust.separation.inputs import output_stem, relative_to
from deepclust.separation.long import WindowConfig
from deepclust.separation.separator import Separator
from deepclust.storage.workspace import PREFIX as SCRATCH_PREFIX

REPO = Path(__file__).resolve().parents[1]
RATE = 8000

# relative path -> (status, phrase the reason must hold); "" = done. Inputs a job lists (regular files).
EXPECTED = {
    "good.wav": ("done", ""),
    "antiphase.wav": ("done", ""),  # right = -left: the mean cancels, the loudest channel is separated
    "wav_bytes.flac": ("done", ""),  # a whole WAV behind a .flac suffix: read by its content, as libsndfile does
    "truncated.wav": ("failed", "truncated WAV: header declares 16,000 bytes of audio, the file holds 7,956"),
    "random_bytes.flac": ("failed", "not a FLAC file: no fLaC signature"),
    "text_named.wav": ("failed", "text file named .wav, not audio"),
    "empty.wav": ("failed", "empty file (0 bytes)"),
    "nan.wav": ("failed", "1 non-finite samples (NaN or Inf), the first at 0.33 s"),
    "silent.wav": ("failed", "all-silent audio: all 2 channels are digital zero"),
    "header_only.wav": ("failed", "truncated WAV: the file ends after 30 bytes, before its audio data begins"),
}
LOCAL_ONLY = {"pipe.wav": ("failed", "a FIFO (named pipe), not a regular file")}  # S3 holds no FIFOs


def make_inputs(root: Path, good: np.ndarray) -> None:
    """The good, anti-phase and bad inputs of ``EXPECTED`` (and a FIFO and a folder named like audio)."""
    root.mkdir(parents=True)
    sf.write(root / "good.wav", good, RATE)
    sf.write(root / "antiphase.wav", np.stack([good, -good], axis=1), RATE)  # 16-bit: exactly -left
    sf.write(root / "wav_bytes.flac", good, RATE, format="WAV")
    whole = root / "whole.wav"
    sf.write(whole, np.zeros(8000, dtype=np.float32) + 0.1, RATE)  # 16,000 bytes of audio
    data = whole.read_bytes()
    whole.unlink()
    (root / "truncated.wav").write_bytes(data[:8000])
    (root / "header_only.wav").write_bytes(data[:30])
    (root / "random_bytes.flac").write_bytes(np.random.default_rng(0).bytes(4096))
    (root / "text_named.wav").write_text("these are minutes of a meeting, not a recording of it\n" * 20)
    (root / "empty.wav").write_bytes(b"")
    noisy = good.astype(np.float32).copy()
    noisy[int(0.33 * RATE)] = np.nan
    sf.write(root / "nan.wav", noisy, RATE, subtype="FLOAT")
    sf.write(root / "silent.wav", np.zeros((8000, 2), dtype=np.float32), RATE)
    (root / "folder.wav").mkdir()  # a folder named like audio: a folder, never an input of its own
    (root / "folder.wav" / "notes.txt").write_text("not audio\n")


@pytest.fixture(scope="module")
def good_mixture(fsdd_dir) -> np.ndarray:
    return fsdd_mixture(fsdd_dir, 2, 2)


def cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deepclust.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        timeout=300,
    )


def check_rows(manifest, summary: dict, expected: dict, out_url: str) -> None:
    """Each input's status; a failed one's reason names it, never a scratch copy, and nothing was written."""
    rows = manifest.set_index("relative_path")
    assert sorted(rows.index) == sorted(expected)  # the folder named like audio is no input
    failed = dict(summary["failed_inputs"])
    existing = {relative_to(u, out_url) for u in storage.list_files(out_url)} if storage.exists(out_url) else set()
    for rel, (status, phrase) in expected.items():
        row = rows.loc[rel]
        assert row["status"] == status, (rel, row["error"])
        stem = output_stem(rel)
        written = [u for u in existing if u.startswith(stem + "/")]
        if status == "done":
            assert len(row["outputs"]) == 2 and len(written) == 2, rel
            continue
        error = row["error"]
        assert error.startswith(row["input"] + ": ") and rel in error and phrase in error, (rel, error)
        assert failed[rel] == error
        for text in (error, row["error_detail"] or ""):
            assert SCRATCH_PREFIX not in text and "/input-" not in text, (rel, text)
        assert list(row["outputs"]) == [] and written == [], (rel, written)
    assert not any(u.startswith("folder") for u in existing)


def check_downmix(manifest) -> None:
    rows = manifest.set_index("relative_path")
    assert rows.loc["good.wav", "downmix"] == "mono"
    downmix = rows.loc["antiphase.wav", "downmix"]
    assert downmix.startswith("channel ") and "of 2, the loudest: the mean of the channels is" in downmix, downmix


def test_bad_inputs_on_local_disk_get_plain_reasons_and_leave_nothing(tmp_path, good_mixture, tiny_model_url):
    root, out = tmp_path / "in", tmp_path / "out"
    make_inputs(root, good_mixture)
    os.mkfifo(root / "pipe.wav")
    result = cli(
        "separate",
        "--model",
        tiny_model_url,
        "--input",
        str(root),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--summary-json",
        str(tmp_path / "summary.json"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    manifest = read_manifest(str(out))
    check_rows(manifest, summary, {**EXPECTED, **LOCAL_ONLY}, str(out))
    check_downmix(manifest)


def test_bad_inputs_on_s3_get_the_same_reasons_naming_the_object(tmp_path, good_mixture, tiny_model_url, s3_server):
    root = tmp_path / "in"
    make_inputs(root, good_mixture)
    fs = s3_server.filesystem()
    upload_folder(fs, root, f"{s3_server.bucket}/bad-inputs/in")
    input_url, out_url = s3_server.url("bad-inputs", "in"), s3_server.url("bad-inputs", "out")
    result = cli(
        "separate",
        "--model",
        tiny_model_url,
        "--input",
        input_url,
        "--out",
        out_url,
        "--device",
        "cpu",
        "--summary-json",
        str(tmp_path / "summary.json"),
        env=s3_server.env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    manifest = read_manifest(out_url)
    assert all(u.startswith(input_url + "/") for u in manifest["input"])
    check_rows(manifest, summary, EXPECTED, out_url)
    check_downmix(manifest)
    # The library's own words are kept for debugging, without the scratch copy's path.
    detail = manifest.set_index("relative_path").loc["random_bytes.flac", "error_detail"]
    assert detail == "libsndfile: Format not recognised."


def test_a_directory_named_like_audio_is_called_a_directory(tmp_path):
    folder = tmp_path / "x.wav"
    folder.mkdir()
    for read in (lambda: read_audio(folder), lambda: BlockReader(str(folder), RATE)):
        with pytest.raises(BadAudioError) as caught:
            read()
        assert caught.value.path == str(folder) and caught.value.reason.startswith("a directory, not a file")


def test_a_quiet_channel_is_not_silence_and_silence_is_below_minus_90_dbfs(tmp_path, good_mixture):
    """One LSB of 16-bit noise in both channels is silent; the same with speech in one channel is not."""
    lsb = np.where(np.arange(8000) % 2, 1, -1) / 32768
    sf.write(tmp_path / "dither.wav", np.stack([lsb, lsb], axis=1), RATE)
    with pytest.raises(BadAudioError, match=r"all-silent audio: all 2 channels are below -90 dBFS peak"):
        BlockReader(str(tmp_path / "dither.wav"), RATE)
    speech = good_mixture[:8000]
    sf.write(tmp_path / "one_live.wav", np.stack([lsb[: len(speech)], speech], axis=1), RATE)
    reader = BlockReader(str(tmp_path / "one_live.wav"), RATE)
    assert reader.downmix == "mean of 2 channels"  # the mean is 6 dB below: no cancellation
    reader.close()


def test_blocks_and_whole_file_make_the_same_channel_choice(tmp_path, good_mixture, monkeypatch):
    """An anti-phase file read in blocks equals ``read_audio``: the choice is made once, for the whole file,
    also when its first blocks are silence (here: survey blocks of 1,000 frames, the first eight silent)."""
    import deepclust.audio.blocks

    monkeypatch.setattr(deepclust.audio.blocks, "SURVEY_FRAMES", 1000)
    take = np.concatenate([np.zeros(RATE), good_mixture, good_mixture])  # begins in silence
    sf.write(tmp_path / "long.flac", np.stack([0.5 * take, -0.5 * take], axis=1), RATE)
    whole, _ = read_audio(tmp_path / "long.flac")
    assert np.abs(whole).max() > 0.05  # the left channel, not the mean (digital zero)
    reader = BlockReader(str(tmp_path / "long.flac"), RATE)
    assert reader.downmix.startswith("channel 1 of 2, the loudest")
    for start, end in [(0, 500), (RATE - 100, RATE + 3000), (len(whole) - 700, len(whole))]:
        np.testing.assert_allclose(reader.read(start, end), whole[start:end], atol=1e-6)
    reader.close()


def test_channel_option_chooses_the_channel_everywhere_and_is_part_of_the_settings(
    tmp_path, good_mixture, tiny_model_url
):
    """``--channel 2`` reaches short inputs and long ones (windows), is named in the row and in its settings,
    and a rerun without it separates again (other outputs)."""
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    long_take = np.concatenate([good_mixture] * 3)
    sf.write(root / "short.wav", np.stack([good_mixture, 0.3 * good_mixture[::-1]], axis=1), RATE)
    sf.write(root / "long.wav", np.stack([long_take, 0.3 * long_take[::-1]], axis=1), RATE)
    sf.write(root / "mono.wav", good_mixture, RATE)
    separator = Separator(tiny_model_url, device="cpu")
    window = WindowConfig(window_seconds=1.0, overlap_seconds=0.25)
    summary = separate_archive(separator, str(root), str(out), window=window, channel=2)
    rows = read_manifest(str(out)).set_index("relative_path")
    assert summary["failed"] == 0 and (rows["status"] == "done").all(), rows["error"]
    assert rows.loc["long.wav", "windows"] > 1
    for rel in ("short.wav", "long.wav"):
        assert rows.loc[rel, "downmix"] == "channel 2 of 2, chosen by --channel"
        assert json.loads(rows.loc[rel, "settings"])["channel"] == 2
    assert rows.loc["mono.wav", "downmix"] == "mono"
    again = separate_archive(separator, str(root), str(out), window=window)
    assert again["separated"] == 3 and again["already_done"] == 0
    assert "channel" not in json.loads(read_manifest(str(out)).set_index("relative_path").loc["long.wav", "settings"])

    # A channel the file does not have, or a silent one, is the user's to fix: said so, nothing written.
    sf.write(root / "right_dead.wav", np.stack([good_mixture, 0 * good_mixture], axis=1), RATE)
    items = [
        {"relative_path": "right_dead.wav", "input": str(root / "right_dead.wav"), "n_speakers": 2},
        {"relative_path": "short.wav", "input": str(root / "short.wav"), "n_speakers": 2},
    ]
    dead, _ = separate_items(separator, items, str(tmp_path / "out3"), window, channel=2)
    assert dead["status"] == "failed" and "channel 2 of 2, chosen by --channel, is silent" in dead["error"]
    three = separate_items(separator, items[1:], str(tmp_path / "out4"), window, channel=3)[0]
    assert three["status"] == "failed" and "has 2 channels: --channel 3 names none of them" in three["error"]
    assert not (tmp_path / "out3" / "right_dead").exists() and not (tmp_path / "out4" / "short").exists()


def test_the_seven_sph2pipe_files_all_separate(corpora_dir, tmp_path, tiny_model_url):
    """Four of LDC's sph2pipe test files hold a second channel that is the first with its polarity inverted:
    they separate from their first channel, as the one-channel files of the same utterance do."""
    root = tmp_path / "in"
    root.mkdir()
    for path in sorted((corpora_dir / "sphere-shorten").glob("*.sph")):
        (root / path.name).symlink_to(path)
    out = tmp_path / "out"
    summary = separate_archive(Separator(tiny_model_url, device="cpu"), str(root), str(out))
    rows = read_manifest(str(out)).set_index("relative_path")
    assert summary["done"] == 7 and summary["failed"] == 0, rows["error"]
    for rel in rows.index:
        expected = "mono" if "_1" in rel else "channel 1 of 2, the loudest: the mean of the channels is "
        assert rows.loc[rel, "downmix"].startswith(expected), (rel, rows.loc[rel, "downmix"])
    # The pcm pair holds the same samples in channel 1: the same outputs.
    one = [sf.read(out / "123_1pcle_shn" / f"s{k}.wav")[0] for k in (1, 2)]
    two = [sf.read(out / "123_2pcle_shn" / f"s{k}.wav")[0] for k in (1, 2)]
    np.testing.assert_allclose(np.stack(one), np.stack(two), atol=1e-4)
