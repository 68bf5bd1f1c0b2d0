"""The library's version: a stage key fingerprints it (``deepclust.pipeline.store``), so it sits in the base layer,
apart from ``deepclust/__init__``, which is the front door above every layer (``deepclust.api``)."""

__version__ = "0.1.0"
