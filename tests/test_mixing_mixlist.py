"""Mix lists: the official wsj0-2mix text format, recipe mixture names, and list generation."""

import numpy as np
import pandas as pd
import pytest

from deepclust.mixing.mixlist import (
    MixEntry,
    format_snr,
    generate_mix_lists,
    mixture_id,
    read_mix_list,
    write_mix_list,
)

OFFICIAL_LINES = """\
wsj0/si_tr_s/40n/40na010x.wv1 1.9857 wsj0/si_tr_s/017/017o0317.wv1 -1.9857
wsj0/si_tr_s/01t/01to030v.wv1 0.54422   wsj0/si_tr_s/20d/20do010c.wv1 -0.54422

wsj0/si_dt_05/050/050a0501.wv1 2.2 wsj0/si_dt_05/053/053c0104.wv1 -2.2 wsj0/si_dt_05/051/051o0207.wv1 0.3
"""


def fsdd_manifest(fsdd_dir, test_speakers=("theo", "yweweler"), per_speaker=12):
    """A corpus manifest (corpora columns) over FSDD: ``{digit}_{speaker}_{index}.wav``, 8 kHz."""
    rows = []
    for path in sorted(fsdd_dir.glob("*.wav")):
        digit, speaker, index = path.stem.split("_")
        if int(index) >= per_speaker // 10 + 1 or int(digit) >= 10:
            continue
        rows.append(
            dict(
                utterance_id=path.stem,
                path=str(path),
                speaker=speaker,
                gender="m",
                duration=0.5,
                sample_rate=8000,
                subset="test" if speaker in test_speakers else "train",
            )
        )
    return pd.DataFrame(rows)


def test_reads_official_format(tmp_path):
    url = tmp_path / "mix_2_spk_tt.txt"
    url.write_text(OFFICIAL_LINES)
    entries = read_mix_list(url)
    assert entries[0] == MixEntry(("wsj0/si_tr_s/40n/40na010x.wv1", "wsj0/si_tr_s/017/017o0317.wv1"), (1.9857, -1.9857))
    assert entries[1].snrs_db == (0.54422, -0.54422)
    assert len(entries) == 3 and len(entries[2].paths) == 3  # blank line skipped, 3-speaker line read
    assert mixture_id(entries[0]) == "40na010x_1.9857_017o0317_-1.9857"  # the wsj0-2mix file name
    assert mixture_id(entries[2]) == "050a0501_2.2_053c0104_-2.2_051o0207_0.3"


def test_write_then_read_gives_identical_entries(tmp_path, fsdd_dir):
    manifest = fsdd_manifest(fsdd_dir, test_speakers=("lucas", "theo", "yweweler"))
    lists = generate_mix_lists(manifest, n_speakers=3, sizes={"tr": 40, "cv": 10, "tt": 10})
    for split, entries in lists.items():
        url = tmp_path / f"{split}.txt"
        write_mix_list(entries, url)
        assert read_mix_list(url) == entries
        assert len(url.read_text().splitlines()) == len(entries)


