"""Per-utterance results -> summary by condition -> Markdown report, written beside each other.

Conditions (Hershey et al. 2016, Sec. 4): closed vs open speakers, same vs different gender,
2 vs 3 speakers; every summary row shows the IBM/IRM oracle ceilings and the paper's figure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from deepclust import storage
from deepclust.reports.paper import DPCL_PLUS_PLUS, PAPER, paper_sdri, paper_table
from deepclust.storage.manifests import validate

METRICS = ["sdri", "si_sdri", "sdr", "sir", "sar", "si_sdr"]
GROUPS = ["num_speakers", "condition", "gender_condition"]


def summarise_by_condition(results: pd.DataFrame, where: str = "evaluation results") -> pd.DataFrame:
    """Mean and median of each metric per system and condition, plus an 'all' row per speaker count.

    ``results``: the evaluation stage's results (``deepclust.storage.manifests.SCHEMAS["evaluate"]`` with its
    ``condition``); ``where`` names them in a schema error."""
    validate(results, "evaluate", where, needs=("condition",))
    done = results[results["status"] == "done"].copy()
    if done.empty:
        return pd.DataFrame(columns=["system", *GROUPS, "mixtures"])
    rows = []
    for keys, group in done.groupby(["system", *GROUPS], sort=True):
        rows.append(_row(dict(zip(["system", *GROUPS], keys)), group))
    for keys, group in done.groupby(["system", "num_speakers", "condition"], sort=True):
        rows.append(
            _row({"system": keys[0], "num_speakers": keys[1], "condition": keys[2], "gender_condition": "all"}, group)
        )
    table = pd.DataFrame(rows)
    table["paper_sdri"] = [
        paper_sdri(n, c) if s == "model" else np.nan
        for s, n, c in zip(table["system"], table["num_speakers"], table["condition"])
    ]
    return table.sort_values(["num_speakers", "condition", "gender_condition", "system"]).reset_index(drop=True)


def _row(keys: dict, group: pd.DataFrame) -> dict:
    row = {**keys, "mixtures": int(len(group))}
    for metric in METRICS:
        if metric in group:
            row[f"{metric}_mean"] = float(group[metric].mean())
            row[f"{metric}_median"] = float(group[metric].median())
    return row


def headline(summary: pd.DataFrame) -> pd.DataFrame:
    """One line per (speakers, condition): model vs IBM vs IRM SDRi (mean) and the paper's figure."""
    overall = summary[summary["gender_condition"] == "all"]
    rows = []
    for (n, condition), group in overall.groupby(["num_speakers", "condition"], sort=True):
        by_system = group.set_index("system")

        def value(system, col="sdri_mean", by_system=by_system):
            return float(by_system.loc[system, col]) if system in by_system.index else np.nan

        rows.append(
            {
                "speakers": int(n),
                "condition": condition,
                "mixtures": int(by_system["mixtures"].max()),
                "model SDRi": value("model"),
                "model SI-SDRi": value("model", "si_sdri_mean"),
                "IBM SDRi": value("ibm"),
                "IRM SDRi": value("irm"),
                "paper SDRi": paper_sdri(n, condition),
            }
        )
    return pd.DataFrame(rows)


def markdown_table(table: pd.DataFrame, digits: int = 2) -> str:
    """A GitHub/Prefect Markdown table without needing the optional 'tabulate' package."""

    def cell(value):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return "-"
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def render_report(summary: pd.DataFrame, results: pd.DataFrame, figures: dict | None = None) -> str:
    """The Markdown report: the headline table, any failed mixtures, the results by condition, then the figures."""
    lines = [
        "# Deep clustering: separation results",
        "",
        "SDR improvement (dB) over the unprocessed mixture, mean over test mixtures, beside the ideal "
        "binary/ratio mask ceilings and the paper's figure (Hershey et al., ICASSP 2016).",
        "",
        markdown_table(headline(summary)),
        "",
    ]
    lines += paper_table_section(summary)
    failed = int((results["status"] == "failed").sum())
    if failed:
        lines += [f"{failed} mixture(s) could not be evaluated; see the `error` column of results.csv.", ""]
    lines += [
        "## By condition (mean / median)",
        "",
        markdown_table(
            summary[["system", *GROUPS, "mixtures", "sdri_mean", "sdri_median", "si_sdri_mean", "sir_mean", "sar_mean"]]
        ),
        "",
    ]
    for title, path in (figures or {}).items():
        lines += [f"## {title}", "", f"![{title}]({path})", ""]
    return "\n".join(lines)


def paper_table_section(summary: pd.DataFrame) -> list[str]:
    """report.md's lines for ``deepclust.reports.paper.paper_table``: the table, the condition its rows come from
    and where the published figures were published."""
    table, condition = paper_table(summary)
    return [
        "## As the paper reports it",
        "",
        f"SDR improvement (dB, mean) on the {condition}-speaker test mixtures, by speaker count and gender "
        "pairing, beside the ideal binary/ratio mask ceilings of the same mixtures and the published figures: "
        f'paper = {PAPER}; DPCL++ = {DPCL_PLUS_PLUS} (the `dpcl++` preset). "-": no such mixtures, or no '
        "published figure verified (see deepclust/reports/paper.py).",
        "",
        markdown_table(table),
        "",
    ]


def write_reports(results: pd.DataFrame, out_url: str, figures: dict | None = None) -> dict:
    """Write results.{parquet,csv}, summary.{parquet,csv} and report.md; return their URLs."""
    summary = summarise_by_condition(results)
    urls = {
        name: storage.join(out_url, name)
        for name in ("results.parquet", "results.csv", "summary.parquet", "summary.csv", "report.md")
    }
    storage.write_parquet(results, urls["results.parquet"])
    storage.write_text_atomic(urls["results.csv"], _csv(results))
    storage.write_parquet(summary, urls["summary.parquet"])
    storage.write_text_atomic(urls["summary.csv"], summary.to_csv(index=False))
    storage.write_text_atomic(urls["report.md"], render_report(summary, results, figures))
    return {name.replace(".", "_"): storage.absolute(url) for name, url in urls.items()}


def _csv(results: pd.DataFrame) -> str:
    flat = results.copy()
    for column in flat.columns:
        if flat[column].map(lambda v: isinstance(v, (list, tuple, np.ndarray))).any():
            flat[column] = flat[column].map(
                lambda v: " ".join(map(str, v)) if isinstance(v, (list, tuple, np.ndarray)) else v
            )
    return flat.to_csv(index=False)
