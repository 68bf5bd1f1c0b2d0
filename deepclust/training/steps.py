"""The steps of training: this run's torch settings, the precision and compiling it resolves to, one epoch of
optimiser steps and the validation pass."""

from __future__ import annotations

import contextlib
from typing import Iterable

import torch

from deepclust.model.device import autocast_dtype, resolve_precision
from deepclust.training.config import TrainConfig
from deepclust.training.objective import batch_loss

COMPILE_MIN_STEPS = 1000  # compiling costs ~40 s per shape and gains ~0.7 s per step (16 x 400, 2 cores)


@contextlib.contextmanager
def torch_settings(config: TrainConfig, device: torch.device):
    """Threads and deterministic kernels for this run only; restored afterwards (we are a library)."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    # On CPU every kernel used here has a deterministic variant, so a seed fixes the model bit for bit.
    # On CUDA, cuDNN's LSTM backward and cuBLAS need more (CUBLAS_WORKSPACE_CONFIG) and are slower; we
    # accept run-to-run noise there rather than warn on every step.
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
        # Deterministic mode also NaN-fills every new tensor, a debugging aid against reads of uninitialised
        # memory that reproducibility does not need: 11 % of a bf16 step by profile (aten::fill_).
        torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.utils.deterministic.fill_uninitialized_memory = fill


def train_epoch(
    model,
    optimiser,
    scaler,
    batches: Iterable[dict],
    device,
    amp_dtype,
    grad_clip: float,
    config: TrainConfig | None = None,
    compile: bool = False,
) -> list[float]:
    """One pass of Adam steps over ``batches``; returns the loss of every step. ``compile``: the heads and
    losses through ``torch.compile`` (``deepclust.training.objective``)."""
    model.train()
    losses = []
    for batch in batches:
        loss = batch_loss(model, batch, device, amp_dtype, config, compile)
        optimiser.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimiser)  # clip the true gradient, not the loss-scaled one
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimiser)
        scaler.update()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def evaluate(
    model,
    batches: Iterable[dict],
    device: torch.device,
    amp_dtype=None,
    config: TrainConfig | None = None,
    compile: bool = False,
) -> float:
    """Mean loss per chunk over deterministic validation batches."""
    model.eval()
    total, count = 0.0, 0
    for batch in batches:
        size = batch["log_mag"].shape[0]
        total += batch_loss(model, batch, device, amp_dtype, config, compile).item() * size
        count += size
    if count == 0:
        raise ValueError("the validation set yields no chunk with a non-zero weight")
    return total / count


def amp_dtype_of(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on a CPU with AMX/AVX-512 BF16 (``precision="auto"``), CUDA's amp, or None (float32)."""
    precision = resolve_precision(config.precision, device)
    if precision == "amp" and not config.amp:
        return None
    return autocast_dtype(precision, device)


def compile_wanted(config: TrainConfig, device: torch.device) -> bool:
    """``compile="auto"``: on for runs long enough to repay it (about 40 s of compiling per batch shape on
    2 cores), on the CPU only; "on" / "off" as said."""
    if config.compile != "auto":
        return config.compile == "on"
    planned = (config.steps_per_epoch or 0) * config.max_epochs
    return device.type == "cpu" and planned >= COMPILE_MIN_STEPS
