"""The ship rule's arithmetic: paired SDRi differences per test set, with an interval that tells a real gain
from noise (benchmarks/compare_quality.py)."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from compare_quality import paired  # noqa: E402

DIFFICULTY = np.random.default_rng(1).normal(5, 3, 200)  # the same 200 mixtures in both files
JITTER = np.where(np.arange(200) % 2 == 0, 0.3, -0.3)  # per-mixture changes that average to exactly zero


def _rows(shift_by_set: dict, jitter: bool) -> pd.DataFrame:
    rows = []
    for test_set, shift in shift_by_set.items():
        for i, value in enumerate(DIFFICULTY + shift + (JITTER if jitter else 0)):
            rows.append({"test_set": test_set, "num_speakers": 2, "system": "mask head", "mixture": i, "sdri": value})
            rows.append({"test_set": test_set, "num_speakers": 2, "system": "IBM", "mixture": i, "sdri": 15.0})
    return pd.DataFrame(rows)


def test_paired_differences_call_a_real_gain_better_a_loss_worse_and_noise_level():
    baseline = _rows({"a": 0.0, "b": 0.0, "c": 0.0}, jitter=False)
    candidate = _rows({"a": 0.1, "b": -0.1, "c": 0.0}, jitter=True)  # +-0.3 dB per mixture around the shift
    table = paired(baseline, candidate).set_index("test set")
    assert table.loc["a", "verdict"] == "better" and abs(table.loc["a", "difference"] - 0.1) < 1e-9
    assert table.loc["b", "verdict"] == "worse"
    assert table.loc["c", "verdict"] == "level" and table.loc["c", "95 % interval"] == "-0.04 .. +0.04"
    assert set(table["inference"]) == {"mask head"}  # the oracle rows are left out
    assert (table.loc[["a", "b", "c"], "mixtures"] == 200).all()
    assert table.loc["b + c (pooled)", "mixtures"] == 400  # the sets never trained on, where auto is chosen


def test_the_corpora_of_set_b_are_compared_alone_pooled_and_with_c():
    sets = {
        "b-fsdd: never trained on (fsdd)": 0.0,
        "b-msc: never trained on (msc-malayalam)": 0.0,
        "c: held out, room + noise": 0.0,
    }
    candidate = {
        "b-fsdd: never trained on (fsdd)": 0.2,
        "b-msc: never trained on (msc-malayalam)": 0.4,
        "c: held out, room + noise": -0.3,
    }
    table = paired(_rows(sets, jitter=False), _rows(candidate, jitter=True)).set_index("test set")
    assert table.loc["b (pooled)", "mixtures"] == 400 and abs(table.loc["b (pooled)", "difference"] - 0.3) < 1e-9
    assert table.loc["b + c (pooled)", "mixtures"] == 600
    assert abs(table.loc["b + c (pooled)", "difference"] - 0.1) < 1e-9
    assert table.loc["c: held out, room + noise", "verdict"] == "worse"


def test_a_file_from_before_set_b_had_two_corpora_pairs_on_fsdd():
    old = _rows({"b: never trained on (FSDD)": 0.0}, jitter=False)
    new = _rows({"b-fsdd: never trained on (fsdd)": 0.5, "b-msc: never trained on (msc-malayalam)": 0.0}, jitter=False)
    table = paired(old, new)
    assert list(table["test set"]) == ["b-fsdd: never trained on (fsdd)"]  # no pool of one set
    assert abs(table["difference"].iloc[0] - 0.5) < 1e-9


def test_without_set_c_the_pool_of_b_and_c_is_not_repeated():
    sets = {"b-fsdd: never trained on (fsdd)": 0.0, "b-msc: never trained on (msc-malayalam)": 0.0}
    table = paired(_rows(sets, jitter=False), _rows(sets, jitter=True))
    assert list(table["test set"]).count("b (pooled)") == 1 and "b + c (pooled)" not in set(table["test set"])


def test_held_out_sets_are_split_into_talkers_of_one_corpus_and_of_different_corpora():
    baseline = _rows({"a: held out": 0.0, "b-fsdd: never trained on (fsdd)": 0.0}, jitter=False)
    candidate = _rows({"a: held out": 0.0, "b-fsdd: never trained on (fsdd)": 0.0}, jitter=False)
    # The first 50 mixtures of (a) pair two talkers of one corpus; the candidate gains 0.4 dB on them only.
    for frame in (baseline, candidate):
        pairing = np.where(frame["mixture"] < 50, "x+x", "x+y")
        frame["corpora"] = np.where(frame["test_set"].str.startswith("a"), pairing, "fsdd+fsdd")
    candidate.loc[candidate["test_set"].str.startswith("a") & (candidate["corpora"] == "x+x"), "sdri"] += 0.4
    table = paired(baseline, candidate).set_index("test set")
    one, mixed = table.loc["a, talkers of one corpus"], table.loc["a, talkers of different corpora"]
    assert one["mixtures"] == 50 and abs(one["difference"] - 0.4) < 1e-9
    assert mixed["mixtures"] == 150 and abs(mixed["difference"]) < 1e-9
    assert not any(name.startswith("b-fsdd,") for name in table.index)  # set (b) is one corpus by construction
    assert abs(table.loc["a: held out", "difference"] - 0.1) < 1e-9
