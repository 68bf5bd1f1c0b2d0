"""The corpus stage: a corpus (demo, wsj0, folder, sources) becomes the utterance manifest.

The demo corpus is synthesised into the stage folder; external trees are scanned. Their listing (each file's
content identity: size and mtime, or the ETag on object stores) goes into the stage key, and each utterance's
identity into the manifest's ``content_id`` column, so an edited file changes the corpus manifest's checksum and
with it every downstream stage key (mixtures, features, training ...): nothing stale is reused.
"""

from __future__ import annotations

from dataclasses import dataclass

from deepclust import storage
from deepclust.pipeline.plan import StageDefinition, StagePlan, config_dict, config_of, recipe_params
from deepclust.pipeline.store import make_stage


@dataclass
class CorpusConfig:
    """Which corpus becomes the utterance manifest.

    ``name``: "demo" (synthesised offline), "wsj0" (``root`` = the converted WSJ0 tree), "folder"
    (``root`` + ``pattern``: "librispeech", "vctk", "fsdd", "speechocean762" or a regex with a ``speaker``
    group), "sources" (several folders, ``sources`` = ``[NAME:]ROOT[=PATTERN]`` strings, ids namespaced
    ``NAME/...``, split per source; see ``deepclust.corpora.sources``).
    """

    name: str = "demo"
    root: str | None = None
    pattern: str | None = None
    test_speakers: list[str] | None = None
    seed: int = 0
    utterances_per_speaker: int | None = None  # demo only: None = the demo's default
    sources: list[str] | None = None  # "sources" only


def plan_corpus(run_root: str, config: CorpusConfig) -> StagePlan:
    """One unit; the stage key holds the config and the corpus tree's listing (``corpus_source_fingerprint``)."""
    params = {"config": recipe_params(config), "source": corpus_source_fingerprint(config)}
    stage = make_stage(run_root, "corpus", params)
    return StagePlan(stage, STAGE, [{"id": "corpus"}], {"config": config_dict(config)})


def _roots(config) -> list[str]:
    if config.name == "demo":
        return []
    if config.name == "sources":
        from deepclust.corpora.sources import CorpusSource

        return [CorpusSource.parse(text).root for text in config.sources or []]
    return [config.root] if config.root else []


def corpus_source_fingerprint(config) -> list:
    """Content proxy of an external corpus tree: (root, relative path, content identity) of every file, from one
    listing per root on any storage (``storage.content_identities``).

    Hashing every byte of WSJ0 (GBs) on each run would cost minutes; size and mtime (or an object's ETag)
    change whenever a file is replaced. The demo corpus is made by the library itself: its parameters suffice.
    """
    return sorted(
        [root, rel, identity] for root in _roots(config) for rel, identity in storage.content_identities(root).items()
    )


def _content_ids(paths, fingerprint: list) -> list[str]:
    """Each utterance file's content identity, from the listing the plan made for the stage key (no second
    listing of the corpus); a file outside the roots on its own."""
    known = {storage.absolute(storage.join(root, rel)): identity for root, rel, identity in fingerprint}
    return [known.get(storage.absolute(p)) or storage.file_identity(p) for p in paths]


def corpus_unit(plan, unit) -> dict:
    """Make (demo) or scan the corpus into the stage's ``utterances.parquet``; returns its size and unreadable files."""
    from deepclust.corpora import prepare_corpus

    config = config_of(plan, CorpusConfig)
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
        kwargs = {
            "root": config.root,
            "pattern": config.pattern or "librispeech",
            "test_speakers": config.test_speakers,
            "seed": config.seed,
        }
    manifest = prepare_corpus(config.name, **kwargs)
    errors = list(manifest.attrs.get("errors", []))
    manifest.attrs = {}
    # The demo's audio is a function of its parameters (in the key); an external file's is its content identity.
    manifest["content_id"] = (
        "" if config.name == "demo" else _content_ids(manifest["path"], plan.stage.params["source"])
    )
    storage.write_parquet(manifest, plan.stage.path("utterances.parquet"))
    return {"rows": int(len(manifest)), "errors": errors}


def corpus_finish(plan, results):
    """The utterance manifest, with its speaker and utterance counts, hours and unreadable files."""
    manifest = storage.read_parquet(plan.stage.path("utterances.parquet"))
    info = {
        "speakers": int(manifest["speaker"].nunique()),
        "utterances": int(len(manifest)),
        "hours": float(manifest["duration"].sum() / 3600),
        "unreadable": results[0].get("errors", []),
    }
    return manifest, info


STAGE = StageDefinition(
    "corpus", plan_corpus, corpus_unit, corpus_finish, "corpus", upstream=(), config_fields=("corpus",)
)
