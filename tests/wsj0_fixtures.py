"""A WSJ0-shaped tree of real speech and its mix lists in the official format, for the recipe's WSJ0 tests.

Six FSDD readers (real speech) written under WSJ0 names at 16 kHz: three training speakers in ``si_tr_s``, three
test speakers in ``si_dt_05`` / ``si_et_05``, genders from ``doc/spkrinfo.txt`` (FSDD's readers are all men; the
tree's spkrinfo says otherwise for some, so that both gender pairings occur). The lists name ``.wv1`` files as
create-speaker-mixtures' do: ``mix_2_spk_{tr,cv,tt}.txt`` and ``mix_3_spk_tt.txt``.

Import what a module needs: ``from wsj0_fixtures import wsj0_tree, write_lists``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deepclust.audio import read_audio, write_audio

# FSDD reader -> (WSJ0 speaker id, subset, gender in spkrinfo)
READERS = {
    "george": ("01t", "si_tr_s", "M"),
    "jackson": ("02c", "si_tr_s", "F"),
    "lucas": ("40a", "si_tr_s", "F"),
    "nicolas": ("050", "si_dt_05", "M"),
    "theo": ("440", "si_et_05", "F"),
    "yweweler": ("441", "si_et_05", "M"),
}
SUBSET_OF = {speaker: subset for speaker, subset, _ in READERS.values()}
UTTERANCES = 4  # per speaker: FSDD's digits 0-3, first take


def utterance(speaker: str, index: int) -> str:
    """The WSJ0-style name of a speaker's ``index``-th utterance (``01to0300``)."""
    return f"{speaker}o030{index}"


def listed(speaker: str, index: int) -> str:
    """How the official lists name that utterance: ``wsj0/<subset>/<speaker>/<utterance>.wv1``."""
    return f"wsj0/{SUBSET_OF[speaker]}/{speaker}/{utterance(speaker, index)}.wv1"


LISTS = {  # official list name -> lines
    "mix_2_spk_tr": [
        f"{listed('01t', 0)} 1.9857 {listed('02c', 0)} -1.9857",
        f"{listed('40a', 0)} 0.5 {listed('01t', 1)} -0.5",
        f"{listed('02c', 1)} 2.25 {listed('40a', 1)} -2.25",
        f"{listed('01t', 2)} 0.75 {listed('40a', 2)} -0.75",
    ],
    "mix_2_spk_cv": [
        f"{listed('01t', 3)} 1.1 {listed('02c', 3)} -1.1",
        f"{listed('40a', 3)} 0.3 {listed('02c', 2)} -0.3",
    ],
    "mix_2_spk_tt": [
        f"{listed('050', 0)} 1.25 {listed('440', 0)} -1.25",  # different gender
        f"{listed('050', 1)} 0.4 {listed('441', 1)} -0.4",
    ],  # same gender
    "mix_3_spk_tt": [f"{listed('050', 2)} 1.5 {listed('440', 2)} -1.5 {listed('441', 2)} 0.8"],
}


def write_lists(folder: Path, lists: dict | None = None) -> Path:
    """The lists (default ``LISTS``) as ``<name>.txt`` files in ``folder``; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in (LISTS if lists is None else lists).items():
        (folder / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def wsj0_tree(tmp_path_factory, fsdd_dir) -> Path:
    """The root folder holding ``wsj0/``."""
    root = tmp_path_factory.mktemp("wsj0_tree")
    info = [";", "; speaker information (miniature WSJ0 for tests)", ";  ID  Sex"]
    for reader, (speaker, subset, gender) in READERS.items():
        for index in range(UTTERANCES):
            audio, rate = read_audio(fsdd_dir / f"{index}_{reader}_0.wav", target_sr=16000)
            write_audio(root / "wsj0" / subset / speaker / f"{utterance(speaker, index)}.wav", audio, rate)
        info.append(f"{speaker}  {gender}")
    (root / "wsj0" / "doc").mkdir()
    (root / "wsj0" / "doc" / "spkrinfo.txt").write_text("\n".join(info) + "\n")
    return root