def test_official_lines_round_trip_verbatim(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text(OFFICIAL_LINES)
    out = tmp_path / "out.txt"
    write_mix_list(read_mix_list(source), out)
    expected = [" ".join(line.split()) for line in OFFICIAL_LINES.splitlines() if line.strip()]
    assert out.read_text().splitlines() == expected


@pytest.mark.parametrize(
    "bad_line",
    ["a.wav 1.0 b.wav", "a.wav 1.0", "a.wav one b.wav -1.0", "a.wav 1.0 b.wav nan"],
)
def test_malformed_line_names_file_and_line(tmp_path, bad_line):
    url = tmp_path / "broken.txt"
    url.write_text(f"a.wav 1.0 b.wav -1.0\n{bad_line}\n")
    with pytest.raises(ValueError, match=r"broken\.txt:2:"):
        read_mix_list(url)


def test_a_uniform_list_refuses_a_line_with_another_speaker_count_naming_it(tmp_path):
    url = tmp_path / "mix_2_spk_tt.txt"
    url.write_text(OFFICIAL_LINES)
    assert len(read_mix_list(url)) == 3  # a list may hold both counts; the recipe asks for one count a list
    with pytest.raises(ValueError, match=r"mix_2_spk_tt\.txt:4: 3 sources, but line 1 has 2"):
        read_mix_list(url, uniform=True)


def test_snr_printed_like_matlab_num2str():
    assert format_snr(1.9857) == "1.9857"
    assert format_snr(-0.450124) == "-0.45012"
    assert format_snr(2.0) == "2"
    assert format_snr(-0.0) == "0"
    assert format_snr(12.345678) == "12.3457"


def test_generated_lists_follow_recipe_protocol(fsdd_dir):
    manifest = fsdd_manifest(fsdd_dir)
    lists = generate_mix_lists(manifest, sizes={"tr": 200, "cv": 50, "tt": 60}, seed=3)
    assert {k: len(v) for k, v in lists.items()} == {"tr": 200, "cv": 50, "tt": 60}
    speaker_of = dict(zip(manifest["path"], manifest["speaker"]))
    test_speakers = set(manifest.loc[manifest["subset"] == "test", "speaker"])
    for split, entries in lists.items():
        for entry in entries:
            speakers = [speaker_of[p] for p in entry.paths]  # paths are manifest paths
            assert len(set(speakers)) == 2
            assert (set(speakers) <= test_speakers) == (split == "tt")
            assert set(speakers).isdisjoint(test_speakers) == (split != "tt")
            s1, s2 = entry.snrs_db
            assert s1 == -s2 and 0.0 <= s1 <= 2.5
    relative = np.array([e.snrs_db[0] - e.snrs_db[1] for e in lists["tr"]])
    assert relative.min() < 0.5 and relative.max() > 4.5  # uniform over 0..5 dB, not a constant
    tr_paths = {p for e in lists["tr"] for p in e.paths}
    cv_paths = {p for e in lists["cv"] for p in e.paths}
    assert tr_paths.isdisjoint(cv_paths)  # same speakers, different utterances


def test_three_speaker_lists(fsdd_dir):
    manifest = fsdd_manifest(fsdd_dir, test_speakers=("lucas", "theo", "yweweler"))
    lists = generate_mix_lists(manifest, n_speakers=3, sizes={"tr": 100, "cv": 5, "tt": 5})
    assert all(len(set(e.paths)) == 3 for e in lists["tr"])
    thirds = [e.snrs_db[2] for e in lists["tr"]]
    assert all(-2.5 <= s <= 2.5 for s in thirds) and np.std(thirds) > 0.5
    assert all(e.snrs_db[0] == -e.snrs_db[1] for e in lists["tr"])


def test_too_few_test_speakers_raises(fsdd_dir):
    manifest = fsdd_manifest(fsdd_dir, test_speakers=("theo",))
    with pytest.raises(ValueError, match="tt: need at least 2 speakers"):
        generate_mix_lists(manifest, sizes={"tr": 5, "cv": 5, "tt": 5})


def test_deterministic_for_seed_and_scaled(fsdd_dir):
    manifest = fsdd_manifest(fsdd_dir)
    sizes = {"tr": 100, "cv": 30, "tt": 20}
    a = generate_mix_lists(manifest, sizes=sizes, seed=7)
    assert a == generate_mix_lists(manifest.sample(frac=1.0, random_state=1), sizes=sizes, seed=7)
    assert a != generate_mix_lists(manifest, sizes=sizes, seed=8)
    small = generate_mix_lists(manifest, sizes=sizes, scale=0.01, seed=7)
    assert {k: len(v) for k, v in small.items()} == {"tr": 1, "cv": 1, "tt": 1}
