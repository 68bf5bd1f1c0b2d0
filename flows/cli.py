"""The bridge ``deepclust reproduce`` calls: the Prefect flow when Prefect is installed, else the library.

    from flows.cli import run_reproduce
    record = run_reproduce(config)        # ReproduceConfig -> run record (dict, as in run.json)

Without a Prefect server configured (``PREFECT_API_URL`` unset) Prefect runs in its ephemeral mode.
"""

from __future__ import annotations


def prefect_available() -> bool:
    """Whether Prefect can be imported."""
    try:
        import prefect  # noqa: F401  (availability check only)
    except ImportError:
        return False
    return True


def run_reproduce(config, max_workers: int | None = None, task_runner: str = "thread", use_prefect: bool | None = None,
                  log=print, history_url: str | None = None, regression_margin_db: float = 0.5) -> dict:
    """Run the whole recipe; through the ``reproduce`` flow when Prefect is importable (or
    ``use_prefect=True``), else by hand with ``deepclust.pipeline.reproduce``. Both use the same stage
    store, so either can resume what the other started."""
    if use_prefect is None:
        use_prefect = prefect_available()
    if not use_prefect:
        from deepclust.pipeline.reproduce import reproduce as reproduce_by_hand

        return reproduce_by_hand(config, log=log, history_url=history_url, regression_margin_db=regression_margin_db)
    from flows.reproduce import reproduce

    state = reproduce(config, max_workers=max_workers, task_runner=task_runner, history_url=history_url,
                      regression_margin_db=regression_margin_db, return_state=True)
    if state.is_completed():
        return state.result()
    # A Failed run whose record was written (a quality regression) is still reported; anything else raises.
    from deepclust import storage

    run_json = storage.join(config.run_root, "run.json")
    record = storage.read_json(run_json) if storage.exists(run_json) else {}
    if not (record.get("history") or {}).get("regression"):
        state.result()  # raises the flow's error
    record["run_json"] = storage.absolute(run_json)
    return record
