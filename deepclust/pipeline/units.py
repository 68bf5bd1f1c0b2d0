"""What one unit of each stage does, and how a stage's unit results become its manifest.

Called through ``deepclust.pipeline.stages.run_unit`` / ``finish`` (which add the skip-if-done logic).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd

from deepclust import storage
from deepclust.errors import BadAudioError

# Corpus ---------------------------------------------------------------------------------------------

def corpus_source_fingerprint(config) -> list:
    """Content proxy of an external corpus tree: (relative path, size, mtime) of every file.

    Hashing every byte of WSJ0 (GBs) on each run would cost minutes; size and mtime change whenever
    a file is replaced. The demo corpus is made by the library itself, so its parameters suffice.
    """
    if config.name == "demo":
        return []
    roots = [config.root] if config.root else []
    if config.name == "sources":
        from deepclust.corpora.sources import CorpusSource

        roots = [CorpusSource.parse(text).root for text in config.sources or []]
    listing = []
    for root in roots:
        for path in storage.walk_local_files(root):  # symlinked folders too, as the corpus listing
            stat = os.stat(path)
            listing.append([root, os.path.relpath(path, root), stat.st_size, stat.st_mtime_ns])
    return sorted(listing)


def corpus_unit(plan, unit) -> dict:
    from deepclust.corpora import prepare_corpus
    from deepclust.pipeline.config import CorpusConfig

    config = CorpusConfig(**plan.context["config"])
    if config.name == "demo":
        # The demo corpus is synthesised into the stage folder itself: same parameters, same audio.
        kwargs = {"root": plan.stage.path("audio"), "seed": config.seed}
        if config.utterances_per_speaker:
            kwargs["utterances_per_voice"] = config.utterances_per_speaker
    elif config.name == "wsj0":
        kwargs = {"root": config.root}
    elif config.name == "sources":
        kwargs = {"sources": config.sources, "test_speakers": config.test_speakers, "seed": config.seed}
    else:
        kwargs = {"root": config.root, "pattern": config.pattern or "librispeech",
                  "test_speakers": config.test_speakers, "seed": config.seed}
    manifest = prepare_corpus(config.name, **kwargs)
    errors = list(manifest.attrs.get("errors", []))
    manifest.attrs = {}
    storage.write_parquet(manifest, plan.stage.path("utterances.parquet"))
    return {"rows": int(len(manifest)), "errors": errors}


def corpus_finish(plan, results):
    manifest = storage.read_parquet(plan.stage.path("utterances.parquet"))
    info = {"speakers": int(manifest["speaker"].nunique()), "utterances": int(len(manifest)),
            "hours": float(manifest["duration"].sum() / 3600), "unreadable": results[0].get("errors", [])}
    return manifest, info


# Mixtures -------------------------------------------------------------------------------------------

def prepare_mix_lists(stage, corpus_manifest_url: str, config) -> dict:
    """Write (or copy) the mix lists in the official format into the stage; return what they hold.

    Returns ``{list_name: (split, n_speakers, list_url, count)}``. Generated lists follow the
    wsj0-2mix protocol (``deepclust.mixing.generate_mix_lists``); official lists are copied as given.
    """
    from deepclust.mixing.mixlist import generate_mix_lists, read_mix_list, write_mix_list

    lists = {}
    if config.mix_lists:
        for split, url in sorted(config.mix_lists.items()):
            entries = read_mix_list(url)
            n_speakers = len(entries[0].paths) if entries else config.n_speakers
            name = f"mix_{n_speakers}_spk_{split}"
            target = stage.path("lists", f"{name}.txt")
            if not storage.exists(target):
                write_mix_list(entries, target)
            lists[name] = (split, n_speakers, target, len(entries))
        return lists
    corpus = storage.read_parquet(corpus_manifest_url)
    wanted = [(config.n_speakers, ("tr", "cv", "tt"))]
    wanted += [(n, ("tt",)) for n in config.test_speaker_counts if n != config.n_speakers]
    for n_speakers, splits in wanted:
        sizes = {split: config.sizes[split] for split in splits}
        names = {split: f"mix_{n_speakers}_spk_{split}" for split in splits}
        targets = {split: stage.path("lists", f"{names[split]}.txt") for split in splits}
        if not all(storage.exists(t) for t in targets.values()):
            generated = generate_mix_lists(corpus, n_speakers=n_speakers, sizes=sizes, scale=config.scale,
                                           seed=config.seed + 1000 * n_speakers)
            for split in splits:
                write_mix_list(generated[split], targets[split])
        for split in splits:
            lists[names[split]] = (split, n_speakers, targets[split], len(read_mix_list(targets[split])))
    return lists


def _path_resolver(corpus: pd.DataFrame):
    """Map a listed path to a corpus file: exact path first, then by utterance id (the file stem).

    This is what lets the official WSJ0 lists (``wsj0/si_tr_s/01t/01to030v.wv1``) find converted WAVs.
    """
    by_path = set(corpus["path"])
    by_id = dict(zip(corpus["utterance_id"], corpus["path"]))

    def resolve(listed: str) -> str:
        if listed in by_path:
            return listed
        stem = os.path.splitext(os.path.basename(listed))[0]
        if stem in by_id:
            return by_id[stem]
        raise FileNotFoundError(f"{listed}: not in the corpus manifest (no utterance {stem!r})")

    return resolve


def mixtures_unit(plan, unit) -> dict:
    from deepclust.mixing.mix import MixConfig, create_mixtures
    from deepclust.mixing.mixlist import read_mix_list

    config = plan.context["config"]
    corpus = storage.read_parquet(plan.context["corpus_manifest_url"])
    entries = read_mix_list(unit["list_url"])[unit["start"]:unit["stop"]]
    mix_config = MixConfig(sample_rate=config["sample_rate"], mode=config["mode"], n_speakers=unit["n_speakers"])
    manifest = create_mixtures(entries, unit["split"], plan.stage.url, mix_config,
                               path_resolver=_path_resolver(corpus), corpus_manifest=corpus, write_manifest=False)
    manifest["sha256"] = [storage.sha256_of(p) if s == "done" else ""
                          for p, s in zip(manifest["mixture_path"], manifest["status"])]
    part = plan.stage.path("parts", f"{unit['id']}.parquet")
    storage.write_parquet(manifest, part)
    return {"part": part, "rows": int(len(manifest)), "failed": int((manifest["status"] != "done").sum())}


def _concat_parts(results) -> pd.DataFrame:
    frames = [storage.read_parquet(r["part"]) for r in results if r and r.get("part")]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def mixtures_finish(plan, results):
    manifest = _concat_parts(results)
    counts = manifest.groupby(["split", "num_speakers"]).size()
    info = {"mixtures": {f"{s}/{n}spk": int(c) for (s, n), c in counts.items()},
            "failed": int((manifest["status"] != "done").sum())}
    return manifest, info


# Features -------------------------------------------------------------------------------------------

def features_unit(plan, unit) -> dict:
    from deepclust.features.extract import FeatureConfig, extract_shard
    from deepclust.features.normalisation import RunningStats
    from deepclust.features.shards import shard_extension

    config = FeatureConfig.from_dict(plan.context["config"])
    mixtures = storage.read_parquet(plan.context["mixture_manifest_url"]).set_index("mixture_id")
    rows = mixtures.loc[unit["mixture_ids"]].reset_index()
    shard_url = plan.stage.path("shards", f"{unit['id']}{shard_extension(config.shard_format)}")
    # Each shard accumulates its own statistics; finish merges the training ones.
    stats = RunningStats(config.stft.n_freq) if unit["split"] == "tr" else None
    manifest_rows = extract_shard(rows, shard_url, config, stats=stats)
    part = plan.stage.path("parts", f"{unit['id']}.parquet")
    storage.write_parquet(pd.DataFrame(manifest_rows), part)
    return {"part": part, "shard_url": shard_url, "split": unit["split"],
            "stats": stats.to_dict() if stats is not None and stats.count else None}


def features_finish(plan, results):
    from deepclust.features.extract import FeatureConfig, write_feature_index
    from deepclust.features.normalisation import RunningStats

    rows = _concat_parts(results).to_dict("records")
    train_stats = [RunningStats.from_dict(r["stats"]) for r in results if r.get("stats")]
    if not train_stats:
        raise ValueError("feature extraction: no training ('tr') utterances to compute normalisation statistics")
    merged = train_stats[0]
    for other in train_stats[1:]:
        merged = merged.merge(other)
    manifest = write_feature_index(rows, plan.stage.url, FeatureConfig.from_dict(plan.context["config"]), merged)
    return manifest, {"shards": len(results), "utterances": int(len(manifest)),
                      "failed": int((manifest["status"] != "done").sum())}


# Training -------------------------------------------------------------------------------------------

def train_unit(plan, unit) -> dict:
    from deepclust.model.blstm import ModelConfig
    from deepclust.training.config import TrainConfig
    from deepclust.training.train import train

    model_config = ModelConfig(**plan.context["model"])
    train_config = TrainConfig(**plan.context["train"])
    outcome = train(plan.context["feature_manifest_url"], plan.stage.url, model_config, train_config, resume=True)
    return {"model_url": outcome["model_url"], "best_val_loss": float(outcome["best_val_loss"]),
            "initial_val_loss": outcome.get("initial_val_loss"), "epochs": len(outcome["history"]),
            "stopped_reason": outcome.get("stopped_reason")}


def train_finish(plan, results):
    from deepclust.reports.figures import plot_loss_curve

    result = results[0]
    history_url = plan.stage.path("history.csv")
    curve = (plot_loss_curve(history_url, plan.stage.path("loss_curve.png"), result.get("initial_val_loss"))
             if storage.exists(history_url) else None)
    manifest = pd.DataFrame([{"model_url": storage.absolute(result["model_url"]),
                              "sha256": storage.sha256_of(result["model_url"]),
                              "best_val_loss": result["best_val_loss"], "epochs": result["epochs"],
                              "history_url": storage.absolute(history_url), "loss_curve_png": curve or ""}])
    return manifest, result


def model_url_of(model_manifest_url: str) -> str:
    return storage.read_parquet(model_manifest_url)["model_url"].iloc[0]


# Separation -----------------------------------------------------------------------------------------

def separate_unit(plan, unit) -> dict:
    from deepclust.audio import read_audio, write_audio
    from deepclust.separation.separator import Separator

    config = plan.context["config"]

    # SeparateConfig.device may be "auto"; Separator takes a concrete torch device.
    separator = Separator(model_url_of(plan.context["model_manifest_url"]), device=config["device"],
                          kmeans=config["kmeans"])
    mixtures = storage.read_parquet(plan.context["mixture_manifest_url"]).set_index("mixture_id")
    rows = []
    ids = unit["mixture_ids"]
    for start in range(0, len(ids), config["batch_size"]):
        loaded = []
        for mixture_id in ids[start:start + config["batch_size"]]:
            row = mixtures.loc[mixture_id]
            began = time.perf_counter()
            try:
                waveform, _ = read_audio(row["mixture_path"], target_sr=separator.sample_rate)
                loaded.append((mixture_id, row, waveform, began))
            except BadAudioError as error:
                rows.append({"mixture_id": mixture_id, "status": "failed", "error": str(error), "outputs": [],
                             "seconds": time.perf_counter() - began})
        by_count: dict[int, list] = {}
        for item in loaded:
            by_count.setdefault(int(item[1]["num_speakers"]), []).append(item)
        for n_speakers, items in by_count.items():
            try:
                estimates = separator.separate_batch([w for _, _, w, _ in items], n_speakers)
            except (RuntimeError, ValueError) as error:
                # One bad batch (e.g. out of memory on a long mixture) fails its items, not the unit.
                rows.extend({"mixture_id": mixture_id, "status": "failed", "error": f"{row['mixture_path']}: {error}",
                             "outputs": [], "seconds": time.perf_counter() - began}
                            for mixture_id, row, _, began in items)
                continue
            for (mixture_id, row, _, began), sources in zip(items, estimates):
                outputs = []
                for k, source in enumerate(sources, start=1):
                    target = plan.stage.path(row["split"], mixture_id, f"s{k}.wav")
                    write_audio(target, source, separator.sample_rate)
                    outputs.append(storage.absolute(target))
                rows.append({"mixture_id": mixture_id, "status": "done", "error": "", "outputs": outputs,
                             "seconds": time.perf_counter() - began})
    part = plan.stage.path("parts", f"{unit['id']}.parquet")
    storage.write_parquet(pd.DataFrame(rows), part)
    return {"part": part, "rows": len(rows)}


def separate_finish(plan, results):
    manifest = _concat_parts(results)
    return manifest, {"separated": int((manifest["status"] == "done").sum()),
                      "failed": int((manifest["status"] != "done").sum()),
                      "model_manifest_url": plan.context["model_manifest_url"]}


# Evaluation -----------------------------------------------------------------------------------------

def evaluate_unit(plan, unit) -> dict:
    from deepclust.evaluation import evaluate_mixtures

    config = plan.context["config"]
    mixtures = storage.read_parquet(plan.context["mixture_manifest_url"])
    separated = storage.read_parquet(plan.context["separation_manifest_url"]).set_index("mixture_id")
    chosen = mixtures[mixtures["mixture_id"].isin(unit["mixture_ids"])]
    estimates = {mid: list(separated.loc[mid, "outputs"]) for mid in unit["mixture_ids"]
                 if separated.loc[mid, "status"] == "done"}
    results = evaluate_mixtures(chosen, estimates, oracles=tuple(config["oracles"]), backend=config["backend"])
    training_speakers = set(np.concatenate(mixtures.loc[mixtures["split"] == "tr", "speakers"].to_numpy())) \
        if (mixtures["split"] == "tr").any() else set()
    results["condition"] = [speaker_condition(s, training_speakers) for s in results["speakers"]]
    part = plan.stage.path("parts", f"{unit['id']}.parquet")
    storage.write_parquet(results, part)
    return {"part": part, "rows": int(len(results))}


def speaker_condition(speakers, training_speakers: set) -> str:
    """'closed' when every speaker was heard in training, 'open' when none was, else 'partly open'."""
    seen = [s in training_speakers for s in speakers]
    return "closed" if all(seen) else "open" if not any(seen) else "partly open"


def evaluate_finish(plan, results):
    """Write the results, summary and report.md; the report shows the model's loss curve and masks of a
    few example test mixtures."""
    from deepclust.reports.summary import write_reports

    table = _concat_parts(results)
    figures = {}
    curve = _loss_curve_of(plan.context["separation_manifest_url"])
    if curve:
        figures["Loss curve"] = curve
    figures.update(_mask_figures(plan, table))
    if storage.is_local(plan.stage.url):  # relative links: report.md reads the same wherever the run folder goes
        folder = storage.absolute(plan.stage.url)
        figures = {title: os.path.relpath(png, folder) for title, png in figures.items()}
    reports = write_reports(table, plan.stage.url, figures)
    reports["figures"] = figures
    return table, reports


EXAMPLE_MIXTURES = 3


def _loss_curve_of(separation_manifest_url: str) -> str | None:
    """``loss_curve.png`` of the model that made these separations (named in the separation's marker)."""
    from deepclust.pipeline.store import COMPLETE

    info = storage.read_json(storage.join(storage.parent(separation_manifest_url), COMPLETE)).get("info", {})
    model_manifest_url = info.get("model_manifest_url")
    if not model_manifest_url or not storage.exists(model_manifest_url):
        return None
    png = storage.read_parquet(model_manifest_url).get("loss_curve_png", pd.Series([""])).iloc[0]
    return png if png and storage.exists(png) else None


def _mask_figures(plan, table: pd.DataFrame, count: int = EXAMPLE_MIXTURES) -> dict:
    """``{"Masks: <mixture_id>": png}`` for a few test mixtures the model separated (one per speaker
    count first, then in order).

    The separator's binary masks are not stored, so each mask is recovered from the separated outputs
    themselves: ``|S_k| / sum_j |S_j|`` of their STFTs. Each output is the inverse STFT of the mixture
    times a binary mask, so this is that mask up to the smoothing of overlap-add at its edges.
    """
    from deepclust.audio import read_audio
    from deepclust.features.stft import StftConfig, stft_np
    from deepclust.reports.figures import plot_masks

    model_rows = table[(table["system"] == "model") & (table.get("status", "done") == "done")]
    if model_rows.empty:
        return {}
    ordered = pd.concat([model_rows.drop_duplicates("num_speakers"), model_rows]).drop_duplicates("mixture_id")
    separated = storage.read_parquet(plan.context["separation_manifest_url"]).set_index("mixture_id")
    mixtures = storage.read_parquet(plan.context["mixture_manifest_url"]).set_index("mixture_id")
    figures = {}
    for mixture_id in ordered["mixture_id"].head(count):
        mixture, rate = read_audio(mixtures.loc[mixture_id, "mixture_path"])
        config = StftConfig(sample_rate=rate)
        outputs = [read_audio(url, target_sr=rate)[0] for url in separated.loc[mixture_id, "outputs"]]
        magnitudes = np.abs(stft_np(np.stack([o[:len(mixture)] for o in outputs]), config))  # (K, frames, freq)
        masks = magnitudes / np.maximum(magnitudes.sum(0, keepdims=True), 1e-8)
        log_mag = np.log(np.abs(stft_np(mixture, config)) + 1e-6)  # (frames, freq)
        png = plan.stage.path("figures", f"masks-{mixture_id}.png")
        # No title: the report's heading names the mixture (and a long id would cover the panel titles).
        figures[f"Masks: {mixture_id}"] = plot_masks(log_mag, masks[:, :log_mag.shape[0]], png)
    return figures
