"""Draw the next training batch while the current one trains: a bounded background producer.

Drawing a dynamically mixed batch (crops, P.56 levels, augmentation, one STFT) is numpy and torch work
that releases the GIL for most of its time, and the BLSTM's recurrence leaves part of the cores idle, so
the two overlap well (benchmarks/bench_train_step.py measures it). The order of batches is the order of
the wrapped iterator: a prefetched run is bit-identical to an unprefetched one.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator

_DONE = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def prefetched(items: Iterable, depth: int = 2) -> Iterator:
    """Yield ``items`` in order, produced up to ``depth`` ahead by a daemon thread (``depth`` 0: inline).

    An exception raised by the producer is raised here, at the item where it happened. Closing the
    generator early (``break``) stops the producer after the item it is making."""
    if depth <= 0:
        yield from items
        return
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(_DONE)
        except BaseException as error:  # handed to the consumer, raised there
            buffer.put(_Failure(error))

    worker = threading.Thread(target=produce, name="deepclust-batch-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                buffer.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.05)
