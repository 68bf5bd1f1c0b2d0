"""What a run shows in the Prefect UI: results, summary, loss curve, and progress of long stages.

Artifact keys are stable (``dpcl-results``, ``dpcl-summary``, ``dpcl-summary-table``,
``dpcl-loss-curve``, ``dpcl-loss-curve-plot``, ``dpcl-run``, ``dpcl-progress-<stage>``), so the UI keeps
one history per key across runs. Publishing reads the files the library wrote; nothing is recomputed.
"""

from __future__ import annotations

import base64
import math
import os
import re

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from deepclust import storage

# A table artifact lives in the Prefect database; the full per-utterance table is results.csv.
MAX_TABLE_ROWS = 5000


def _json_cell(value):
    if isinstance(value, (list, tuple, np.ndarray)):
        return " ".join(map(str, value))
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return None if math.isnan(value) or math.isinf(value) else round(value, 4)
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value


def table_rows(frame: pd.DataFrame, limit: int = MAX_TABLE_ROWS) -> list[dict]:
    """DataFrame -> JSON-safe records (lists joined, NaN -> None) for a table artifact."""
    return [{str(k): _json_cell(v) for k, v in row.items()} for row in frame.head(limit).to_dict("records")]


@task(name="publish-results", cache_policy=NO_CACHE)
def publish_results(results_url: str) -> str:
    """``dpcl-results``: one row per (mixture, system) with SDR/SIR/SAR/SI-SDR and improvements."""
    results = storage.read_parquet(results_url)
    shown = min(len(results), MAX_TABLE_ROWS)
    note = "" if shown == len(results) else f" (first {shown} of {len(results)} rows)"
    create_table_artifact(
        table=table_rows(results),
        key="dpcl-results",
        description=f"Per-utterance separation results{note}: {results_url}",
    )
    return results_url


def data_uri(png_url: str) -> str:
    """The PNG itself as a data URI: the UI runs in a browser that cannot open the run folder's files."""
    return "data:image/png;base64," + base64.b64encode(storage.read_bytes(png_url)).decode("ascii")


def inline_images(markdown: str, base_url: str, max_bytes: int = 400_000) -> str:
    """Replace ``![title](figure.png)`` links of a report (relative to ``base_url``) by data URIs."""

    def embed(match: re.Match) -> str:
        title, target = match.groups()
        url = target if os.path.isabs(target) or "://" in target else storage.join(base_url, target)
        try:
            data = storage.read_bytes(url)
        except OSError:
            return match.group(0)  # a missing figure stays a link rather than failing the report
        if len(data) > max_bytes:
            return match.group(0)
        return f"![{title}](data:image/png;base64,{base64.b64encode(data).decode('ascii')})"

    return re.sub(r"!\[([^\]]*)\]\(([^)]+\.png)\)", embed, markdown)


@task(name="publish-summary", cache_policy=NO_CACHE)
def publish_summary(report_url: str, summary_url: str) -> str:
    """``dpcl-summary`` (the Markdown report: model beside IBM/IRM and the paper) and
    ``dpcl-summary-table`` (mean/median per condition)."""
    report = inline_images(storage.read_text(report_url), storage.parent(report_url))
    create_markdown_artifact(
        markdown=report, key="dpcl-summary", description=f"Separation summary by condition: {report_url}"
    )
    summary = storage.read_parquet(summary_url)
    create_table_artifact(
        table=table_rows(summary),
        key="dpcl-summary-table",
        description=f"Mean and median metrics by condition: {summary_url}",
    )
    return report_url


@task(name="publish-loss-curve", cache_policy=NO_CACHE)
def publish_loss_curve(history_url: str, png_url: str | None = None) -> str:
    """``dpcl-loss-curve``: training/validation loss per epoch; ``dpcl-loss-curve-plot`` links the PNG."""
    with storage.open_url(history_url, "rb") as handle:
        history = pd.read_csv(handle)
    create_table_artifact(
        table=table_rows(history), key="dpcl-loss-curve", description=f"Deep clustering loss per epoch: {history_url}"
    )
    if png_url:
        create_markdown_artifact(
            markdown=f"# Training loss curve\n\n![loss curve]({data_uri(png_url)})\n\nPNG: `{png_url}`\n\n"
            f"History: [{history_url}]({history_url})\n",
            key="dpcl-loss-curve-plot",
            description="Loss curve plot written to the run folder",
        )
    return history_url


