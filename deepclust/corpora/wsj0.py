"""WSJ0 (LDC93S6A) as used by the wsj0-2mix recipe: the LDC tree as shipped, or converted to WAV.

Layout: ``<root>/wsj0/{si_tr_s,si_dt_05,si_et_05}/<speaker>/<utterance>.wv1`` as on the discs (NIST SPHERE,
shorten-compressed; read directly, no sph2pipe needed), or the same tree converted to ``.wav``; folder and
file names in either case (the discs' ISO 9660 names are upper-case on some systems). ``root`` may also be
the ``wsj0`` folder itself. Where both a ``.wav`` and a ``.wv1`` of one utterance exist, the ``.wav`` is
used. Speaker genders come from ``wsj0/doc/spkrinfo.txt`` when present.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import pandas as pd

from deepclust import storage
from deepclust.corpora.manifest import build_manifest, normalise_gender, probe_audio
from deepclust.faults.errors import BadAudioError

SUBSETS = ("si_tr_s", "si_dt_05", "si_et_05")
SUFFIXES = (".wav", ".wv1")


def _child(folder: str, name: str) -> str | None:
    """``folder/name`` matched case-insensitively (``WSJ0``, ``SI_TR_S``, ``01T``), or None."""
    exact = storage.join(folder, name)
    if storage.exists(exact):
        return exact
    fs, path = storage.filesystem(folder)
    try:
        entries = fs.ls(path, detail=False)
    except (FileNotFoundError, NotADirectoryError):
        return None
    for entry in entries:
        if entry.rstrip("/").rsplit("/", 1)[-1].lower() == name.lower():
            return storage.join(folder, entry.rstrip("/").rsplit("/", 1)[-1])
    return None


def _wsj0_dir(root: str) -> str:
    """The folder holding si_tr_s/...: ``<root>/wsj0`` (any case) when it exists, else ``root`` itself."""
    return _child(root, "wsj0") or root


def read_speaker_genders(wsj0_dir: str) -> dict[str, str]:
    """``{speaker: "m"|"f"}`` from ``doc/spkrinfo.txt`` (``;`` comment lines, then ``<id> <M|F> ...``)."""
    doc = _child(wsj0_dir, "doc")
    path = _child(doc, "spkrinfo.txt") if doc else None
    if path is None:
        return {}
    genders = {}
    for line in storage.read_bytes(path).decode("utf-8", errors="replace").splitlines():
        fields = line.split()
        if len(fields) < 2 or line.lstrip().startswith(";"):
            continue
        gender = normalise_gender(fields[1])
        if gender is not None:
            genders[fields[0].lower()] = gender
    return genders


def _utterance_files(wsj0_dir: str, subset: str) -> list[str]:
    """Audio files of one subset, ``.wav`` preferred when a ``.wv1`` of the same stem sits beside it."""
    folder = _child(wsj0_dir, subset)
    if folder is None:
        return []
    by_stem: dict[str, str] = {}
    for path in storage.list_files(folder, SUFFIXES):
        stem = path[: -len(PurePosixPath(path).suffix)]
        if stem not in by_stem or path.lower().endswith(".wav"):
            by_stem[stem] = path
    return sorted(by_stem.values())


def prepare_wsj0(root) -> pd.DataFrame:
    """Corpus manifest of a converted WSJ0 tree; subset = folder name, utterance_id = file stem.

    Unreadable files are skipped and listed in ``manifest.attrs["errors"]``.
    """
    wsj0_dir = _wsj0_dir(storage.absolute(str(root)))
    genders = read_speaker_genders(wsj0_dir)
    rows, errors = [], []
    for subset in SUBSETS:
        for path in _utterance_files(wsj0_dir, subset):
            parts = PurePosixPath(path.replace("\\", "/")).parts
            speaker, stem = parts[-2], PurePosixPath(parts[-1]).stem
            try:
                duration, sample_rate = probe_audio(path)
            except BadAudioError as error:
                errors.append(error)
                continue
            speaker, stem = speaker.lower(), stem.lower()  # the discs' names are upper-case on some systems
            rows.append(
                dict(
                    utterance_id=stem,
                    path=path,
                    speaker=speaker,
                    gender=genders.get(speaker),
                    duration=duration,
                    sample_rate=sample_rate,
                    subset=subset,
                )
            )
    if not rows and not errors:
        raise FileNotFoundError(
            f"no WSJ0 audio under {root} (looked in {wsj0_dir}): expected the LDC tree "
            f"wsj0/{{{','.join(SUBSETS)}}}/<speaker>/<utterance>.wv1 (or the same tree converted to .wav); "
            f"give --wsj0-root the folder that holds wsj0/"
        )
    return build_manifest(rows, errors)


def resolve_wsj0_path(root, listed_path: str) -> str:
    """Map a mix-list path (``wsj0/si_tr_s/01t/01to030v.wv1``) to the converted file under ``root``.

    Tries ``.wav`` then ``.wv1`` (either case of suffix); raises ``FileNotFoundError`` naming what was tried.
    """
    root = storage.absolute(str(root))
    relative = PurePosixPath(listed_path.replace("\\", "/"))
    if relative.parts and relative.parts[0].lower() == "wsj0":
        relative = PurePosixPath(*relative.parts[1:])
    stem = relative.with_suffix("")
    base = _wsj0_dir(root)
    candidates = [storage.join(base, str(stem) + suffix) for suffix in (".wav", ".WAV", ".wv1", ".WV1")]
    for candidate in candidates:
        if storage.exists(candidate):
            return candidate
    # Folder and file names in another case (SI_TR_S/01T/01TO030V.WV1): match each component.
    folder = base
    for part in stem.parts[:-1]:
        folder = _child(folder, part) if folder else None
    if folder:
        for suffix in (".wav", ".wv1"):
            found = _child(folder, stem.name + suffix)
            if found:
                return found
    raise FileNotFoundError(f"{listed_path}: neither {candidates[0]} nor {candidates[2]} (any case) exists")


def missing_wsj0_files(root, listed_paths) -> list[str]:
    """The listed paths (``wsj0/si_tr_s/01t/01to030v.wv1``, in order, each once) whose utterance the tree under
    ``root`` lacks: what the mixtures stage would fail on, found from one listing of the tree (no audio read).

    An utterance is found the way the recipe finds it, by its file stem among the utterances of the subsets
    ``prepare_wsj0`` scans, in ``.wav`` or ``.wv1`` of either case."""
    wsj0_dir = _wsj0_dir(storage.absolute(str(root)))
    present = {PurePosixPath(path).stem.lower() for subset in SUBSETS for path in _utterance_files(wsj0_dir, subset)}
    missing, seen = [], set()
    for listed in listed_paths:
        if listed in seen:
            continue
        seen.add(listed)
        if PurePosixPath(listed.replace("\\", "/")).stem not in present:
            missing.append(listed)
    return missing
