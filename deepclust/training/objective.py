"""The training objective of one batch: the deep clustering loss, and Chimera++'s mask loss beside it.

Where the time goes on a CPU (benchmarks/bench_train_step.py): the BLSTM's recurrence, then the per-bin
work of the heads and losses (tanh, normalising 20-dim embeddings of every bin, sigmoid masks, the
permutation-invariant L1, casts), which in eager mode is a chain of separate passes over tensors of
``batch x frames x freq x emb`` values, forward and backward. ``compile=True`` hands the heads and the
losses, as one function, to ``torch.compile`` (inductor, gcc on CPU): those passes fuse into a few loops.
The BLSTM itself is left eager: oneDNN's RNN kernel is already one call, and compiling it gained nothing.
"""

from __future__ import annotations

import torch

from deepclust.model.blstm import DeepClusteringNet
from deepclust.model.chimera_loss import mask_inference_loss, whitened_deep_clustering_loss
from deepclust.model.device import autocast
from deepclust.model.distillation_loss import distillation_loss
from deepclust.model.loss import deep_clustering_loss
from deepclust.model.waveform_loss import waveform_snr_loss
from deepclust.training.config import TrainConfig


def combined_loss(
    embeddings: torch.Tensor,
    masks: torch.Tensor | None,
    target: torch.Tensor,
    weight: torch.Tensor,
    mixture_mag: torch.Tensor | None,
    psa_target: torch.Tensor | None,
    n_sources: int,
    dc_loss: str,
    mask_loss_weight: float,
    psa_share: float = 1.0,
) -> torch.Tensor:
    """The loss of the heads' outputs, a scalar (float32 whatever the autocast).

    ``embeddings`` ``(batch, frames, freq, emb)``; ``masks`` ``(batch, K, frames, freq)`` or None;
    ``target`` int64 / ``weight`` float ``(batch, frames, freq)``; ``mixture_mag`` ``(batch, frames, freq)``
    and ``psa_target`` ``(batch, K, frames, freq)`` or None (no mask loss). The deep clustering loss is
    Hershey et al.'s Eq. 3 (``"classic"``) or Chimera++'s whitened L_DC,W; with a mask head for K sources,
    ``(1 - w) * L_DC + w * L_MI`` (Wang et al. 2018); ``psa_share`` < 1 leaves the rest of ``w`` to the
    waveform loss that ``batch_loss`` adds.
    """
    loss_of = whitened_deep_clustering_loss if dc_loss == "whitened" else deep_clustering_loss
    loss = loss_of(embeddings.flatten(1, 2), target.flatten(1), weight.flatten(1), n_sources)
    if masks is not None and psa_target is not None and psa_target.shape[1] == masks.shape[1]:
        loss = (1 - mask_loss_weight) * loss
        if psa_share > 0:  # psa_share 0 (all of the mask term to the waveform loss): no PSA forward or backward
            loss = loss + mask_loss_weight * psa_share * mask_inference_loss(masks, mixture_mag, psa_target)
    return loss


def heads_and_loss(
    model: DeepClusteringNet, hidden: torch.Tensor, amp_dtype: torch.dtype | None, *loss_arguments
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The heads on the trunk's ``hidden`` ``(batch, frames, 2 * hidden)``, then ``combined_loss``; returns
    the loss, the masks (None without a mask head), which the waveform loss resynthesises outside, and the
    embeddings (a teacher's targets are matched outside too)."""
    with autocast(hidden.device, amp_dtype):
        outputs = model.apply_heads(hidden)
    masks = outputs.get("masks")
    return combined_loss(outputs["embeddings"], masks, *loss_arguments), masks, outputs["embeddings"]


_compiled_heads_and_loss = None


def _compiled():
    global _compiled_heads_and_loss
    if _compiled_heads_and_loss is None:
        # dynamic=False: one specialised kernel per batch shape (training has one or two).
        _compiled_heads_and_loss = torch.compile(heads_and_loss, dynamic=False)
    return _compiled_heads_and_loss


def batch_loss(
    model,
    batch: dict,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    config: TrainConfig | None = None,
    compile: bool = False,
) -> torch.Tensor:
    """Loss of one batch: ``log_mag (batch, frames, freq)`` (+ ``target``, ``weight``, and for a mask head
    ``mixture_mag``, ``psa_target``; for the waveform loss ``mixture_spectra``, ``sources`` and
    ``stft_config``, as dynamic mixing gives them) -> scalar. ``model`` may be wrapped
    (DistributedDataParallel): its forward then runs as one call, uncompiled, so that the wrapper sees
    every parameter used.

    With ``config.waveform_loss_weight`` = b > 0 the mask term becomes ``(1 - b) L_PSA + b L_WAV``
    (``deepclust.model.waveform_loss``). The inverse STFT runs eagerly, after the compiled heads: inductor
    does not lower complex tensors. A batch a teacher annotated (``deepclust.training.teacher``: its outputs and
    ``teacher_weight`` = t) gives ``(1 - t) * that loss + t * distillation_loss``."""
    config = config or TrainConfig()
    log_mag = batch["log_mag"].to(device, non_blocking=True)
    target = batch["target"].to(device, non_blocking=True)
    weight = batch["weight"].to(device, non_blocking=True)
    psa_target = batch.get("psa_target")
    mixture_mag = batch["mixture_mag"].to(device) if "mixture_mag" in batch else None
    psa_target = psa_target.to(device) if psa_target is not None else None
    waveform_share = config.waveform_loss_weight
    if waveform_share > 0 and not {"mixture_spectra", "sources", "stft_config"} <= batch.keys():
        raise ValueError(
            "the waveform loss needs the mixtures' spectra and the talkers' waveforms, which only "
            "dynamic mixing (train-dynamic) provides; set waveform_loss_weight to 0 here"
        )
    # Sources absent from a batch give all-zero columns of Y, which add nothing to the loss.
    n_sources = max(2, int(target.max()) + 1)
    loss_arguments = (
        target,
        weight,
        mixture_mag,
        psa_target,
        n_sources,
        config.dc_loss,
        config.mask_loss_weight,
        1.0 - waveform_share,
    )
    if isinstance(model, DeepClusteringNet):
        with autocast(device, amp_dtype):  # the trunk; the heads and losses handle their own precision
            hidden = model.encode(log_mag)
        objective = _compiled() if compile else heads_and_loss
        loss, masks, embeddings = objective(model, hidden, amp_dtype, *loss_arguments)
    else:
        with autocast(device, amp_dtype):
            outputs = model(log_mag, heads=True)
        masks, embeddings = outputs.get("masks"), outputs["embeddings"]
        loss = combined_loss(embeddings, masks, *loss_arguments)
    if waveform_share > 0 and masks is not None and masks.shape[1] == batch["sources"].shape[1]:
        sources = batch["sources"].to(device)
        spectra = batch["mixture_spectra"].to(device)
        loss = loss + config.mask_loss_weight * waveform_share * waveform_snr_loss(
            masks, spectra, sources, batch["stft_config"]
        )
    share = batch.get("teacher_weight", 0.0)
    if share > 0:  # a taught run's training batch (deepclust.training.teacher)
        teacher_masks = batch.get("teacher_masks")
        distance = distillation_loss(
            embeddings,
            masks,
            batch["teacher_embeddings"].to(device),
            None if teacher_masks is None else teacher_masks.to(device),
            weight,
            mixture_mag,
        )
        loss = (1 - share) * loss + share * distance
    return loss
