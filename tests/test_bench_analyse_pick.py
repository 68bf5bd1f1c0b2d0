"""The per-recording head choice analysis (benchmarks/analyse_pick.py): rules are fitted on set (a) alone and judged on
the sets they never saw, against the oracle pick."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from analyse_pick import MASK, SOFT, per_mixture, rule_scores  # noqa: E402

PICK = "pick (mask head or soft k-means, the sharper)"


def _results(soft_wins_below: float) -> pd.DataFrame:
    """Two sets of 200 mixtures; soft k-means scores 1 dB above the mask head exactly where the heads agree less
    than ``soft_wins_below``, 1 dB below elsewhere; the sharpnesses are noise."""
    rng = np.random.default_rng(0)
    rows = []
    for test_set in ("a: held out", "b-fsdd: never trained on (fsdd)"):
        for mixture in range(200):
            agreement, base = rng.uniform(0.5, 1.0), rng.normal(6, 2)
            soft = base + (1.0 if agreement < soft_wins_below else -1.0)
            seen = {"mask_sharpness": rng.uniform(), "soft_sharpness": rng.uniform(), "mask_soft_agreement": agreement}
            common = {"test_set": test_set, "mixture": mixture, "num_speakers": 2}
            rows += [common | {"system": MASK, "sdri": base}, common | {"system": SOFT, "sdri": soft}]
            rows.append(common | {"system": PICK, "sdri": base} | seen)
    return pd.DataFrame(rows)


def test_a_rule_that_holds_on_every_set_reaches_the_oracle_on_the_set_it_was_not_fitted_on():
    means, shares = rule_scores(per_mixture(_results(soft_wins_below=0.7)))
    assert means.loc["logistic, p > 0.5", "b-fsdd"] == pytest.approx(means.loc["oracle", "b-fsdd"], abs=0.05)
    assert 0.3 < shares.loc["logistic, p > 0.5", "b-fsdd"] < 0.5  # agreement uniform in [0.5, 1): 40 % below 0.7
    assert means.loc["logistic, p > 0.5", "b-fsdd"] > means.loc["mask head", "b-fsdd"] + 0.3  # +1 dB on 40 %


def test_with_no_relation_to_what_inference_sees_no_rule_beats_the_better_head():
    means, _ = rule_scores(per_mixture(_results(soft_wins_below=0.0)))  # soft k-means always 1 dB lower
    assert (means.drop(index=["oracle"]).max() <= means.loc["mask head"] + 1e-9).all()


def test_a_results_file_without_the_pick_system_is_refused_with_the_flag_to_use():
    results = _results(0.7)
    with pytest.raises(SystemExit, match="--systems mask,soft,pick"):
        per_mixture(results[~results["system"].str.startswith("pick")])
