"""What a run's inputs and settings must hold, checked before its first stage: a precision this machine cannot run
is refused (``check_precisions``); a WSJ0 run that would stop in its mixtures stage,
after a scan of the whole corpus, for a file the lists name and the tree lacks stops here instead, in seconds,
naming the first missing files and how many there are; a list in the wrong format is named with its line.

The check reads the mix lists and lists the corpus tree once; it reads no audio (the corpus stage does, and
records an unreadable file as a bad input rather than stopping).
"""

from __future__ import annotations

from deepclust import storage
from deepclust.recipe.config import ReproduceConfig

__all__ = ["SHOWN_MISSING", "RecipeInputError", "check_corpus", "check_inputs"]

SHOWN_MISSING = 10  # missing files named in the message; the rest are counted


class RecipeInputError(ValueError):
    """A run's inputs cannot make the recipe: ``str(error)`` says what is wrong, where, and what to do."""


def check_inputs(config: ReproduceConfig) -> None:
    """Raise ``RecipeInputError`` if the corpus root is missing, a mix list is missing or malformed, or (WSJ0) the
    tree lacks files the lists name; else return None."""
    check_precisions(config)
    corpus = config.corpus
    check_corpus(corpus)
    lists = config.mixtures.mix_lists or {}
    absent = [url for _, url in sorted(lists.items()) if not storage.exists(url)]
    if absent:
        raise RecipeInputError(
            f"mix lists not found: {', '.join(absent)}. --mix-lists takes the folder of the official lists "
            f"(mix_2_spk_tr.txt ...; mix_3_spk_tt.txt for the 3-speaker test set, or leave it out with "
            f"--set mixtures.test_speaker_counts=2)"
        )
    listed = []
    for _, url in sorted(lists.items()):
        listed += [path for entry in _read(url) for path in entry.paths]
    if corpus.name == "wsj0" and listed:
        from deepclust.corpora.wsj0 import missing_wsj0_files

        missing = missing_wsj0_files(corpus.root, listed)
        if missing:
            shown = "\n  ".join(missing[:SHOWN_MISSING])
            more = f"\n  ... and {len(missing) - SHOWN_MISSING} more" if len(missing) > SHOWN_MISSING else ""
            raise RecipeInputError(
                f"{len(missing)} of the {len(set(listed))} files the mix lists name are not under --wsj0-root "
                f"{corpus.root} (as .wav or .wv1, in si_tr_s, si_dt_05 or si_et_05):\n  {shown}{more}"
            )


def check_corpus(corpus, root_flag: str | None = None) -> None:
    """The corpus stage's config (``CorpusConfig``) names the folders its kind needs, and they are there.
    ``root_flag``: the flag that gives the root (``reproduce``'s, by the kind, when None)."""
    if corpus.name in ("wsj0", "folder") and not corpus.root:
        flag = root_flag or ("--wsj0-root" if corpus.name == "wsj0" else "--root")
        raise RecipeInputError(f"the {corpus.name} corpus needs its root folder ({flag})")
    if corpus.root and corpus.name in ("wsj0", "folder") and not storage.exists(corpus.root):
        raise RecipeInputError(f"{corpus.root}: no such folder (the {corpus.name} corpus root)")
    if corpus.name == "sources":
        check_sources(corpus.sources)


def check_sources(sources: list[str] | None) -> None:
    """A "sources" corpus names one or more speaker-labelled folders, each of them there."""
    from deepclust.corpora.sources import CorpusSource

    if not sources:
        raise RecipeInputError(
            "the sources corpus needs one or more speaker-labelled folders: --source [NAME:]ROOT[=PATTERN], repeated"
        )
    for text in sources:
        root = CorpusSource.parse(text).root
        if not storage.exists(root):
            raise RecipeInputError(f"{root}: no such folder (a --source of the sources corpus)")


def check_precisions(config: ReproduceConfig) -> None:
    """Refuse (``RunSettingError``, exit 2) a training or separation device or precision this machine cannot run,
    e.g. ``--set train.precision=bf16`` on an AVX2-only CPU or ``--device cuda`` without a GPU, before any stage
    rather than in the training stage."""
    from deepclust.model.device import inference_precision, resolve_precision, usable_device

    resolve_precision(config.train.precision, usable_device(config.train.device))
    inference_precision(config.separate.precision, usable_device(config.separate.device))


def _read(url: str):
    from deepclust.mixing.mixlist import read_mix_list

    try:
        return read_mix_list(url, uniform=True)
    except ValueError as error:  # names the list and the line
        raise RecipeInputError(f"mix list in the wrong format: {error}") from None
