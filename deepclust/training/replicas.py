"""The seam for data-parallel training: ``fit`` as one of several processes (the default: one process)."""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass
from typing import Callable, Iterable


def _identity(value):
    return value


def _nothing() -> None:
    return None


def _no_context(model):
    return contextlib.nullcontext()


@dataclass
class Replicas:
    """``fit`` as one of ``world_size`` data-parallel processes; the default is a single process.

    ``deepclust.training.distributed`` fills it in for torch.distributed: ``wrap`` turns the network into
    the one that takes the training steps (DistributedDataParallel, which averages gradients);
    ``uneven(trained)`` is the context of one training epoch, in which processes may run out of batches
    at different steps (DDP's ``join``); ``mean`` averages a float over all processes, so that every
    process takes the same decisions (best model, early stopping, time budget); ``barrier`` waits for
    them all. Only rank 0 writes files; ``shard`` keeps this process's share of the training items.
    """

    rank: int = 0
    world_size: int = 1
    wrap: Callable = _identity
    uneven: Callable = _no_context
    mean: Callable[[float], float] = _identity
    barrier: Callable[[], None] = _nothing

    @property
    def writes(self) -> bool:
        """Whether this process writes the files (rank 0 only)."""
        return self.rank == 0

    def shard(self, items: Iterable[dict]) -> Iterable[dict]:
        """Every ``world_size``-th item from ``rank`` on: disjoint shares of a stream every rank sees in
        the same (seeded) order."""
        return items if self.world_size == 1 else itertools.islice(items, self.rank, None, self.world_size)
