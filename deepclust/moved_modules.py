"""Module paths that changed in the front-door reorganisation (issue 28), still importable for one release.

``import deepclust.errors`` (and ``from deepclust.device import ...``) find the module at its new path, with a
FutureWarning naming it, instead of an ImportError: user code written against the old layout keeps working while
its owner updates the imports. The finder answers only for the names below and returns the new module itself, so
``deepclust.errors.RunFaultError is deepclust.faults.errors.RunFaultError``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

# old path -> new path (loose top-level modules grouped into subpackages; stage modules named for their stage)
MOVED = {
    "deepclust.errors": "deepclust.faults.errors",
    "deepclust.transient": "deepclust.faults.transient",
    "deepclust.storage_lock": "deepclust.storage.lock",
    "deepclust.manifest_log": "deepclust.storage.manifest_log",
    "deepclust.manifests": "deepclust.storage.manifests",
    "deepclust.workspace": "deepclust.storage.workspace",
    "deepclust.audio_blocks": "deepclust.audio.blocks",
    "deepclust.audio_reasons": "deepclust.audio.reasons",
    "deepclust.downmix": "deepclust.audio.downmix",
    "deepclust.archive_processes": "deepclust.archive.processes",
    "deepclust.device": "deepclust.model.device",
    "deepclust.real_example": "deepclust.evaluation.real_example",
    "deepclust.stages.training": "deepclust.stages.train",
    "deepclust.stages.separation": "deepclust.stages.separate",
    "deepclust.stages.evaluation": "deepclust.stages.evaluate",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str):
        self.new = new

    def create_module(self, spec):
        return importlib.import_module(self.new)  # the module itself, not a copy

    def exec_module(self, module):
        pass  # already executed at its new path


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds an old module path of ``MOVED`` (and only those) as the module at its new path."""

    def find_spec(self, fullname, path=None, target=None):
        new = MOVED.get(fullname)
        if new is None:
            return None
        warnings.warn(f"{fullname} is now {new}; the old path goes in the next release", FutureWarning, stacklevel=2)
        return importlib.util.spec_from_loader(fullname, _Alias(new))


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (``import deepclust`` calls this)."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
