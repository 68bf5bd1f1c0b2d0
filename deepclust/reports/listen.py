"""Listening pages: hear the best, typical and worst separations of an evaluation, or a spot check of an
archive job, beside their numbers and masks.

A page is one static HTML file plus its audio (16-bit FLAC at the model rate, each clip at most
``MAX_SECONDS``) and PNG pictures (mixture spectrogram and the estimates' masks) in an asset folder beside
it. Every link is relative and points into that folder, so the page reads the same from a local disk
(``file://``), a copied run folder or a static object-store host. Names, paths, errors and model fields come
from whoever filled the archive: all of them are HTML-escaped, file names on the page are made here
(``m000-s1.flac``), never taken from inputs, and a Content-Security-Policy meta tag forbids every script.

Layout::

    evaluation stage folder/listen.html   + listen/         (beside report.md, which it links)
    archive out/.listen/index.html        + .listen/assets/ (a hidden folder: no output stem can collide)

``listen/examples.json`` lists the examples with their clips, so ``tasks.artifacts`` can embed a few of them
in the Prefect UI without decoding anything the job did not write.
"""

from __future__ import annotations

import html
import time

import numpy as np
import pandas as pd

from deepclust import storage
from deepclust.faults.errors import RunSettingError

MAX_SECONDS = 10.0  # per clip on the page
# Lossless and about half a WAV's bytes; every current browser plays FLAC in <audio> (the page test plays each
# clip in Chromium). The Prefect artifact's inline clips stay WAV (tasks/artifacts.py).
CLIP_SUFFIX = ".flac"
ARCHIVE_LISTEN_DEFAULT = 6  # inputs drawn for an archive spot check (``--listen``)
ARCHIVE_LISTEN_SEED = 0
EVALUATION_PAGE = "listen.html"
EVALUATION_ASSETS = "listen"
ARCHIVE_FOLDER = ".listen"
# No script may run (the page ships none); media and pictures only from the page's own folder.
CSP = (
    "default-src 'none'; img-src 'self' data:; media-src 'self' data:; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'"
)
STYLE = (
    "body{font-family:sans-serif;margin:1.5em;max-width:1300px}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}.example{border-top:2px solid #888;"
    "margin-top:1em;padding-top:.5em}.players td{vertical-align:top}audio{width:220px}img{max-width:100%}"
    ".error{color:#a00}code{word-break:break-all}"
)


def esc(value) -> str:
    """``value`` as HTML text, quotes included (safe inside attributes too)."""
    return html.escape("" if value is None else str(value), quote=True)


def _number(value) -> str:
    value = float(value)
    return "-" if not np.isfinite(value) else f"{value:.2f}"


def _trim(signal: np.ndarray, rate: int, seconds: float = MAX_SECONDS) -> np.ndarray:
    return signal[..., : round(seconds * rate)]


def _write_clip(url: str, signal: np.ndarray, rate: int) -> float:
    """A 16-bit clip (FLAC or WAV by suffix) of at most ``MAX_SECONDS``; returns its duration in seconds."""
    from deepclust.audio import write_audio

    clip = _trim(np.asarray(signal, dtype=np.float32), rate)
    write_audio(url, clip, rate)
    return clip.shape[-1] / rate


def _mask_picture(mixture: np.ndarray, outputs: np.ndarray, rate: int, png_url: str) -> str:
    """Mixture log-spectrogram beside each output's mask ``|S_k| / sum_j |S_j|`` (first ``MAX_SECONDS``).

    Each output is the mixture STFT times a mask, resynthesised, so the ratio of their magnitudes is that mask
    up to overlap-add smoothing (the same picture as the report's).
    """
    from deepclust.features.stft import StftConfig, stft_np
    from deepclust.reports.figures import plot_masks

    config = StftConfig(sample_rate=rate)
    mixture = _trim(mixture, rate)
    outputs = np.stack([np.pad(o[: len(mixture)], (0, max(0, len(mixture) - len(o)))) for o in outputs])
    magnitudes = np.abs(stft_np(outputs, config))  # (K, frames, freq)
    masks = magnitudes / np.maximum(magnitudes.sum(0, keepdims=True), 1e-8)
    log_mag = np.log(np.abs(stft_np(mixture, config)) + 1e-6)  # (frames, freq)
    return plot_masks(log_mag, masks[:, : log_mag.shape[0]], png_url)


def _page(title: str, header_rows: list[tuple[str, str]], body: list[str]) -> str:
    """The whole document; ``header_rows`` are ``(label, already escaped HTML)``."""
    header = "".join(f"<tr><th>{esc(label)}</th><td>{value}</td></tr>" for label, value in header_rows)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
        f'<h1>{esc(title)}</h1><table class="header">{header}</table>\n' + "\n".join(body) + "\n</body></html>\n"
    )


