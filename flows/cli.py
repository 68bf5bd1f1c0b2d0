"""The ``deepclust`` command: the library's command line (``deepclust.cli``) with the Prefect paths added.

``main(argv)`` is the console script (pyproject.toml) and ``python -m deepclust.flows``: it calls
``deepclust.cli.main(argv, runners=RUNNERS)``, so ``deepclust reproduce`` / ``demo`` run the ``reproduce`` flow
and ``deepclust separate --prefect`` / ``--dask-address`` the ``separate-archive`` flow. Where Prefect is not
installed (it is the ``pipeline`` extra) it is the plain library command line: reproduce runs the stages by hand.
``python -m deepclust`` is always the Prefect-free one. Without a Prefect server configured (``PREFECT_API_URL``
unset) the flows run in Prefect's ephemeral mode.

    from deepclust.flows.cli import run_reproduce
    record = run_reproduce(config)        # ReproduceConfig -> run record (dict, as in run.json)
"""

from __future__ import annotations

import functools
import importlib.util
import sys

from deepclust.cli import Runners
from deepclust.reports.comparison import REGRESSION_MARGIN_DB


def prefect_available() -> bool:
    """Whether Prefect is installed (found without importing it: every ``deepclust`` command asks)."""
    return importlib.util.find_spec("prefect") is not None


def run_reproduce(
    config,
    max_workers: int | None = None,
    task_runner: str = "thread",
    use_prefect: bool | None = None,
    log=print,
    history_url: str | None = None,
    regression_margin_db: float = REGRESSION_MARGIN_DB,
) -> dict:
    """Run the whole recipe; through the ``reproduce`` flow when Prefect is installed (or
    ``use_prefect=True``), else by hand with ``deepclust.recipe.reproduce``. Both use the same stage
    store, so either can resume what the other started."""
    if use_prefect is None:
        use_prefect = prefect_available()
    if not use_prefect:
        from deepclust.recipe.reproduce import reproduce as reproduce_by_hand

        return reproduce_by_hand(config, log=log, history_url=history_url, regression_margin_db=regression_margin_db)
    from deepclust.flows.reproduce import reproduce

    state = reproduce(
        config,
        max_workers=max_workers,
        task_runner=task_runner,
        history_url=history_url,
        regression_margin_db=regression_margin_db,
        return_state=True,
    )
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


def run_separate_archive_flow(
    model_url: str,
    input_url: str,
    out_url: str,
    config,
    dask_address: str | None = None,
    max_workers: int | None = None,
) -> dict:
    """The archive job (``config``: an ``ArchiveJobConfig``) through the ``separate-archive`` flow, imported here on
    first use so that commands which run no flow never load Prefect."""
    from deepclust.flows.separate_archive import separate_archive_flow

    return separate_archive_flow(
        model_url, input_url, out_url, config, dask_address=dask_address, max_workers=max_workers
    )


RUNNERS = Runners(
    reproduce=functools.partial(run_reproduce, use_prefect=True), separate_archive_flow=run_separate_archive_flow
)


def main(argv=None) -> None:
    """The ``deepclust`` console script: ``deepclust.cli.main`` with the Prefect runners where Prefect is
    installed, else the plain library command line."""
    from deepclust.cli import main as library_main

    library_main(argv, runners=RUNNERS if prefect_available() else None)


if __name__ == "__main__":
    sys.exit(main())
