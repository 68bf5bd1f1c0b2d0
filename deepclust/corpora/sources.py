"""One corpus from several speaker-labelled folders (e.g. speechocean762 + LibriSpeech + the demo voices).

Each source is a folder with a speaker pattern (a ``folder.PRESETS`` name or a regex) and a short name
(default: the folder's name). Speaker and utterance ids are namespaced ``<name>/<id>`` so that speaker
"103" of one corpus can never be mistaken for speaker "103" of another. The train/test split is drawn per
source, so every source keeps held-out speakers. Genders come from the source's own speaker table when it
has one (``speakers.csv``: speaker, gender; LibriSpeech's ``SPEAKERS.TXT``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pandas as pd

from deepclust import storage
from deepclust.corpora.folder import prepare_folder
from deepclust.corpora.manifest import build_manifest, normalise_gender


@dataclass(frozen=True)
class CorpusSource:
    """A folder of one corpus: ``root``, its speaker ``pattern`` (preset or regex), a short ``name``."""

    root: str
    pattern: str = "auto"
    name: str | None = None

    @classmethod
    def parse(cls, text: str) -> "CorpusSource":
        """``ROOT``, ``ROOT=PATTERN`` or ``NAME:ROOT=PATTERN`` (the command line's ``--source``)."""
        name = None
        if ":" in text.split("=", 1)[0] and "://" not in text:
            name, text = text.split(":", 1)
        root, _, pattern = text.partition("=")
        return cls(root=root, pattern=pattern or "auto", name=name or None)

    @property
    def source_name(self) -> str:
        """``name``, or the folder's own name when none was given."""
        return self.name or str(self.root).rstrip("/").rsplit("/", 1)[-1]

    def resolved_pattern(self) -> str:
        """``auto``: a preset named like the folder (``speechocean762``), LibriSpeech's names
        (``<spk>-<chapter>-<n>``) otherwise."""
        if self.pattern != "auto":
            return self.pattern
        from deepclust.corpora.folder import PRESETS

        base = self.source_name.lower()
        for preset in PRESETS:
            if base.startswith(preset):
                return preset
        return "librispeech"


def read_speaker_genders(root: str) -> dict[str, str]:
    """``{speaker: "m"|"f"}`` from ``speakers.csv`` (speaker, gender) or LibriSpeech's ``SPEAKERS.TXT``."""
    for folder in (root, storage.parent(root)):
        csv_url = storage.join(folder, "speakers.csv")
        if storage.exists(csv_url):
            table = pd.read_csv(io.BytesIO(storage.read_bytes(csv_url)), dtype=str)
            if {"speaker", "gender"} <= set(table.columns):
                return {s: g for s, g in zip(table["speaker"], table["gender"].map(normalise_gender)) if g}
        txt_url = storage.join(folder, "SPEAKERS.TXT")
        if storage.exists(txt_url):
            genders = {}
            for line in storage.read_bytes(txt_url).decode("utf-8", "replace").splitlines():
                fields = [f.strip() for f in line.split("|")]
                if line.startswith(";") or len(fields) < 2:
                    continue
                gender = normalise_gender(fields[1])
                if gender:
                    genders[fields[0]] = gender
            return genders
    return {}


def prepare_sources(
    sources: list[CorpusSource], test_fraction: float = 0.25, seed: int = 0, test_speakers: list[str] | None = None
) -> pd.DataFrame:
    """A corpus manifest over several folders, ids namespaced ``<name>/...``, split per source.

    ``test_speakers``: namespaced ids (``speechocean762/0001``) to hold out; a source none of them names
    gets a seeded ``test_fraction`` of its speakers. Unreadable files of every source are in
    ``attrs["errors"]``.
    """
    if not sources:
        raise ValueError("no corpus sources given")
    names = [s.source_name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"two sources share a name ({names}); name them NAME:ROOT")
    frames, errors = [], []
    for source in sources:
        prefix = source.source_name + "/"
        chosen = [t[len(prefix) :] for t in (test_speakers or []) if t.startswith(prefix)] or None
        frame = prepare_folder(
            source.root,
            source.resolved_pattern(),
            genders=read_speaker_genders(source.root),
            test_speakers=chosen,
            test_fraction=test_fraction,
            seed=seed,
        )
        frame = frame.assign(utterance_id=prefix + frame["utterance_id"], speaker=prefix + frame["speaker"])
        frames.append(frame)
        errors += frame.attrs.get("errors", [])
    rows = pd.concat(frames, ignore_index=True).to_dict("records")
    manifest = build_manifest(rows)
    manifest.attrs["errors"] = errors
    manifest.attrs["sources"] = [
        {"name": s.source_name, "root": storage.absolute(s.root), "pattern": s.resolved_pattern()} for s in sources
    ]
    return manifest