def _player(label: str, relative: str, seconds: float) -> str:
    return (
        f'<td><div>{esc(label)}</div><audio controls preload="metadata" src="{esc(relative)}" '
        f'data-seconds="{seconds:.3f}"></audio></td>'
    )


def _players(clips: list[dict]) -> str:
    return (
        '<table class="players"><tr>'
        + "".join(_player(c["label"], c["src"], c["seconds"]) for c in clips)
        + "</tr></table>"
    )


def examples_of(page_url: str) -> list[dict]:
    """The examples a page shows (its ``examples.json``), each clip's ``src`` relative to the page's folder."""
    folder = storage.parent(page_url)
    assets = EVALUATION_ASSETS if page_url.endswith(EVALUATION_PAGE) else "assets"
    return storage.read_json(storage.join(folder, assets, "examples.json"))["examples"]


# Evaluation ------------------------------------------------------------------------------------------


def conditions(results: pd.DataFrame, system: str = "model") -> list[tuple[str, pd.DataFrame]]:
    """The results table's conditions with the ``system``'s scored rows: per speaker count all mixtures, then
    each gender pair (``same`` / ``different``) where genders are known."""
    rows = results[(results["system"] == system) & (results["status"] == "done")]
    out = []
    for count in sorted(rows["num_speakers"].unique()):
        by_count = rows[rows["num_speakers"] == count]
        out.append((f"{int(count)} talkers, all", by_count))
        for gender in ("different", "same"):
            chosen = by_count[by_count["gender_condition"] == gender]
            if len(chosen):
                out.append((f"{int(count)} talkers, {gender} gender", chosen))
    return out


