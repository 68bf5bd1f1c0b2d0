"""The training recipe, one typed config whose defaults follow Hershey et al. (ICASSP 2016, Sec. 4.2).

The paper trains on 100-frame chunks with a first-order optimiser until the validation loss stops
improving; Isik et al. (Interspeech 2016) then continue on 400-frame chunks (curriculum learning),
which ``curriculum_chunk_frames=400`` reproduces. Adam at 1e-3 with gradient clipping replaces the
paper's RMSprop schedule; it converges reliably at these sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

from deepclust.pipeline.plan import JsonableConfig, execution_only


@dataclass(frozen=True)
class TrainConfig(JsonableConfig):
    """How to train the embedding network.

    chunk_frames: length of the random training windows (and of the validation chunks).
    curriculum_chunk_frames: if set, once the first curriculum phase stops (patience or ``max_epochs``)
        training continues from its best model on chunks of this length, with a fresh optimiser, as a second
        phase.
    batch_size: chunks per step. learning_rate: Adam step size. grad_clip: max global gradient norm.
    max_epochs: epochs per curriculum phase at most. steps_per_epoch: optimiser steps per epoch; None = one pass
        over the training set (every utterance cut into chunks once).
    patience / min_delta: a curriculum phase stops after ``patience`` epochs without the validation loss
        improving by more than ``min_delta``.
    seed: model initialisation, chunk sampling and dropout; the same seed gives the same model.
    device: "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...
    amp: on CUDA, autocast (bf16 where supported, else fp16 with loss scaling); False keeps float32 there.
    precision: "auto" (bf16 autocast of the network on a CPU with AMX or AVX-512 BF16, float32 on other
        CPUs, ``amp`` on CUDA), "fp32" or "bf16". Losses and normalisation stay float32 (deepclust.model.device).
    num_threads: torch intra-op threads for this run (None = leave as is).
    max_train_seconds: optional budget over the whole run, resumes included; checked at epoch ends.
    shuffle_buffer: training chunks held for shuffling; bounds memory on large sets (small sets fit whole).
    dc_loss: "classic" (Hershey et al. 2016, Eq. 3) or "whitened" (Wang et al. 2018, Chimera++'s L_DC,W).
    mask_loss_weight: 1 - alpha of Chimera++: the mask-inference loss's share when the model has a mask
        head and the batches carry phase-sensitive targets (dynamic mixing does); the rest is the DC loss.
    waveform_loss_weight: the share of the mask term given to the negative SNR of the mask head's resynthesised
        waveforms (``deepclust.model.waveform_loss``) instead of the truncated PSA loss: 0 (Chimera++ as
        published) to 1. Needs dynamic mixing, whose batches carry the talkers' waveforms.
    lr_halving_patience: halve the learning rate after this many epochs in a row without improvement
        (and again after as many more); None keeps it constant. Decided from the validation loss only,
        so a resumed run halves at the same epochs.
    lr_halving_epochs: also halve the learning rate after each of these epochs (counted over all curriculum phases):
        a fixed schedule that does not depend on how many epochs follow, so a run extended later is the run
        that would have been made with the longer budget from the start.
    snapshot_every: also keep the model of every N-th epoch as ``snapshots/epoch-NNN.pt`` (quality
        against training time, measured afterwards); None keeps only the best and the last.
    prefetch_batches: batches drawn ahead by a background thread while a step runs (0: inline); the
        batches, and so the model, are the same either way. Off by default: with 2 threads on 2 cores the
        drawing thread competed with the step's threads and halved its rate (benchmarks/RESULTS.md); it can
        only pay where a core is left free.
    compile: "auto" (on for CPU runs of at least 1,000 planned steps), "on" or "off": the heads and losses
        through torch.compile (deepclust.training.objective), which fuses their per-bin elementwise work.
    """

    chunk_frames: int = 100
    curriculum_chunk_frames: int | None = None
    batch_size: int = 32
    learning_rate: float = 1e-3
    grad_clip: float = 5.0
    max_epochs: int = 100
    steps_per_epoch: int | None = None
    patience: int = 5
    min_delta: float = 0.0
    seed: int = 0
    device: str = execution_only("auto")
    amp: bool = True
    precision: str = "auto"
    num_threads: int | None = execution_only(None)
    max_train_seconds: float | None = None
    shuffle_buffer: int = 1024
    dc_loss: str = "classic"
    mask_loss_weight: float = 0.5
    waveform_loss_weight: float = 0.0
    lr_halving_patience: int | None = None
    lr_halving_epochs: tuple[int, ...] = ()
    snapshot_every: int | None = None
    prefetch_batches: int = execution_only(0)
    compile: str = "auto"

    def __post_init__(self):
        if self.compile not in ("auto", "on", "off"):
            raise ValueError(f"compile must be 'auto', 'on' or 'off', got {self.compile!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}")
        if self.dc_loss not in ("classic", "whitened"):
            raise ValueError(f"dc_loss must be 'classic' or 'whitened', got {self.dc_loss!r}")
        if not 0.0 <= self.mask_loss_weight <= 1.0:
            raise ValueError(f"mask_loss_weight must be in [0, 1], got {self.mask_loss_weight}")
        if not 0.0 <= self.waveform_loss_weight <= 1.0:
            raise ValueError(f"waveform_loss_weight must be in [0, 1], got {self.waveform_loss_weight}")
        if self.chunk_frames < 1 or self.batch_size < 1:
            raise ValueError("chunk_frames and batch_size must be positive")
        if self.curriculum_chunk_frames is not None and self.curriculum_chunk_frames < 1:
            raise ValueError("curriculum_chunk_frames must be positive or None")