@task(name="publish-run", cache_policy=NO_CACHE)
def publish_run_artifacts(record: dict, failed_items: dict) -> None:
    """``dpcl-run``: where everything of this run lies (the run record), and any failed items."""
    lines = [
        "# deepclust reproduce run",
        "",
        f"Run record: `{record.get('run_json')}`",
        f"Report: `{record.get('report')}`",
        f"Model: `{record.get('model')}`",
        "",
        "| stage | key | manifest |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {name} | `{stage['key']}` | `{stage['manifest']}` |" for name, stage in record["stages"].items()]
    if any(failed_items.values()):
        lines += [
            "",
            "Failed items (recorded with their reason in each stage's manifest): "
            + ", ".join(f"{name}: {count}" for name, count in failed_items.items() if count),
        ]
    create_markdown_artifact(markdown="\n".join(lines), key="dpcl-run", description="deepclust run record")


@task(name="publish-history", cache_policy=NO_CACHE)
def publish_history(history_url: str, config_fingerprint: str, trend_png: str | None = None) -> str:
    """``dpcl-history``: every run of the history table (newest last), and ``dpcl-history-trend``: this
    recipe's SDRi per run over time, the IBM ceiling as a line, with the same rows as Markdown."""
    from deepclust.reports.history import read_history, trend_markdown

    history = read_history(history_url)
    create_table_artifact(
        table=table_rows(history), key="dpcl-history", description=f"deepclust run history: {history_url}"
    )
    figure = f"![SDRi per run]({data_uri(trend_png)})\n\n" if trend_png else ""
    create_markdown_artifact(
        markdown=f"# Runs of config {config_fingerprint}\n\n{figure}{trend_markdown(history, config_fingerprint)}\n",
        key="dpcl-history-trend",
        description="SDRi per run over time, IBM ceiling as a line",
    )
    return history_url


class StageProgress:
    """A ``dpcl-progress-<stage>`` progress artifact advanced once per finished unit (flow-side)."""

    def __init__(self, stage_name: str, total: int, already_done: int = 0):
        self.total, self.done = max(1, total), already_done
        self.artifact_id = create_progress_artifact(
            progress=self.percent,
            key=f"dpcl-progress-{stage_name}",
            description=f"{stage_name}: units done out of {total}",
        )

    @property
    def percent(self) -> float:
        """Units done, as a percentage of the total (one decimal)."""
        return round(100.0 * self.done / self.total, 1)

    def advance(self, count: int = 1) -> None:
        """Count ``count`` more units done and update the artifact."""
        self.done += count
        update_progress_artifact(artifact_id=self.artifact_id, progress=self.percent)


# The dpcl-listen artifact lives in the Prefect database and is sent to every browser that opens it: a
# byte budget, short clips at telephone rate (the full page has the 10 s clips at the model rate).
LISTEN_ARTIFACT_BYTES = 400_000
LISTEN_CLIP_SECONDS = 4.0
LISTEN_CLIP_RATE = 8000
# How long the presigned URL of a page on object storage stays valid; DEEPCLUST_LISTEN_URL_EXPIRY_SECONDS sets it.
LISTEN_URL_EXPIRY_SECONDS = int(os.environ.get("DEEPCLUST_LISTEN_URL_EXPIRY_SECONDS", str(7 * 24 * 3600)))