def pick_examples(rows: pd.DataFrame) -> list[tuple[str, str]]:
    """``[(role, mixture_id)]``: best, median and worst by SDRi (a mixture that is two of them is listed once,
    e.g. ``"best, median"``). Median: the middle of the sorted rows (the lower one of an even count)."""
    ordered = rows.sort_values(["sdri", "mixture_id"], ascending=[False, True])["mixture_id"].tolist()
    if not ordered:
        return []
    picks: dict[str, list[str]] = {}
    for role, index in (("best", 0), ("median", len(ordered) // 2), ("worst", len(ordered) - 1)):
        picks.setdefault(ordered[index], []).append(role)
    return [(", ".join(roles), mixture_id) for mixture_id, roles in picks.items()]


def _aligned_audio(mixture_row, separated_row, separation_base: str):
    """Mixture ``(T,)``, references ``(K, T)``, estimates ``(K, T)`` ordered as the references by the metrics'
    own permutation (BSS-eval's, largest mean SIR), and the ideal-binary-mask estimates ``(K, T)``."""
    from deepclust.audio import read_audio
    from deepclust.evaluation.results import list_cell
    from deepclust.features.stft import StftConfig
    from deepclust.metrics.bss_eval import bss_eval
    from deepclust.separation.inputs import resolve_outputs
    from deepclust.separation.oracle import ideal_binary_mask_estimates

    rate = mixture_row.get("sample_rate")
    rate = None if rate is None or pd.isna(rate) else int(rate)
    mixture, rate = read_audio(mixture_row["mixture_path"], target_sr=rate)
    sources = np.stack([read_audio(p, target_sr=rate)[0] for p in list_cell(mixture_row["source_paths"])])
    estimates = np.stack(
        [read_audio(u, target_sr=rate)[0] for u in resolve_outputs(separation_base, separated_row["outputs"])]
    )
    perm = bss_eval(sources, estimates)["perm"]  # estimate perm[j] is heard beside reference j
    ideal = ideal_binary_mask_estimates(mixture, sources, StftConfig(sample_rate=rate))
    return mixture, sources, estimates[perm], ideal, rate, perm


def _score_table(rows: pd.DataFrame) -> str:
    lines = [
        '<table class="scores"><tr><th>system</th><th>SDRi (dB)</th><th>SI-SDRi (dB)</th><th>SDR</th>'
        "<th>SIR</th><th>SAR</th></tr>"
    ]
    for row in rows.itertuples():
        lines.append(
            f'<tr data-system="{esc(row.system)}"><td>{esc(row.system)}</td>'
            f'<td class="sdri">{_number(row.sdri)}</td><td class="si_sdri">{_number(row.si_sdri)}</td>'
            f"<td>{_number(row.sdr)}</td><td>{_number(row.sir)}</td><td>{_number(row.sar)}</td></tr>"
        )
    return "".join(lines) + "</table>"


def write_evaluation_page(
    results: pd.DataFrame,
    mixture_manifest_url: str,
    separation_manifest_url: str,
    folder_url: str,
    header: dict | None = None,
    system: str = "model",
) -> dict:
    """Write ``folder_url/listen.html`` (and ``listen/``) for an evaluation's results table.

    Args:
        results: ``deepclust.evaluation.evaluate_mixtures``'s table (one row per mixture and system).
        mixture_manifest_url / separation_manifest_url: what was evaluated (the separation's outputs are
            recorded relative to its folder).
        folder_url: the evaluation stage folder (the page links ``report.md`` there).
        header: ``{label: text}`` shown at the top (model, data, config fingerprint...), escaped here.

    Returns ``{"page", "examples_json", "examples", "bytes"}``: each example is ``{"condition", "role",
    "mixture_id", "clips": [{"label", "src", "seconds", "kind"}], "picture"}`` (``src`` relative to the page).
    """
    asset_url = storage.join(folder_url, EVALUATION_ASSETS)
    mixtures = storage.read_parquet(mixture_manifest_url).set_index("mixture_id")
    separated = storage.read_parquet(separation_manifest_url).set_index("mixture_id")
    base = storage.parent(separation_manifest_url)
    written: dict[str, dict] = {}  # mixture_id -> its clips and picture, written once for every condition
    examples, body = [], []
    for title, rows in conditions(results, system):
        body.append(
            f"<h2>{esc(title)}</h2><p>{len(rows)} mixtures, mean SDRi "
            f'<span class="condition-sdri">{_number(rows["sdri"].mean())}</span> dB, mean SI-SDRi '
            f"{_number(rows['si_sdri'].mean())} dB</p>"
        )
        for role, mixture_id in pick_examples(rows):
            if mixture_id not in written:
                written[mixture_id] = _write_mixture_assets(
                    mixtures.loc[mixture_id], separated.loc[mixture_id], base, asset_url, len(written)
                )
            assets = written[mixture_id]
            example = {"condition": title, "role": role, "mixture_id": mixture_id, **assets}
            examples.append(example)
            scored = results[(results["mixture_id"] == mixture_id) & (results["status"] == "done")]
            body.append(
                f'<div class="example" data-mixture="{esc(mixture_id)}"><h3>{esc(role)}: '
                f"<code>{esc(mixture_id)}</code></h3>{_score_table(scored)}"
                f"<p>estimates aligned to the references by the metrics' permutation "
                f"{esc(assets['perm'])}</p>{_players(assets['clips'])}"
                f'<img alt="spectrogram and masks" src="{esc(assets["picture"])}"></div>'
            )
    if not examples:
        body.append('<p class="error">No mixture was separated and scored: nothing to hear.</p>')
    header_rows = [(label, esc(value)) for label, value in (header or {}).items()]
    header_rows += [
        ("date", esc(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))),
        ("report", '<a href="report.md">report.md</a> &middot; <a href="results.csv">results.csv</a>'),
    ]
    page_url = storage.join(folder_url, EVALUATION_PAGE)
    storage.write_text_atomic(page_url, _page("Deep clustering: listen to the separations", header_rows, body))
    examples_url = storage.join(asset_url, "examples.json")
    storage.write_json({"page": EVALUATION_PAGE, "examples": examples}, examples_url)
    return {
        "page": storage.absolute(page_url),
        "examples_json": storage.absolute(examples_url),
        "examples": examples,
        "bytes": _folder_bytes(asset_url) + len(storage.read_bytes(page_url)),
    }


def evaluation_header(separation_manifest_url: str, mixture_manifest_url: str, fingerprint: str) -> dict:
    """The page header: which model (its file and sha256), which data, which evaluation (``fingerprint``: the
    stage's content key, of its config and both inputs)."""
    from deepclust.pipeline.store import COMPLETE

    separated = storage.read_parquet(separation_manifest_url)
    marker = storage.join(storage.parent(separation_manifest_url), COMPLETE)
    model = ""
    if storage.exists(marker):  # a recipe stage names its model; `deepclust separate` records only the sha256
        model_manifest_url = storage.read_json(marker).get("info", {}).get("model_manifest_url") or ""
        if model_manifest_url and storage.exists(model_manifest_url):
            model = str(storage.read_parquet(model_manifest_url)["model_url"].iloc[0])
    sha = next((s for s in separated.get("model_sha256", pd.Series(dtype=str)) if isinstance(s, str) and s), "")
    return {
        "model": f"{model} (sha256 {sha[:12]})".strip(),
        "data": storage.absolute(mixture_manifest_url),
        "separation": storage.absolute(separation_manifest_url),
        "config fingerprint": fingerprint,
    }


def listen_to_evaluation(evaluation_url: str, out_url: str | None = None) -> str:
    """``deepclust listen``: the page of a committed evaluation stage (its folder, ``manifest.parquet`` or
    ``results.parquet``), written into ``out_url`` (default the stage folder); returns the page's URL."""
    from deepclust.pipeline.store import COMPLETE

    folder = storage.parent(evaluation_url) if evaluation_url.endswith(".parquet") else evaluation_url
    marker = storage.join(folder, COMPLETE)
    if not storage.exists(marker):
        raise RunSettingError(f"{evaluation_url}: not a committed evaluation stage (no {COMPLETE} in {folder})")
    committed = storage.read_json(marker)
    info = committed.get("info", {})
    if not info.get("separation_manifest_url"):
        raise RunSettingError(
            f"{folder}: committed by an older deepclust that did not record its inputs; run the evaluation again"
        )
    results = storage.read_parquet(info.get("results_parquet") or storage.join(folder, "results.parquet"))
    header = evaluation_header(
        info["separation_manifest_url"],
        info["mixture_manifest_url"],
        f"{committed.get('stage', 'evaluate')}/{committed.get('key', '')}",
    )
    return write_evaluation_page(
        results, info["mixture_manifest_url"], info["separation_manifest_url"], out_url or folder, header
    )["page"]


def _write_mixture_assets(mixture_row, separated_row, separation_base: str, asset_url: str, index: int) -> dict:
    mixture, sources, estimates, ideal, rate, perm = _aligned_audio(mixture_row, separated_row, separation_base)
    stem = f"m{index:03d}"
    clips = []

    def clip(label: str, kind: str, name: str, signal):
        seconds = _write_clip(storage.join(asset_url, name), signal, rate)
        clips.append({"label": label, "kind": kind, "src": f"{EVALUATION_ASSETS}/{name}", "seconds": seconds})

    clip("mixture", "mixture", f"{stem}-mixture{CLIP_SUFFIX}", mixture)
    for k in range(len(sources)):
        clip(f"estimate s{k + 1}", "estimate", f"{stem}-s{k + 1}{CLIP_SUFFIX}", estimates[k])
        clip(f"reference s{k + 1}", "reference", f"{stem}-ref{k + 1}{CLIP_SUFFIX}", sources[k])
        clip(f"ideal binary mask s{k + 1}", "ibm", f"{stem}-ibm{k + 1}{CLIP_SUFFIX}", ideal[k])
    _mask_picture(mixture, estimates, rate, storage.join(asset_url, f"{stem}.png"))
    return {
        "clips": clips,
        "picture": f"{EVALUATION_ASSETS}/{stem}.png",
        "perm": [int(p) for p in perm],
        "sample_rate": rate,
    }


def _folder_bytes(url: str) -> int:
    fs, path = storage.filesystem(url)
    return int(sum(fs.size(f) for f in fs.find(path)))


# Archive ---------------------------------------------------------------------------------------------


def _read_head(url: str, seconds: float = MAX_SECONDS) -> tuple[np.ndarray, int]:
    """The first ``seconds`` of a file, mono float32 (only that much is decoded where the format allows)."""
    import soundfile as sf

    from deepclust.audio import read_audio

    try:
        with storage.open_url(url, "rb") as handle:
            info = sf.info(handle)
            handle.seek(0)
            data, rate = sf.read(handle, frames=int(seconds * info.samplerate), dtype="float32", always_2d=True)
        return data.mean(axis=1), int(rate)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        signal, rate = read_audio(url)  # SPHERE and other formats soundfile cannot seek: decode, then trim
        return _trim(signal, rate, seconds), rate


def write_archive_page(
    out_url: str,
    manifest: pd.DataFrame,
    done_now: list[str],
    count: int = ARCHIVE_LISTEN_DEFAULT,
    seed: int = ARCHIVE_LISTEN_SEED,
    header: dict | None = None,
) -> dict | None:
    """Write ``out_url/.listen/index.html``: ``count`` inputs drawn with ``seed`` from ``done_now`` (relative
    paths separated by this run), each with its mixture and outputs (read back as the job wrote them, first
    ``MAX_SECONDS``) and a spectrogram with the outputs' masks; every failed input with its reason.

    Returns ``{"page", "examples_json", "examples", "bytes"}``, or None when ``count`` is 0.
    """
    from deepclust.audio import resample
    from deepclust.separation.inputs import resolve_outputs

    if count <= 0:
        return None
    folder_url = storage.join(out_url, ARCHIVE_FOLDER)
    asset_url = storage.join(folder_url, "assets")
    rows = manifest.set_index("relative_path")
    candidates = sorted(p for p in done_now if p in rows.index and rows.loc[p, "status"] == "done")
    rng = np.random.default_rng(seed)
    drawn = (
        sorted(rng.choice(len(candidates), size=min(count, len(candidates)), replace=False).tolist())
        if candidates
        else []
    )
    examples, body = [], [f"<h2>Spot check: {len(drawn)} of {len(candidates)} inputs separated by this run</h2>"]
    for index, position in enumerate(drawn):
        relative = candidates[position]
        row = rows.loc[relative]
        outputs = [_read_head(u) for u in resolve_outputs(out_url, row["outputs"])]
        rate = outputs[0][1]
        mixture, mixture_rate = _read_head(row["input"])
        mixture = resample(mixture, mixture_rate, rate) if mixture_rate != rate else mixture
        stem, clips = f"i{index:03d}", []
        for label, kind, name, signal in [
            ("input (mixture)", "mixture", f"{stem}-mixture{CLIP_SUFFIX}", mixture),
            *[(f"output s{k + 1}", "estimate", f"{stem}-s{k + 1}{CLIP_SUFFIX}", o[0]) for k, o in enumerate(outputs)],
        ]:
            seconds = _write_clip(storage.join(asset_url, name), signal, rate)
            clips.append({"label": label, "kind": kind, "src": f"assets/{name}", "seconds": seconds})
        _mask_picture(mixture, [o[0] for o in outputs], rate, storage.join(asset_url, f"{stem}.png"))
        examples.append(
            {
                "condition": "spot check",
                "role": "drawn",
                "mixture_id": relative,
                "clips": clips,
                "picture": f"assets/{stem}.png",
                "sample_rate": rate,
            }
        )
        body.append(
            f'<div class="example"><h3><code class="input-name">{esc(relative)}</code></h3>'
            f"<p>{_number(row['duration'])} s at {esc(int(row['sample_rate']))} Hz, {esc(row['n_speakers'])} "
            f'outputs</p>{_players(clips)}<img alt="spectrogram and masks" src="assets/{stem}.png"></div>'
        )
    failed = manifest[manifest["status"].isin(["failed", "transient"])]
    body.append(f"<h2>Failed inputs ({len(failed)})</h2>")
    if len(failed):
        body.append(
            '<table class="failed"><tr><th>input</th><th>status</th><th>reason</th></tr>'
            + "".join(
                f'<tr><td><code class="input-name">{esc(r.relative_path)}</code></td><td>{esc(r.status)}</td>'
                f'<td class="error">{esc(r.error)}</td></tr>'
                for r in failed.itertuples()
            )
            + "</table>"
        )
    header_rows = [(label, esc(value)) for label, value in (header or {}).items()]
    header_rows += [
        ("output", f"<code>{esc(storage.absolute(out_url))}</code>"),
        ("date", esc(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))),
    ]
    page_url = storage.join(folder_url, "index.html")
    storage.write_text_atomic(page_url, _page("deepclust separate: spot check", header_rows, body))
    examples_url = storage.join(asset_url, "examples.json")
    storage.write_json({"page": "index.html", "examples": examples}, examples_url)
    return {
        "page": storage.absolute(page_url),
        "examples_json": storage.absolute(examples_url),
        "examples": examples,
        "bytes": _folder_bytes(folder_url),
    }


def archive_spot_check(
    out_url: str, manifest: pd.DataFrame, rows: list[dict], count: int, model_url: str | None = None
) -> dict | None:
    """The end of a separation job: ``write_archive_page`` of the inputs this run separated (``rows``); what it
    returns (the page's URL, its examples: the inputs it holds), or None when ``count`` is 0 or it cannot be
    written (the job's outputs stand without it)."""
    import logging

    from deepclust.faults.errors import BadAudioError

    if count <= 0:
        return None
    done_now = [r["relative_path"] for r in rows if r["status"] == "done"]
    sha = next((r.get("model_sha256") for r in rows if r.get("model_sha256")), "")
    header = {"model": f"{model_url or ''} (sha256 {str(sha)[:12]})".strip()}
    try:
        return write_archive_page(out_url, manifest, done_now, count, header=header)
    except (BadAudioError, OSError, ValueError, KeyError) as error:
        logging.getLogger(__name__).warning("no spot-check page for %s: %s", out_url, error)
        return None
