"""A model's lineage: the chain of training runs that made it, one link per run, oldest first.

Training on 2 CPU cores outlives a session, so a release may start from the last one (``--init-from``)
instead of from zero. Each model file then records, in ``extra["lineage"]``, every run that led to it:

    {"parent_sha256": sha256 of the file this run started from (None: from scratch),
     "command": the exact command line, "steps": optimiser steps of this run, "epochs": its epochs,
     "global_step": steps of the whole chain at its end, "seed", "seconds": its training seconds,
     "data": sources, speakers and hours, mixing and augmentation config, "precision",
     "machine": host facts (CPU, cores, threads, torch), "finished_at": UTC date,
     "grown_from": the parent's network where this run grew it, "taught_by": the teacher model where one taught it}

The sha256 of a link's result is the next link's ``parent_sha256`` (the file itself cannot hold its own).
A parent made before lineage existed (the first shipped model) gets one link rebuilt from its own facts. A run taught
by a model (``--teacher``) without warm-starting inherits the teacher's chain: those runs made what it learnt from.

A training run writes ``model.pt`` as a function of its inputs, byte for byte (docs/REPRODUCIBILITY.md),
so the readings of the clock and the host (``seconds``, ``machine``, ``finished_at``) go to
``run_facts.json`` beside it instead; ``export-model`` and a warm start fold them into the link.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import platform
from dataclasses import dataclass

import pandas as pd
import torch

from deepclust import storage
from deepclust.model.checkpoint import LoadedModel, load_model


def machine_facts() -> dict:
    """What the run ran on: enough to tell a 2-core CPU box from a GPU node."""
    facts = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": str(torch.__version__),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        facts["cpu"] = names[0] if names else None
    except OSError:
        facts["cpu"] = None
    return facts


def _data_facts(extra: dict) -> dict:
    keys = ("sources", "training_seconds_of_audio", "dynamic_mix_config", "augmentation")
    data = {k: extra[k] for k in keys if k in extra}
    for key in ("training_speakers", "cv_speakers", "held_out_speakers"):
        if key in extra:
            data[f"n_{key}"] = len(extra[key])
    return data


def root_link(extra: dict) -> dict:
    """The link of a parent that predates lineage, rebuilt from the facts its file holds."""
    config = extra.get("train_config") or {}
    return {
        "parent_sha256": None,
        "command": extra.get("command"),
        "steps": extra.get("global_step"),
        "epochs": extra.get("epoch"),
        "global_step": extra.get("global_step"),
        "seed": config.get("seed"),
        "seconds": extra.get("train_seconds"),
        "data": _data_facts(extra),
        "precision": extra.get("precision", "fp32"),
        "machine": extra.get("machine"),
        "finished_at": extra.get("finished_at"),
        "rebuilt": "from the parent's own facts (it predates lineage)",
    }


RUN_FACTS = "run_facts.json"
SNAPSHOTS = "snapshots"  # the run folder's sub-folder of per-epoch models (``TrainConfig.snapshot_every``)


def run_facts_url(model_url: str) -> str:
    """Where the clock and host readings of the run that wrote ``model_url`` lie: beside it, or in the run's
    folder for a snapshot (``OUT/snapshots/epoch-NNN.pt``)."""
    folder = storage.parent(model_url)
    if is_snapshot(model_url):
        folder = storage.parent(folder)
    return storage.join(folder, RUN_FACTS)


def is_snapshot(model_url: str) -> bool:
    return storage.parent(model_url).rstrip("/").rsplit("/", 1)[-1] == SNAPSHOTS


def snapshot_facts_url(snapshot_url: str) -> str:
    """A snapshot's own readings (``epoch-NNN.facts.json``): the run's ``run_facts.json`` moves on with the run."""
    return snapshot_url.removesuffix(".pt") + ".facts.json"


def _history(run_folder: str) -> pd.DataFrame | None:
    url = storage.join(run_folder, "history.csv")
    return pd.read_csv(io.BytesIO(storage.read_bytes(url))) if storage.exists(url) else None


def facts_for(model_url: str, global_step) -> dict:
    """The clock and host readings of the run as of the model at ``global_step``.

    A snapshot's own facts file when it has one; else the run's ``run_facts.json`` if it was written at that
    step (older runs' files do not say: their history's last step does). A run that went on after the model
    (a snapshot exported while, or after, the run trained further) has later readings there: then only the
    host is taken, the seconds come from the history up to the model's step, and the date is left unknown
    rather than wrong.
    """
    own = snapshot_facts_url(model_url) if is_snapshot(model_url) else None
    if own and storage.exists(own):
        return storage.read_json(own)
    facts_url = run_facts_url(model_url)
    if not storage.exists(facts_url):
        return {}
    facts = storage.read_json(facts_url)
    history = _history(storage.parent(facts_url))
    known = history is not None and len(history) > 0 and {"global_step", "seconds"} <= set(history.columns)
    written_at = facts.get("global_step", int(history["global_step"].max()) if known else None)
    if global_step is None or written_at is None or written_at == global_step:
        return facts
    seconds = round(float(history.loc[history["global_step"] <= global_step, "seconds"].sum()), 3) if known else None
    return {"machine": facts.get("machine"), "seconds": seconds}


def with_run_facts(lineage: list[dict], model_url: str) -> list[dict]:
    """``lineage`` with the last link completed from the readings of the run as of ``model_url`` (``facts_for``)."""
    lineage = [dict(link) for link in lineage]
    if lineage:
        facts = facts_for(model_url, lineage[-1].get("global_step"))
        lineage[-1].update({k: v for k, v in facts.items() if lineage[-1].get(k) is None})
    return lineage


@dataclass(frozen=True)
class ParentModel:
    """The model file a warm start begins from, read once: its URL (the lineage names it) and its contents."""

    url: str
    loaded: LoadedModel

    @classmethod
    def read(cls, url: str) -> "ParentModel":
        return cls(url, load_model(url))


def parent_link(parent_url: str, parent_extra: dict) -> list[dict]:
    """The lineage a warm start inherits: the parent's own (or its rebuilt root link), its sha256 noted."""
    lineage = [dict(link) for link in parent_extra.get("lineage") or []] or [root_link(parent_extra)]
    lineage = with_run_facts(lineage, parent_url)
    lineage[-1]["result_sha256"] = storage.sha256_of(parent_url)
    return lineage


def run_link(facts: dict, state: dict, init_from: str | None) -> dict:
    """This run's link as of now, its deterministic part (``run_facts`` holds the clock and the host)."""
    config = facts.get("train_config") or {}
    return {
        "parent_sha256": state.get("parent_sha256"),
        "parent": os.path.basename(init_from) if init_from else None,
        "command": facts.get("command"),
        "steps": state["global_step"] - state.get("warm_start_step", 0),
        "epochs": state["epoch"] - state.get("warm_start_epoch", 0),
        "global_step": state["global_step"],
        "seed": config.get("seed"),
        "seconds": None,
        "data": _data_facts(facts),
        "precision": facts.get("precision"),
        "processes": facts.get("processes", 1),
        "machine": None,
        "finished_at": None,
        **({"grown_from": state["grown_from"]} if state.get("grown_from") else {}),
        **({"taught_by": state["taught_by"]} if state.get("taught_by") else {}),
    }


def run_facts(state: dict) -> dict:
    """The run's readings of the clock and the host, as of now."""
    return {
        "seconds": round(float(state["train_seconds"]), 3),
        "machine": machine_facts(),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "global_step": state["global_step"],
    }
