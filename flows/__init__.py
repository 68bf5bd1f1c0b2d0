"""Prefect flows: one per stage, and ``flows.reproduce.reproduce`` that chains them.

``python -m flows.reproduce --help`` (or ``python -m flows``) runs the end-to-end flow. Import the
end-to-end flow as ``from flows.reproduce import reproduce``.
"""

from flows.stages import evaluate, extract_features, make_corpus, make_mixtures, separate, train

__all__ = ["evaluate", "extract_features", "make_corpus", "make_mixtures", "separate", "train"]