def wav_data_uri(clip_url: str, seconds: float = LISTEN_CLIP_SECONDS, rate: int = LISTEN_CLIP_RATE) -> str:
    """The first ``seconds`` of a clip the page wrote, resampled to ``rate``, as a 16-bit WAV data URI."""
    import io

    import soundfile as sf

    from deepclust.audio import resample

    signal, clip_rate = sf.read(io.BytesIO(storage.read_bytes(clip_url)), dtype="float32")
    signal = (
        resample(signal, clip_rate, rate)[: int(seconds * rate)] if clip_rate != rate else signal[: int(seconds * rate)]
    )
    buffer = io.BytesIO()
    sf.write(buffer, signal, rate, subtype="PCM_16", format="WAV")
    return "data:audio/wav;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def page_link(page_url: str, expiry_seconds: int = LISTEN_URL_EXPIRY_SECONDS) -> str:
    """Where a browser opens the full page: a presigned https URL valid ``expiry_seconds`` for object storage;
    for a local page its path, to open by hand (a browser does not follow file:// links from an http page)."""
    import html

    if storage.is_local(page_url):
        return (
            f"Full page (open it in a browser on the machine that holds the run): "
            f"{html.escape('file://' + storage.absolute(page_url))}"
        )
    fs, _ = storage.filesystem(page_url)
    try:
        signed = fs.sign(page_url, expiration=int(expiry_seconds))
    except (NotImplementedError, OSError, ValueError) as error:
        return f"Full page: {html.escape(page_url)} (no presigned URL: {html.escape(str(error))})"
    return (
        f'Full page: <a href="{html.escape(signed)}">open</a> (a presigned URL, valid for '
        f"{int(expiry_seconds) // 3600} h from publishing; {html.escape(page_url)})"
    )


def listen_markdown(
    page_url: str,
    title: str,
    roles: tuple[str, ...] = ("median", "worst"),
    max_bytes: int = LISTEN_ARTIFACT_BYTES,
    expiry_seconds: int = LISTEN_URL_EXPIRY_SECONDS,
) -> str:
    """Markdown with players of the page's examples whose role is one of ``roles`` (mixture and estimates,
    ``LISTEN_CLIP_SECONDS`` at ``LISTEN_CLIP_RATE``) until ``max_bytes``, and the link to the full page.
    Every name is HTML-escaped: the UI renders the artifact's HTML."""
    import html

    from deepclust.reports.listen import examples_of

    folder = storage.parent(page_url)
    lines, used, left_out = [f"# {html.escape(title)}", "", page_link(page_url, expiry_seconds), ""], 0, 0
    embedded = set()
    for example in examples_of(page_url):
        if example["role"] != "drawn" and not any(role in example["role"] for role in roles):
            continue
        if example["mixture_id"] in embedded:  # e.g. the worst of all 2-talker mixtures and of a gender pair
            lines.append(
                f"### {html.escape(example['condition'])}: {html.escape(example['role'])}: "
                f"{html.escape(str(example['mixture_id']))}, heard above"
            )
            continue
        players = [
            (clip["label"], wav_data_uri(storage.join(folder, clip["src"])))
            for clip in example["clips"]
            if clip["kind"] in ("mixture", "estimate")
        ]
        size = sum(len(uri) for _, uri in players)
        if used + size > max_bytes:
            left_out += 1
            continue
        used += size
        embedded.add(example["mixture_id"])
        lines += [
            f"### {html.escape(example['condition'])}: {html.escape(example['role'])}, "
            f"{html.escape(str(example['mixture_id']))}",
            "",
        ]
        lines += [f'{html.escape(label)}: <audio controls src="{uri}"></audio>' for label, uri in players]
        lines.append("")
    if left_out:
        lines.append(f"({left_out} more examples on the full page: this artifact keeps under {max_bytes // 1000} kB)")
    return "\n\n".join(line for line in lines if line) + "\n"


@task(name="publish-listen", cache_policy=NO_CACHE)
def publish_listen(
    page_url: str,
    key: str = "dpcl-listen",
    title: str = "Listen: median and worst of each condition",
    expiry_seconds: int = LISTEN_URL_EXPIRY_SECONDS,
) -> str:
    """``dpcl-listen`` (or ``key``): players of a listening page's median and worst examples, embedded, and
    where the full page is."""
    create_markdown_artifact(
        markdown=listen_markdown(page_url, title, expiry_seconds=expiry_seconds),
        key=key,
        description=f"Listening page: {page_url}",
    )
    return page_url
