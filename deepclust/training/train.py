"""The training loop: ``fit`` trains on any items (or a batch source) with early stopping and exact resume.

``deepclust.training.from_features.train`` feeds it a feature folder; ``dynamic_train`` feeds it freshly mixed
speech. The rooms beside it: ``steps`` (torch settings, precision, one epoch of steps, validation),
``run_state`` (counters, history, RNG states), ``replicas`` (data-parallel processes), ``objective``
(the losses).

Outputs under ``out_url``:
- ``model.pt``: the best model so far by validation loss (``deepclust.model.save_model``);
- ``checkpoints/last.pt``: the full training state after every epoch (model, optimiser, grad scaler,
  counters, early-stopping state, history, RNG states). Chunk sampling draws from an RNG seeded by
  ``(seed, epoch)``, so a run resumed from ``last.pt`` continues exactly as an uninterrupted one;
- ``history.csv``: one row per epoch (epoch, stage, chunk_frames, train_loss, val_loss, seconds, ...); its
  column ``stage`` is the curriculum phase (``run_state.PHASE_KEY``: the saved name is kept).
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
from typing import Callable, Iterable

import numpy as np
import torch

from deepclust import storage
from deepclust.model.blstm import DeepClusteringNet, ModelConfig
from deepclust.model.checkpoint import save_model
from deepclust.model.device import resolve_precision, usable_device
from deepclust.model.lineage import (
    RUN_FACTS,
    SNAPSHOTS,
    ParentModel,
    parent_link,
    run_facts,
    run_link,
    snapshot_facts_url,
)
from deepclust.training.chunks import ItemSource, training_batches, validation_batches
from deepclust.training.config import TrainConfig
from deepclust.training.prefetch import prefetched
from deepclust.training.replicas import Replicas
from deepclust.training.run_state import (
    PHASE_EPOCHS_KEY,
    PHASE_KEY,
    STATE_FORMAT,
    fresh_state,
    phase_done,
    rng_states,
    set_rng_states,
    write_history,
)
from deepclust.training.steps import amp_dtype_of, compile_wanted, evaluate, torch_settings, train_epoch
from deepclust.training.teacher import TaughtBatches

log = logging.getLogger(__name__)


class _Run:
    """One training run's moving parts (model, optimiser, scaler, counters) and what it does between steps:
    validate, checkpoint, keep the best model, adjust the learning rate, log. ``fit`` reads as the loop."""

    def __init__(
        self,
        out_url: str,
        model_config: ModelConfig,
        config: TrainConfig,
        replicas: "Replicas",
        device: torch.device,
        feature_stats,
        feature_config: dict | None,
        extra: dict | None,
        train_items,
        val_source: Callable[[], Iterable[dict]],
        batch_source,
        init_from: "str | ParentModel | None" = None,
        teacher=None,
    ):
        self.config, self.model_config, self.replicas, self.device = config, model_config, replicas, device
        self.amp_dtype = amp_dtype_of(config, device)
        self.compile = compile_wanted(config, device)
        self.out_url = out_url
        self.model_url = storage.join(out_url, "model.pt")
        self.last_url = storage.join(out_url, "checkpoints", "last.pt")
        self.feature_stats, self.feature_config, self.extra = feature_stats, feature_config or {}, extra or {}
        self.train_items, self.val_source, self.batch_source = train_items, val_source, batch_source
        torch.manual_seed(config.seed)
        self.model = DeepClusteringNet(model_config).to(device)
        self.optimiser = self.new_optimiser()
        # Loss scaling is needed for fp16 only; bf16 has float32's exponent range.
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.state = fresh_state()
        self.trained = None  # replicas.wrap(model), set by ``start``
        self.init_from = init_from  # read only if this run does not resume from its own checkpoint
        self.parent_url = init_from.url if isinstance(init_from, ParentModel) else init_from
        self.lineage: list[dict] = []  # the links before this run (warm start), see deepclust.model.lineage
        self.teacher = teacher  # deepclust.training.teacher.Teacher: its outputs are extra targets

    def new_optimiser(self):
        """A fresh Adam over the model's parameters at the configured learning rate."""
        return torch.optim.Adam(self.model.parameters(), lr=self.config.learning_rate)

    def frames(self, phase: int | None = None) -> int:
        """Chunk length of a curriculum phase (default: the current one): ``chunk_frames``, then
        ``curriculum_chunk_frames``."""
        phase = self.state[PHASE_KEY] if phase is None else phase
        return self.config.chunk_frames if phase == 0 else self.config.curriculum_chunk_frames

    def start(self, resume: bool) -> None:
        """Resume from ``checkpoints/last.pt`` when asked and present; measure the untrained loss once."""
        if resume and storage.exists(self.last_url):
            with storage.open_url(self.last_url, "rb") as handle:
                saved = torch.load(io.BytesIO(handle.read()), map_location="cpu", weights_only=True)
            if saved["model_config"] != self.model_config.to_dict():
                raise ValueError(
                    f"{self.last_url}: checkpoint has model config {saved['model_config']}, "
                    f"asked for {self.model_config.to_dict()}; use another out_url or resume=False"
                )
            self.model.load_state_dict(saved["model"])
            self.optimiser.load_state_dict(saved["optimiser"])
            self.scaler.load_state_dict(saved["scaler"])
            self.state = saved["state"]
            set_rng_states(saved["rng"])
            self.lineage = saved.get("lineage", [])
            log.info("resumed from %s after epoch %d", self.last_url, self.state["epoch"])
        else:
            if self.init_from is not None:
                init = self.init_from
                self.warm_start(init if isinstance(init, ParentModel) else ParentModel.read(init))
            if self.teacher is not None:
                self.taught_by(self.teacher)
        self.trained = self.replicas.wrap(self.model)  # takes the steps; ``model`` (the same parameters) is saved
        if self.state.get("initial_val_loss") is None:
            # The untrained network's validation loss: curves (and tests) then show the whole descent,
            # most of which happens inside the first epoch.
            self.state["initial_val_loss"] = self.val_loss(self.frames(0))

    def warm_start(self, parent: ParentModel) -> None:
        """Start from a model file's weights (same network config) with a fresh optimiser.

        The epoch and step counters continue the parent's, so the seeded batch stream goes on where the
        parent stopped (batch i of epoch e depends on (seed, e, i) only) instead of replaying it; the
        parent's lineage plus a link for the parent itself is kept and saved with every model of this run.
        """
        loaded = parent.loaded
        grown = self.model_config.grows(loaded.model_config)
        if loaded.model_config != self.model_config and not grown:
            raise ValueError(
                f"{parent.url}: --init-from needs the same network, or the same with more residual "
                f"layers; the file has {loaded.model_config.to_dict()}, this run asks for "
                f"{self.model_config.to_dict()}"
            )
        weights = {k: v.float() for k, v in loaded.model.state_dict().items()}
        missing, unexpected = self.model.load_state_dict(weights, strict=not grown)
        new_layers = tuple(
            f"residual.{i}." for i in range(loaded.model_config.residual_layers, self.model_config.residual_layers)
        )
        if unexpected or any(not key.startswith(new_layers) for key in missing):
            raise ValueError(
                f"{parent.url}: growing the network left weights unmatched (missing {missing}, unexpected {unexpected})"
            )
        if grown:  # the lineage says the network changed at this link, and from what
            self.state["grown_from"] = loaded.model_config.to_dict()
        self.state["epoch"] = int(loaded.extra.get("epoch") or 0)
        self.state["global_step"] = int(loaded.extra.get("global_step") or 0)
        self.lineage = parent_link(parent.url, loaded.extra)
        self.state.update(
            parent_sha256=self.lineage[-1]["result_sha256"],
            warm_start_step=self.state["global_step"],
            warm_start_epoch=self.state["epoch"],
        )
        log.info(
            "warm start from %s (epoch %d, step %d; %d links of lineage)",
            parent.url,
            self.state["epoch"],
            self.state["global_step"],
            len(self.lineage),
        )

    def taught_by(self, teacher) -> None:
        """Record the teacher in this run's link (``taught_by``: its file, sha256, network, steps, weight). A run
        that does not warm-start inherits the teacher's lineage: those runs made what it learns from."""
        link = parent_link(teacher.parent.url, teacher.parent.loaded.extra)
        self.state["taught_by"] = {**teacher.link(), "sha256": link[-1]["result_sha256"]}
        if self.init_from is None:
            self.lineage = link
        log.info("taught by %s (weight %.2f of each step's loss)", teacher.parent.url, teacher.weight)

    def val_loss(self, frames: int) -> float:
        """Validation loss on chunks of ``frames`` frames, averaged over the processes so that all decide alike."""
        config = self.config
        if self.batch_source is not None:
            batches = self.batch_source.validation_batches(frames, config.batch_size)
        else:
            batches = validation_batches(self.val_source(), self.feature_stats, frames, config.batch_size)
        return self.replicas.mean(evaluate(self.model, batches, self.device, self.amp_dtype, config, self.compile))

    def phase_done(self) -> bool:
        """Whether the current curriculum phase has run out of patience or of epochs."""
        return phase_done(self.state, self.config)

    def next_phase(self) -> bool:
        """Start the curriculum's long-chunk phase if there is one left; False when training is over.

        Curriculum (Isik et al. 2016): restart from the best short-chunk model on longer chunks. The new
        phase's best is the old model's loss on the new chunks, so model.pt is only replaced by a model
        that is better on them.
        """
        if self.state[PHASE_KEY] != 0 or not self.config.curriculum_chunk_frames:
            return False
        if storage.exists(self.model_url):  # absent only if no epoch ever gave a finite val loss
            best = io.BytesIO(storage.read_bytes(self.model_url))
            self.model.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"])
        self.optimiser = self.new_optimiser()
        self.state.update({PHASE_KEY: 1, PHASE_EPOCHS_KEY: 0, "bad_epochs": 0})
        self.state["best_val_loss"] = self.val_loss(self.frames(1))
        log.info(
            "curriculum phase 2: chunks of %d frames, from the best model of phase 1 (validation loss %.4f "
            "on the new chunks)",
            self.frames(1),
            self.state["best_val_loss"],
        )
        self.save_state()
        self.replicas.barrier()
        return True

    def out_of_time(self) -> bool:
        """Whether the run has used up ``max_train_seconds`` (resumes included)."""
        cap = self.config.max_train_seconds
        return cap is not None and self.state["train_seconds"] >= cap

    def epoch_batches(self):
        """The epoch's batches; they depend on (seed, epoch) only: nothing about sampling is checkpointed."""
        config, frames = self.config, self.frames()
        if self.batch_source is not None:
            # Each process draws its own batches: (seed, epoch, rank) seeds them.
            batches = self.batch_source.training_batches(
                [config.seed, self.state["epoch"], self.replicas.rank],
                frames,
                config.batch_size,
                config.steps_per_epoch,
            )
        else:
            batches = training_batches(
                self.train_items,
                self.feature_stats,
                frames,
                config.batch_size,
                [config.seed, self.state["epoch"]],
                config.steps_per_epoch,
                config.shuffle_buffer,
            )
        return prefetched(batches, config.prefetch_batches)  # the same batches, drawn while the last one trains

    def train_one_epoch(self) -> list[float]:
        """One epoch of optimiser steps on the wrapped network; returns the loss of every step."""
        with self.replicas.uneven(self.trained):
            return train_epoch(
                self.trained,
                self.optimiser,
                self.scaler,
                self.epoch_batches(),
                self.device,
                self.amp_dtype,
                self.config.grad_clip,
                self.config,
                self.compile,
            )

    def end_epoch(self, losses: list[float], val_loss: float, seconds: float, val_seconds: float) -> dict:
        """Early-stopping counters, the best model, learning-rate halving, history, snapshot, checkpoint."""
        config, state = self.config, self.state
        state["global_step"] += len(losses)
        state["epoch"] += 1
        state[PHASE_EPOCHS_KEY] += 1
        state["train_seconds"] += seconds
        improved = val_loss < state["best_val_loss"] - config.min_delta
        if improved:
            state["best_val_loss"], state["bad_epochs"] = val_loss, 0
            self.save_model(self.model_url, {"best_val_loss": val_loss, "chunk_frames": self.frames()})
        else:
            state["bad_epochs"] += 1
            if config.lr_halving_patience and state["bad_epochs"] % config.lr_halving_patience == 0:
                self.halve_learning_rate()
        if state["epoch"] in config.lr_halving_epochs:
            self.halve_learning_rate()
        # The phase's history column keeps its saved name, "stage" (PHASE_KEY): old histories read the same.
        record = {
            "epoch": state["epoch"],
            PHASE_KEY: state[PHASE_KEY],
            "chunk_frames": self.frames(),
            "train_loss": float(np.mean(losses)) if losses else math.nan,
            "val_loss": val_loss,
            "best_val_loss": state["best_val_loss"],
            "improved": improved,
            "steps": len(losses),
            "global_step": state["global_step"],
            "seconds": seconds,
            "val_seconds": val_seconds,
            "learning_rate": self.optimiser.param_groups[0]["lr"],
        }
        state["history"].append(record)
        snapshot = None
        if config.snapshot_every and state["epoch"] % config.snapshot_every == 0:
            snapshot = storage.join(self.out_url, SNAPSHOTS, f"epoch-{state['epoch']:03d}.pt")
            self.save_model(snapshot, {"val_loss": val_loss})
        self.save_state()
        if self.replicas.writes:
            write_history(self.out_url, state["history"])
            facts = json.dumps(run_facts(state), indent=1).encode()
            storage.write_bytes_atomic(storage.join(self.out_url, RUN_FACTS), facts)
            if snapshot:  # the snapshot keeps these readings: run_facts.json moves on with the run
                storage.write_bytes_atomic(snapshot_facts_url(snapshot), facts)
        self.replicas.barrier()  # model.pt and last.pt are complete before any process reads them
        return record

    def halve_learning_rate(self) -> None:
        """Halve the learning rate of every parameter group (saved with the optimiser, so a resume keeps it)."""
        for group in self.optimiser.param_groups:  # saved with the optimiser: resumes exactly
            group["lr"] *= 0.5

    def save_model(self, url: str, facts: dict) -> None:
        """Write the model to ``url`` with its feature stats and config, counters, train config, ``facts`` (rank 0)."""
        if self.replicas.writes:
            facts = {
                **self.extra,
                "epoch": self.state["epoch"],
                "global_step": self.state["global_step"],
                **facts,
                "train_config": self.config.to_dict(),
                "precision": resolve_precision(self.config.precision, self.device),
            }
            facts["lineage"] = [*self.lineage, run_link(facts, self.state, self.parent_url)]
            save_model(url, self.model, self.feature_stats, self.feature_config, facts)

    def save_state(self) -> None:
        """Write the full training state to ``checkpoints/last.pt``, atomically (rank 0 only), for an exact resume."""
        if not self.replicas.writes:
            return
        payload = {
            "format": STATE_FORMAT,
            "model_config": self.model_config.to_dict(),
            "train_config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimiser": self.optimiser.state_dict(),
            "scaler": self.scaler.state_dict(),
            "state": self.state,
            "rng": rng_states(),
            "lineage": self.lineage,
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        storage.write_bytes_atomic(self.last_url, buffer.getvalue())

    def log_epoch(self, record: dict) -> None:
        """The console line: losses, seconds, and at most how many epochs (and minutes) are left."""
        config, state = self.config, self.state
        phases_left = 1 if state[PHASE_KEY] == 0 and config.curriculum_chunk_frames else 0
        epochs_left = max(0, config.max_epochs - state[PHASE_EPOCHS_KEY]) + phases_left * config.max_epochs
        mean_seconds = state["train_seconds"] / max(1, len(state["history"]))
        log.info(
            "epoch %d (chunks of %d, %d steps): train %.4f, val %.4f%s, %.0f s; at most %d epochs (~%.0f min) left",
            record["epoch"],
            record["chunk_frames"],
            record["steps"],
            record["train_loss"],
            record["val_loss"],
            " (best)" if record["improved"] else "",
            record["seconds"],
            epochs_left,
            epochs_left * mean_seconds / 60,
        )

    def outcome(self, stopped_reason: str) -> dict:
        """What ``fit`` returns; a ``"finished"`` run is told apart as stopped by ``patience`` or by ``max_epochs``."""
        state = self.state
        if stopped_reason == "finished":
            stopped_reason = "patience" if state["bad_epochs"] >= self.config.patience else "max_epochs"
        return {
            "model_url": self.model_url,
            "history": list(state["history"]),
            "initial_val_loss": state.get("initial_val_loss"),
            "best_val_loss": state["best_val_loss"],
            "stopped_reason": stopped_reason,
            "epochs": state["epoch"],
            "global_step": state["global_step"],
        }


def fit(
    train_items: ItemSource,
    val_items: Iterable[dict] | Callable[[], Iterable[dict]],
    out_url: str,
    model_config: ModelConfig,
    train_config: TrainConfig,
    feature_stats=None,
    feature_config: dict | None = None,
    resume: bool = True,
    progress: Callable[[dict], None] | None = None,
    replicas: Replicas | None = None,
    batch_source=None,
    extra: dict | None = None,
    init_from: "str | ParentModel | None" = None,
    teacher=None,
) -> dict:
    """Train on items (``iter_features`` dicts) and write ``model.pt``, ``checkpoints/last.pt``, ``history.csv``.

    Args:
        train_items: a list of items, or ``seed -> iterable of items`` (e.g. shards in a seeded order).
        val_items: a re-iterable list of items, or ``() -> iterable`` (read again every epoch).
        feature_stats: ``FeatureStats`` applied to every ``log_mag`` (None: already normalised).
        feature_config: stored in ``model.pt`` so separation computes the same features.
        resume: continue from ``checkpoints/last.pt`` if it exists (else start afresh and overwrite).
        progress: called with each epoch's record (a dict) after its checkpoint is written.
        replicas: run as one of several data-parallel processes (see ``Replicas``); ``train_items`` is
            then this process's share, and ``steps_per_epoch`` and ``batch_size`` are per process.
        batch_source: instead of items, an object making ready batches (e.g. ``DynamicMixing``):
            ``training_batches(seed_sequence, chunk_frames, batch_size, steps)`` and
            ``validation_batches(chunk_frames, batch_size)``; ``train_items``/``val_items`` are then ignored
            and ``steps_per_epoch`` is required.
        extra: more facts stored in ``model.pt`` (e.g. the training speakers).
        init_from: a model file (or a ``ParentModel`` already read) to warm-start from (same network; fresh
            optimiser; counters and lineage continue the parent's). Ignored when resuming from ``checkpoints/last.pt``.
        teacher: a ``deepclust.training.teacher.Teacher`` whose outputs are added to each training batch of
            ``batch_source`` (``TaughtBatches``); recorded in the lineage as ``taught_by``.

    Returns:
        ``dict(model_url, history, best_val_loss, stopped_reason, epochs, global_step)``.
    """
    if batch_source is not None and not train_config.steps_per_epoch:
        raise ValueError("training from a batch source (dynamic mixing) needs steps_per_epoch")
    if teacher is not None:
        if batch_source is None:
            raise ValueError("a teacher annotates the batches of a batch source (dynamic mixing); none was given")
        batch_source = TaughtBatches(batch_source, teacher)
    replicas = replicas or Replicas()
    device = usable_device(train_config.device)
    val_source = val_items if callable(val_items) else (lambda: val_items)
    with torch_settings(train_config, device):
        run = _Run(
            out_url,
            model_config,
            train_config,
            replicas,
            device,
            feature_stats,
            feature_config,
            extra,
            train_items,
            val_source,
            batch_source,
            init_from,
            teacher,
        )
        run.start(resume)
        while True:
            if run.phase_done():
                if run.next_phase():
                    continue
                return run.outcome("finished")
            if run.out_of_time():
                return run.outcome("time budget")
            started = time.perf_counter()
            losses = run.train_one_epoch()
            val_began = time.perf_counter()
            val_loss = run.val_loss(run.frames())
            val_seconds = time.perf_counter() - val_began
            seconds = replicas.mean(time.perf_counter() - started)  # one time budget for all processes
            record = run.end_epoch(losses, val_loss, seconds, val_seconds)
            run.log_epoch(record)
            if progress is not None:
                progress(record)
