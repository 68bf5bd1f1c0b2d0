"""What a training run checkpoints besides the weights: its counters, its history and every RNG's state.

A run resumed from ``checkpoints/last.pt`` restores all of them, so it continues exactly as an
uninterrupted one would.
"""

from __future__ import annotations

import io
import math
import random

import numpy as np
import pandas as pd
import torch

from deepclust import storage
from deepclust.model.checkpoint import to_plain
from deepclust.training.config import TrainConfig

STATE_FORMAT = "deepclust-train-state/1"

# The curriculum's phase (0: ``chunk_frames``; 1: ``curriculum_chunk_frames``) and the epochs trained in it are
# saved under the names they had before they were called a phase, "stage" and "stage_epochs" (the run state in
# ``checkpoints/last.pt``, and ``history.csv``'s column "stage"): kept, so old checkpoints resume and old
# histories read as before. A phase is not a pipeline stage (``deepclust.stages``).
PHASE_KEY = "stage"
PHASE_EPOCHS_KEY = "stage_epochs"


def rng_states() -> dict:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        # Plain lists, so that last.pt loads with weights_only=True (no pickled numpy objects).
        "numpy": to_plain(np.random.get_state(legacy=False)),
        "python": random.getstate(),
    }


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    numpy_state = dict(states["numpy"])
    numpy_state["state"] = {**numpy_state["state"], "key": np.asarray(numpy_state["state"]["key"], dtype=np.uint32)}
    np.random.set_state(numpy_state)
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in states["python"]))


def fresh_state() -> dict:
    return {
        "epoch": 0,  # epochs completed, all curriculum phases
        "global_step": 0,
        PHASE_KEY: 0,  # the curriculum phase: 0: chunk_frames; 1: curriculum_chunk_frames
        PHASE_EPOCHS_KEY: 0,  # epochs completed in this phase
        "best_val_loss": math.inf,
        "bad_epochs": 0,  # epochs since the validation loss last improved (patience counter)
        "train_seconds": 0.0,
        "history": [],
        "initial_val_loss": None,  # the untrained network's validation loss
    }


def phase_done(state: dict, config: TrainConfig) -> bool:
    """Whether the current curriculum phase has run out of patience or of epochs."""
    return state["bad_epochs"] >= config.patience or state[PHASE_EPOCHS_KEY] >= config.max_epochs


def write_history(out_url: str, history: list[dict]) -> None:
    buffer = io.StringIO()
    pd.DataFrame(history).to_csv(buffer, index=False)
    storage.write_bytes_atomic(storage.join(out_url, "history.csv"), buffer.getvalue().encode())
