"""The one driver that runs any stage: ``run_stage(plan, map_units)``.

It reuses a committed stage, else maps ``run_unit`` over the units that are not done yet, sweeps temporary
files of killed writers, merges the results and commits. A plan carries its ``StageDefinition``
(``deepclust.pipeline.plan``), so the driver needs no registry: it runs whatever stage it is handed.
Without Prefect ``map_units`` is a loop here (``run_units_here``: transient faults retried, a progress line
per unit); the Prefect flows (``flows/stages.py``) pass a mapper that submits each unit as a task, so both
paths share everything else.
"""

from __future__ import annotations

import os
import time
from typing import Callable

from deepclust import storage
from deepclust.faults.transient import call_with_retries
from deepclust.pipeline.plan import StagePlan
from deepclust.storage.manifests import validate

__all__ = ["run_stage", "run_units_here", "run_unit", "finish", "remove_stale_temp_files", "ProgressLine"]


def run_unit(plan: StagePlan, unit: dict):
    """Run one unit of a stage: the stage's ``compute_unit`` unless the unit is done (a finished unit returns its
    recorded result). The one ``run_unit``: the plain loop and the Prefect task both call it."""
    return plan.stage.compute_once(unit["id"], lambda: plan.definition.compute_unit(plan, unit))


def finish(plan: StagePlan, results: list) -> str:
    """Merge unit results, write the manifest and the marker; returns the manifest URL."""
    if plan.stage.is_complete():
        return plan.manifest_url
    remove_stale_temp_files(plan.stage.url)
    manifest, info = plan.definition.finish(plan, results)
    validate(manifest, plan.definition.manifest_kind, plan.manifest_url)  # never commit a manifest of the wrong shape
    return plan.stage.commit(manifest, info)


def remove_stale_temp_files(stage_url: str) -> None:
    """A process killed inside an atomic write leaves a ``.tmp-*`` file (never a partial shard: the real
    name appears only by rename). Once every unit is done nothing is writing, so sweep them."""
    if not storage.is_local(stage_url):
        return  # object-store writes are single PUTs: no temporary files
    root = storage.absolute(stage_url)
    for folder, _, names in os.walk(root):
        for name in names:
            if name.startswith(".tmp-"):
                try:
                    os.unlink(os.path.join(folder, name))
                except FileNotFoundError:
                    pass


class ProgressLine:
    """``[features] 12/40 units, 31 s, ~72 s left``: one line per finished unit (and at most one every
    ``every_seconds`` for many small units), readable in a terminal, a log file or CI output alike. The one
    progress printer: stages count ``units``, the separation job ``inputs`` (``callback()``)."""

    def __init__(
        self,
        name: str,
        total: int,
        done: int = 0,
        log: Callable = print,
        every_seconds: float = 5.0,
        what: str = "units",
    ):
        self.name, self.total, self.done, self.log, self.what = name, total, done, log, what
        self.every_seconds = every_seconds
        self.began = time.perf_counter()
        self.first = done
        self.shown_at = 0.0

    def advance(self) -> None:
        """One more unit finished: print a line (at most every ``every_seconds``, and the last)."""
        self.show(self.done + 1)

    def show(self, done: int, total: int | None = None) -> None:
        """``done`` of ``total`` (default: as constructed) finished: print a line (at most every ``every_seconds``,
        and the last)."""
        self.done = done
        self.total = self.total if total is None else total
        elapsed = time.perf_counter() - self.began
        if self.done < self.total and elapsed - self.shown_at < self.every_seconds:
            return
        self.shown_at = elapsed
        rate = (self.done - self.first) / elapsed if elapsed > 0 else 0.0
        left = f", ~{(self.total - self.done) / rate:.0f} s left" if rate > 0 and self.done < self.total else ""
        self.log(f"[{self.name}] {self.done}/{self.total} {self.what}, {elapsed:.0f} s{left}")

    @classmethod
    def callback(cls, name: str, log: Callable = print, what: str = "inputs", every_seconds: float = 0.0) -> Callable:
        """A ``progress(done, total)`` function printing these lines (the separation job's progress hook)."""
        line = cls(name, 0, log=log, every_seconds=every_seconds, what=what)
        return line.show


def run_units_here(plan: StagePlan, log: Callable = print) -> list:
    """The plain mapper: the units one after another in this process, transient faults retried."""
    pending = {u["id"] for u in plan.units if plan.stage.unit_result(u["id"]) is None}
    progress = ProgressLine(plan.stage.name, len(plan.units), len(plan.units) - len(pending), log)
    results = []
    for unit in plan.units:
        results.append(call_with_retries(lambda: run_unit(plan, unit), what=f"{plan.stage.name} unit {unit['id']}"))
        if unit["id"] in pending and len(plan.units) > 1:
            progress.advance()
    return results


def run_stage(
    plan: StagePlan, map_units: Callable | None = None, log: Callable = print, finish_stage: Callable | None = None
) -> str:
    """Run a stage: reuse it when committed, else run its missing units (``map_units(plan) -> results``,
    default ``run_units_here``), then commit (``finish_stage(plan, results)``, default ``finish``)."""
    finish_stage = finish_stage or finish
    if plan.stage.is_complete():
        log(f"[{plan.stage.name}] reused {plan.stage.url}")
        return finish_stage(plan, [])
    began = time.perf_counter()
    results = map_units(plan) if map_units else run_units_here(plan, log)
    url = finish_stage(plan, results)
    log(f"[{plan.stage.name}] {len(plan.units)} units in {time.perf_counter() - began:.1f} s -> {plan.stage.url}")
    return url
