"""The corpus stage: a corpus (demo, wsj0, folder, sources) becomes the utterance manifest.

The demo corpus is synthesised into the stage folder; external trees are scanned, and their listing
(path, size, mtime) goes into the stage key so that an edited corpus makes a new stage.
"""

from __future__ import annotations

import dataclasses
import os

from deepclust import storage
from deepclust.pipeline.plan import StageDefinition, StagePlan
from deepclust.pipeline.store import make_stage


def plan_corpus(run_root: str, config) -> StagePlan:
    """One unit; the stage key holds the config and the corpus tree's listing (``corpus_source_fingerprint``)."""
    params = {"config": config, "source": corpus_source_fingerprint(config)}
    stage = make_stage(run_root, "corpus", params)
    return StagePlan(stage, "corpus", [{"id": "corpus"}], {"config": dataclasses.asdict(config)})


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
    """Make (demo) or scan the corpus into the stage's ``utterances.parquet``; returns its size and unreadable files."""
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
    """The utterance manifest, with its speaker and utterance counts, hours and unreadable files."""
    manifest = storage.read_parquet(plan.stage.path("utterances.parquet"))
    info = {"speakers": int(manifest["speaker"].nunique()), "utterances": int(len(manifest)),
            "hours": float(manifest["duration"].sum() / 3600), "unreadable": results[0].get("errors", [])}
    return manifest, info


STAGE = StageDefinition("corpus", plan_corpus, corpus_unit, corpus_finish, "utterance manifest")
