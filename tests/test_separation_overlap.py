"""Reading and writing behind the network (issue 17) changes no output and loses no failure."""

from __future__ import annotations

import re

import numpy as np
import soundfile as sf
from archive_fixtures import FSDD_SPEAKERS

from deepclust.audio import read_audio, resample
from deepclust.separation.batch import separate_items
from deepclust.separation.inputs import input_manifest
from deepclust.separation.long import WindowConfig
from deepclust.separation.separator import Separator

# Groups of 2 short inputs per forward: 7 good inputs make 4 groups, so writes overlap three forwards.
WINDOW = WindowConfig(window_seconds=4.0, overlap_seconds=1.0, windows_per_batch=2)


def _untokened(message: str) -> str:
    return re.sub(r"\.tmp-[0-9a-f]+-", ".tmp-", message)


def test_overlapped_writes_give_the_same_outputs_and_rows_and_a_failed_write_names_its_input(
    tmp_path, fsdd_dir, tiny_model_url
):
    root = tmp_path / "in"
    root.mkdir()
    for i in range(7):
        a = read_audio(fsdd_dir / f"{i}_{FSDD_SPEAKERS[i % 6]}_{i + 2}.wav")[0]
        b = read_audio(fsdd_dir / f"{(i + 4) % 10}_{FSDD_SPEAKERS[(i + 1) % 6]}_{i + 9}.wav")[0]
        n = max(len(a), len(b))
        sf.write(root / f"mix_{i}.wav", 0.5 * (np.pad(a, (0, n - len(a))) + np.pad(b, (0, n - len(b)))), 8000)
    (root / "broken.wav").write_bytes(b"RIFF....WAVEfmt not really audio")
    # Two long inputs (5 windows of 4 s, 3 groups of 2): read one group ahead; the second cannot be written.
    long = np.resize(np.concatenate([sf.read(root / f"mix_{i}.wav")[0] for i in range(7)]), 14 * 8000)
    sf.write(root / "long.flac", resample(long, 8000, 16000), 16000)  # resampled to 8 kHz block by block
    sf.write(root / "long_unwritable.wav", long, 8000)
    items = input_manifest(str(root), 2).to_dict("records")
    separator = Separator(tiny_model_url, device="cpu", precision="fp32")

    results = {}
    for overlap in (False, True):
        out = tmp_path / f"out-{overlap}"
        # An output path that cannot be written (a folder sits where s1.wav goes): the write fails there.
        (out / "mix_3" / "s1.wav").mkdir(parents=True)
        (out / "long_unwritable" / "s2.wav").mkdir(parents=True)
        rows = separate_items(separator, items, str(out), WINDOW, overlap_io=overlap)
        results[overlap] = (out, {row["relative_path"]: row for row in rows})

    (plain_out, plain), (overlapped_out, overlapped) = results[False], results[True]
    assert list(plain) == list(overlapped) == [item["relative_path"] for item in items]  # one row each, in order
    for rel, row in overlapped.items():
        assert row["status"] == plain[rel]["status"], rel
        # The same reason (a temporary file's random token aside).
        assert _untokened(row["error"]) == _untokened(plain[rel]["error"].replace(str(plain_out), str(overlapped_out)))
    broken = overlapped["broken.wav"]
    assert broken["status"] == "failed" and str(root / "broken.wav") in broken["error"]
    for rel in ("mix_3.wav", "long_unwritable.wav"):
        failed_write = overlapped[rel]
        assert failed_write["status"] == "failed" and str(root / rel) in failed_write["error"], failed_write
    done = [rel for rel, row in overlapped.items() if row["status"] == "done"]
    assert len(done) == 7 and overlapped["long.flac"]["windows"] == 5
    for rel in done:
        assert overlapped[rel]["outputs"] == plain[rel]["outputs"]
        for name in overlapped[rel]["outputs"]:
            written, expected = sf.read(overlapped_out / name)[0], sf.read(plain_out / name)[0]
            assert np.array_equal(written, expected), name
    # No temporary file left behind by either writer.
    assert not [p for p in overlapped_out.rglob(".tmp-*")] and not [p for p in plain_out.rglob(".tmp-*")]
