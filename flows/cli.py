"""The bridge ``deepclust reproduce`` calls: the Prefect flow when Prefect is installed, else the library.

    from flows.cli import run_reproduce
    record = run_reproduce(config)        # ReproduceConfig -> run record (dict, as in run.json)

Without a Prefect server configured (``PREFECT_API_URL`` unset) Prefect runs in its ephemeral mode.
"""

from __future__ import annotations


def prefect_available() -> bool:
    try:
        import prefect  # noqa: F401  (availability check only)
    except ImportError:
        return False
    return True


def run_reproduce(config, max_workers: int | None = None, task_runner: str = "thread", use_prefect: bool | None = None,
                  log=print) -> dict:
    """Run the whole recipe; through the ``reproduce`` flow when Prefect is importable (or
    ``use_prefect=True``), else by hand with ``deepclust.pipeline.reproduce``. Both use the same stage
    store, so either can resume what the other started."""
    if use_prefect is None:
        use_prefect = prefect_available()
    if not use_prefect:
        from deepclust.pipeline.reproduce import reproduce as reproduce_by_hand

        return reproduce_by_hand(config, log=log)
    from flows.reproduce import reproduce

    return reproduce(config, max_workers=max_workers, task_runner=task_runner)
