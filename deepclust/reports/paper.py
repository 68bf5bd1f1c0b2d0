"""Published figures that reports lay beside ours, and the paper's layout of a results table.

Hershey, Chen, Le Roux, Watanabe, "Deep clustering: discriminative embeddings for segmentation and separation",
ICASSP 2016 (arXiv 1508.04306): its abstract reports that a model trained on two-speaker mixtures improves the
signal quality of mixtures of held-out speakers "by an average of 6dB", and that the same model does well on
three-speaker mixtures. Isik, Le Roux, Chen, Watanabe, Hershey, "Single-channel multi-speaker separation using deep
clustering", Interspeech 2016 (arXiv 1607.02173), abstract: that baseline is 6.0 dB on two speakers; their deeper
network (DPCL++, our ``dpcl++`` preset) reaches 10.3 dB on two speakers and 7.1 dB on three.

Only figures whose source we could read are filled in (the abstracts above). The papers' tables split the two-speaker
figure by gender and give a three-speaker figure for the 2 x 300 model; those were not verified here and stay empty
("-") rather than quoted from memory.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PAPER = "Hershey et al., ICASSP 2016 (arXiv 1508.04306)"
DPCL_PLUS_PLUS = "Isik et al., Interspeech 2016 (arXiv 1607.02173)"

PAPER_SDRI_DB = {
    # (num_speakers, condition) -> SDR improvement in dB: the abstract's "average of 6dB" (6.0 dB as Isik et al.
    # cite it), for held-out speakers; the closed set's figure is taken as the same.
    (2, "closed"): 6.0,
    (2, "open"): 6.0,
}

# The paper's layout: the open-speaker test set (wsj0-2mix tt) by speaker count and gender pairing.
# (label, num_speakers, gender_condition, Hershey et al.'s SDRi, DPCL++'s SDRi); None: no verified figure.
PAPER_TABLE_ROWS = (
    ("2 speakers, different gender", 2, "different", None, None),
    ("2 speakers, same gender", 2, "same", None, None),
    ("2 speakers, overall", 2, "all", 6.0, 10.3),  # both abstracts
    ("3 speakers, overall", 3, "all", None, 7.1),  # DPCL++ abstract; the 2 x 300 model's figure unverified
)


def paper_sdri(num_speakers: int, condition: str):
    """The paper's SDRi (dB) for this speaker count and condition, or None where it gives none."""
    return PAPER_SDRI_DB.get((int(num_speakers), str(condition)))


def paper_table(summary: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Our results as the paper lays them out: SDRi (mean, dB) for two speakers of different gender, of the same
    gender and overall, and three speakers, beside the IBM and IRM ceilings of the same mixtures and the published
    figures. ``summary``: ``deepclust.reports.summary.summarise_by_condition``'s table.

    Rows come from the open-speaker condition (the paper's test set) when the run has one, else from the one
    condition it has (or the first, sorted). Returns ``(table, condition)``."""
    conditions = sorted(set(summary["condition"])) if len(summary) else []
    condition = "open" if "open" in conditions else (conditions[0] if conditions else "open")
    chosen = summary[summary["condition"] == condition] if len(summary) else summary
    rows = []
    for label, speakers, gender, paper_figure, dpcl_figure in PAPER_TABLE_ROWS:
        found = chosen[(chosen["num_speakers"] == speakers) & (chosen["gender_condition"] == gender)]
        by_system = found.set_index("system") if len(found) else pd.DataFrame()
        sdri = {
            system: float(by_system.loc[system, "sdri_mean"]) if system in by_system.index else np.nan
            for system in ("model", "ibm", "irm")
        }
        rows.append(
            {
                "test set": label,
                "mixtures": int(by_system.loc["model", "mixtures"]) if "model" in by_system.index else 0,
                "model SDRi": sdri["model"],
                "IBM SDRi": sdri["ibm"],
                "IRM SDRi": sdri["irm"],
                "paper SDRi": np.nan if paper_figure is None else paper_figure,
                "DPCL++ SDRi": np.nan if dpcl_figure is None else dpcl_figure,
            }
        )
    return pd.DataFrame(rows), condition
