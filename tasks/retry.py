"""Prefect's retry condition: retry only transient faults (``deepclust.faults.transient``), never bad inputs."""

from __future__ import annotations

from deepclust.faults.transient import is_transient

__all__ = ["is_transient", "retry_transient"]


def retry_transient(task, task_run, state) -> bool:
    """Prefect ``retry_condition_fn``: retry only when the failure is transient."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, BaseException) and is_transient(error)
