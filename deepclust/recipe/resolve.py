"""What a person asks for (a preset, a corpus, a folder of official mix lists, ``--set`` overrides) as the one
``ReproduceConfig`` that runs: the command line (``deepclust reproduce``) and the Prefect flow (``flows.reproduce``,
and so every deployment in ``deployments/prefect.yaml``) both call ``resolve_recipe``.

Resolving reads no data: ``deepclust reproduce --print-config`` shows what would run on a machine without the
corpus. What the data must hold is checked before the first stage (``deepclust.recipe.preflight``).

    >>> config = resolve_recipe("paper", "runs/wsj0", CorpusConfig(name="wsj0", root="/data/LDC93S6A"),
    ...                         mix_lists="/data/create-speaker-mixtures", overrides=["train.max_epochs=20"])
    >>> config.train.curriculum_chunk_frames, config.train.max_epochs, sorted(config.mixtures.mix_lists)
    (400, 20, ['cv', 'mix_3_spk_tt', 'tr', 'tt'])
"""

from __future__ import annotations

from collections.abc import Sequence

from deepclust import storage
from deepclust.recipe.config import ReproduceConfig
from deepclust.recipe.overrides import apply_overrides, parse_override
from deepclust.recipe.presets import default_preset, preset_config
from deepclust.stages.corpus import CorpusConfig

__all__ = ["OFFICIAL_SPLITS", "official_mix_lists", "resolve_recipe"]

OFFICIAL_SPLITS = ("tr", "cv", "tt")
_LABELS = ("preset", "overrides")  # set by resolving, not by --set


def official_mix_lists(folder: str, n_speakers: int = 2, test_speaker_counts: Sequence[int] = (2,)) -> dict:
    """The official lists a recipe reads from a create-speaker-mixtures folder: ``mix_<n>_spk_{tr,cv,tt}.txt`` for
    the training speaker count, and ``mix_<k>_spk_tt.txt`` (by its name) for every other test speaker count."""
    lists = {split: storage.join(folder, f"mix_{n_speakers}_spk_{split}.txt") for split in OFFICIAL_SPLITS}
    for count in test_speaker_counts:
        if count != n_speakers:
            lists[f"mix_{count}_spk_tt"] = storage.join(folder, f"mix_{count}_spk_tt.txt")
    return lists


def resolve_recipe(
    preset: str | None = None,
    run_root: str | None = None,
    corpus: CorpusConfig | None = None,
    mix_lists: str | None = None,
    overrides: Sequence[str] = (),
) -> ReproduceConfig:
    """The named preset (default: ``default_preset`` of the corpus) with ``corpus`` (default: the preset's own, the
    demo corpus at the preset's size), the ``--set`` ``overrides`` in order, then the official lists of the
    ``mix_lists`` folder for the speaker counts the result trains and tests on; the preset's name and the
    overrides are recorded in the config."""
    name = preset or default_preset(corpus.name if corpus else "demo")
    overrides = tuple(overrides)
    for text in overrides:
        path, _ = parse_override(text)
        if path[0] in _LABELS:
            raise ValueError(f"--set {text!r}: {path[0]} is recorded, not set (choose the preset with --preset)")
    config = preset_config(name, run_root or ReproduceConfig.run_root)
    if corpus is not None:
        config.corpus = corpus
    config = apply_overrides(config, overrides)
    if mix_lists:
        if any(parse_override(text)[0][:2] == ["mixtures", "mix_lists"] for text in overrides):
            raise ValueError(
                "give the official lists either as a folder (--mix-lists) or as mixtures.mix_lists, not both"
            )
        mixtures = config.mixtures
        mixtures.mix_lists = official_mix_lists(mix_lists, mixtures.n_speakers, mixtures.test_speaker_counts)
    config.preset, config.overrides = name, overrides
    return config
