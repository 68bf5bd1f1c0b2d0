"""Corpus recipes: each turns a corpus on disk into a corpus manifest (one row per utterance).

Manifest columns (``manifest.COLUMNS``): utterance_id, path, speaker, gender ("m"/"f"/None),
duration (s), sample_rate (Hz), subset. Skipped unreadable files are listed in
``manifest.attrs["errors"]`` as ``{"path", "reason"}`` dicts.
"""

from __future__ import annotations

import pandas as pd

from deepclust.corpora.demo import prepare_demo
from deepclust.corpora.folder import prepare_folder
from deepclust.corpora.manifest import COLUMNS, validate_manifest
from deepclust.corpora.sources import CorpusSource, prepare_sources
from deepclust.corpora.wsj0 import prepare_wsj0, resolve_wsj0_path


def _prepare_sources(sources, test_speakers=None, seed: int = 0) -> pd.DataFrame:
    return prepare_sources(
        [CorpusSource.parse(s) if isinstance(s, str) else s for s in sources], test_speakers=test_speakers, seed=seed
    )


RECIPES = {
    "wsj0": prepare_wsj0,
    "folder": prepare_folder,
    "demo": prepare_demo,
    "sources": _prepare_sources,
}
# Folder presets are corpora too: prepare_corpus("librispeech", root=...) == prepare_folder(root, "librispeech").
FOLDER_PRESETS = ("librispeech", "vctk", "fsdd", "speechocean762")

__all__ = [
    "COLUMNS",
    "CorpusSource",
    "prepare_corpus",
    "prepare_sources",
    "prepare_demo",
    "prepare_folder",
    "prepare_wsj0",
    "resolve_wsj0_path",
    "validate_manifest",
]


def prepare_corpus(name: str, **kwargs) -> pd.DataFrame:
    """Run the recipe ``name`` ("wsj0", "folder", "demo", or a folder preset) with its keyword arguments."""
    if name in RECIPES:
        return RECIPES[name](**kwargs)
    if name in FOLDER_PRESETS:
        return prepare_folder(pattern=name, **kwargs)
    raise ValueError(f"unknown corpus {name!r}: expected one of {sorted(RECIPES) + list(FOLDER_PRESETS)}")
