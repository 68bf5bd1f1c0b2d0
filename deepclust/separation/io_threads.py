"""A background thread for reading or writing beside the network, or none (the same interface either way)."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor


class _InlineExecutor:
    """``submit`` runs the call at once: ``ThreadPoolExecutor``'s interface without the thread."""

    def submit(self, function, *args) -> Future:
        future = Future()
        try:
            future.set_result(function(*args))
        except BaseException as error:
            future.set_exception(error)
        return future

    def __enter__(self) -> "_InlineExecutor":
        return self

    def __exit__(self, *exc) -> None:
        pass


def io_executor(overlap: bool, name: str):
    """One background thread for reading or writing beside the network (``overlap``), or none: a context
    manager with ``submit``. Leaving it waits for what was submitted (no thread outlives its files)."""
    return ThreadPoolExecutor(1, thread_name_prefix=name) if overlap else _InlineExecutor()
