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
    assert (table["mixtures"] == 200).all()
