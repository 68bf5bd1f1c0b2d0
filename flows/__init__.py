"""Prefect flows, installed as ``deepclust.flows``: one per stage (``flows.stages``), ``flows.reproduce.reproduce``
that chains them, and ``flows.separate_archive``; ``deepclust.flows.cli`` is the ``deepclust`` command
(``python -m deepclust.flows``), which runs them.

Import the end-to-end flow as ``from deepclust.flows.reproduce import reproduce``. The stage flows are loaded lazily, so
``deepclust.flows.cli`` can be imported (and fall back to the library) where Prefect is not installed.
"""

LAZY_FLOWS = ("make_corpus", "make_mixtures", "extract_features", "train", "separate", "evaluate")

__all__ = list(LAZY_FLOWS)


def __getattr__(name: str):
    if name in LAZY_FLOWS:
        from deepclust.flows import stages

        return getattr(stages, name)
    raise AttributeError(f"module 'flows' has no attribute {name!r}")
