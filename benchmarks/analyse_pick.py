"""Can a per-recording choice between the mask head and soft k-means, made without references, beat the mask head
on recordings of corpora the model never trained on?

Reads a results file of ``bench_quality_real.py --systems mask,soft,pick`` (its ``pick`` rows carry, per two-talker
mixture, what inference can see: each mask set's sharpness on the loud bins and the two sets' agreement). A rule is
fitted on set (a) only (held-out speakers of the training corpora: a logistic regression of "soft k-means scored
higher" on those three figures, and thresholds on the agreement at (a)'s quantiles), then applied unchanged to every
set; (b) and (c), never seen by the fit, say whether it transfers. The oracle (the better of the two per mixture,
by SDRi) is the ceiling of any such rule.

    python benchmarks/analyse_pick.py runs/q-pick.parquet
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

MASK, SOFT = "mask head", "soft k-means (beta 5)"
SEEN = ["mask_sharpness", "soft_sharpness", "mask_soft_agreement"]


def per_mixture(results: pd.DataFrame) -> pd.DataFrame:
    """One row per two-talker mixture: each system's SDRi and the pick rows' inference-time figures."""
    two = results[results["num_speakers"] == 2]
    scores = two.pivot_table(index=["test_set", "mixture"], columns="system", values="sdri")
    seen = two[two["system"].str.startswith("pick")].set_index(["test_set", "mixture"])[SEEN]
    if seen.empty:
        raise SystemExit("no pick rows in this results file: run bench_quality_real.py with --systems mask,soft,pick")
    return scores.join(seen)


def rule_scores(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean SDRi per rule (rows) and set (columns, with "b + c" pooled), and the share of mixtures each fitted rule
    sent to soft k-means; every rule is fitted on set (a)'s mixtures alone."""
    fit_on = table[table.index.get_level_values("test_set").str.startswith("a")]
    soft_won = (fit_on[SOFT] > fit_on[MASK]).values
    if soft_won.all() or not soft_won.any():  # one head always won on (a): the fitted rule is that head
        probability = np.full(len(table), float(soft_won[0]))
    else:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(fit_on[SEEN].values, soft_won)
        probability = model.predict_proba(table[SEEN].values)[:, 1]
    rules = {f"logistic, p > {p}": probability > p for p in (0.5, 0.6, 0.7)}
    for q in (0.1, 0.2, 0.3):
        threshold = float(np.quantile(fit_on["mask_soft_agreement"], q))
        rules[f"agreement < {threshold:.3f} ((a)'s {q:.0%})"] = table["mask_soft_agreement"].values < threshold
    sharper = next(column for column in table.columns if str(column).startswith("pick"))
    scores = {"mask head": table[MASK], "soft k-means": table[SOFT], "oracle": table[[MASK, SOFT]].max(axis=1)}
    scores["the sharper (the benchmark's pick)"] = table[sharper]
    scores |= {
        rule: pd.Series(np.where(soft, table[SOFT], table[MASK]), index=table.index) for rule, soft in rules.items()
    }
    sets = pd.Series(table.index.get_level_values("test_set").str.split(":").str[0], index=table.index)
    groups = {name: sets == name for name in sorted(set(sets))}
    groups["b + c"] = sets.str.startswith(("b", "c"))
    means = pd.DataFrame({name: {rule: s[mask].mean() for rule, s in scores.items()} for name, mask in groups.items()})
    shares = pd.DataFrame(
        {name: {rule: soft[mask.values].mean() for rule, soft in rules.items()} for name, mask in groups.items()}
    )
    return means, shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="a bench_quality_real.py results file (parquet) with the pick system")
    args = parser.parse_args()
    means, shares = rule_scores(per_mixture(pd.read_parquet(args.results)))
    print("rules fitted on (a) only; SDRi in dB, two talkers; (share of mixtures the rule sent to soft k-means)\n")
    print("| rule | " + " | ".join(means.columns) + " |")
    print("| --- |" + " --- |" * len(means.columns))
    for rule, row in means.iterrows():
        cells = [
            f"{value:.2f}" + (f" ({shares.loc[rule, name]:.0%})" if rule in shares.index else "")
            for name, value in row.items()
        ]
        print(f"| {rule} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
