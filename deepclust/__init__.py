"""deepclust: single-channel speech separation by deep clustering (Hershey et al., ICASSP 2016).

The front door is three names (``deepclust.api`` documents them, with examples):

- ``deepclust.separate(audio, sample_rate=None, speakers=2, model=None)``: a file or an array in, a float32 array
  ``(speakers, samples)`` out, at the model's rate (8 kHz), as ``deepclust separate`` writes it;
- ``deepclust.load_model(path=None)``: a model file, the shipped real-speech model by default;
- ``deepclust.Separator``: many waveforms through one network forward.

They are loaded on first use, so ``import deepclust`` (which every ``deepclust.<module>`` import runs first) stays
cheap: it imports neither torch nor Prefect. The library never imports Prefect: every stage runs by hand from a
notebook or a script.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deepclust import moved_modules
from deepclust.version import __version__

if TYPE_CHECKING:  # for type checkers and editors; at run time ``__getattr__`` below loads them
    from deepclust.api import Separator, load_model, separate  # noqa: F401 (re-exported through __all__)

API = ("separate", "load_model", "Separator")
__all__ = [*API, "__version__"]

moved_modules.install()  # old module paths (before issue 28's regrouping) still import, for one release


def __getattr__(name: str):
    # PEP 562: the API, and torch behind it, is imported by the first use of one of its names.
    if name in API:
        from deepclust import api

        return getattr(api, name)
    raise AttributeError(f"module 'deepclust' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(API))
