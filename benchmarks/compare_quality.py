"""Is a candidate model better than the shipped one? Paired SDRi differences on the same benchmark mixtures.

Reads two ``bench_quality_real.py --results`` files made with the same mixture settings (same ``--mixtures``,
``--mixtures3``, ``--outside-mixtures`` and ``--seed``: the mixtures are then identical) and prints, for every
test set and inference, the candidate's mean SDRi beside the baseline's, the mean of the per-mixture differences
with its 95 % confidence interval (normal approximation: each set has 60-200 mixtures), and a verdict:
"better" or "worse" where the interval excludes 0, "level" where it does not. A mean difference of 0.1 dB on
200 mixtures is often inside the noise, and the interval says when. The ship rule (benchmarks/RESULTS.md):
better on at least one set and worse on none, for the inference each speaker count ships with.

Set (b) is one set per never-trained corpus (``b-fsdd``, ``b-msc``); where a file holds more than one, the
table adds their pool, ``b (pooled)``, and the pool of every never-trained set, ``b + c (pooled)``, on which
``auto``'s choice is made. Where the files name each mixture's ``corpora``, the held-out sets (a) and (c) are also
split by pairing: talkers of one corpus (as every mixture of set (b) is, and as people recorded in one place
are) against talkers of different corpora, who differ in microphone and room as well as voice.

A file written before set (b) had two corpora labels FSDD ``b: never trained on (FSDD)``; its rows pair with
``b-fsdd`` (the same mixtures for the same ``--outside-mixtures`` and ``--seed``).

    python benchmarks/compare_quality.py BASELINE.parquet CANDIDATE.parquet
"""

from __future__ import annotations

import argparse
import math

import pandas as pd

KEYS = ["test_set", "num_speakers", "system", "mixture"]
CEILINGS = ("IBM", "IRM")
# Labels of earlier result files -> today's label of the same mixtures.
RENAMED_SETS = {"b: never trained on (FSDD)": "b-fsdd: never trained on (fsdd)"}
# Sets split by pairing (talkers of one corpus or of several) where the rows name their corpora ("x+y").
SPLIT_BY_PAIRING = ("a", "c")
# Pooled rows: name -> the set codes (the label before ":") they pool, by their first letter.
POOLS = {"b (pooled)": ("b",), "b + c (pooled)": ("b", "c")}


def with_current_labels(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(test_set=frame["test_set"].replace(RENAMED_SETS))


def verdict_row(test_set: str, speakers: int, system: str, group: pd.DataFrame) -> dict:
    """Both means, the mean per-mixture difference, its 95 % interval and a verdict, for one group of pairs."""
    diff = group["sdri_cand"] - group["sdri_base"]
    half = 1.96 * float(diff.std(ddof=1)) / math.sqrt(len(diff)) if len(diff) > 1 else math.inf
    mean = float(diff.mean())
    verdict = "better" if mean - half > 0 else "worse" if mean + half < 0 else "level"
    return {
        "test set": test_set,
        "speakers": int(speakers),
        "inference": system,
        "mixtures": len(diff),
        "baseline SDRi": float(group["sdri_base"].mean()),
        "candidate SDRi": float(group["sdri_cand"].mean()),
        "difference": mean,
        "95 % interval": f"{mean - half:+.2f} .. {mean + half:+.2f}",
        "verdict": verdict,
    }


def paired(baseline: pd.DataFrame, candidate: pd.DataFrame) -> pd.DataFrame:
    """One row per (test set, speakers, system), then per pool of two or more sets (``POOLS``): both means, the
    mean difference, its 95 % interval, a verdict."""
    baseline, candidate = with_current_labels(baseline), with_current_labels(candidate)
    named = ["corpora"] if "corpora" in baseline.columns else []
    joined = baseline[KEYS + named + ["sdri"]].merge(candidate[KEYS + ["sdri"]], on=KEYS, suffixes=("_base", "_cand"))
    joined = joined[~joined["system"].isin(CEILINGS)]  # the oracles do not depend on the model
    if joined.empty:
        raise SystemExit("no mixture is in both files: were they made with the same mixture settings?")
    rows = [
        verdict_row(test_set, speakers, system, group)
        for (test_set, speakers, system), group in joined.groupby(["test_set", "num_speakers", "system"])
    ]
    first_letter = joined["test_set"].str.split(":").str[0].str[0]
    pooled = []
    for pool, letters in POOLS.items():
        members = joined[first_letter.isin(letters)]
        for (speakers, system), group in members.groupby(["num_speakers", "system"]):
            sets = set(group["test_set"])
            if len(sets) > 1 and (speakers, system, sets) not in pooled:  # else it repeats a row above
                pooled.append((speakers, system, sets))
                rows.append(verdict_row(pool, speakers, system, group))
    if named:
        rows += by_pairing(joined, first_letter)
    return pd.DataFrame(rows)


def by_pairing(joined: pd.DataFrame, first_letter: pd.Series) -> list[dict]:
    """Rows of the sets in ``SPLIT_BY_PAIRING``, split into mixtures of talkers of one corpus and of several."""
    members = joined[first_letter.isin(SPLIT_BY_PAIRING) & joined["corpora"].notna()]
    one_corpus = members["corpora"].map(lambda corpora: len(set(str(corpora).split("+"))) == 1)
    rows = []
    for (test_set, speakers, system, one), group in members.groupby(
        ["test_set", "num_speakers", "system", one_corpus.rename("one")]
    ):
        pairing = "talkers of one corpus" if one else "talkers of different corpora"
        rows.append(verdict_row(f"{test_set.split(':')[0]}, {pairing}", speakers, system, group))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline")
    parser.add_argument("candidate")
    args = parser.parse_args()
    table = paired(pd.read_parquet(args.baseline), pd.read_parquet(args.candidate))
    print(f"$ python benchmarks/compare_quality.py {args.baseline} {args.candidate}")
    print("| " + " | ".join(table.columns) + " |")
    print("|" + " --- |" * len(table.columns))
    for row in table.itertuples(index=False):
        cells = [f"{v:.2f}" if isinstance(v, float) else str(v) for v in row]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
