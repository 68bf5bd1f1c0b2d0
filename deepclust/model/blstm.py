"""The deep clustering embedding network: a BLSTM that maps each time-frequency bin to a unit vector.

Hershey, Chen, Le Roux, Watanabe, "Deep clustering: discriminative embeddings for segmentation and
separation", ICASSP 2016 (arXiv:1508.04306), Sec. 4: two BLSTM layers, a linear layer to
``freq * emb`` outputs, tanh, and unit-normalisation of each bin's embedding (Eq. 1, ``|v_i| = 1``).
Isik et al., "Single-channel multi-speaker separation using deep clustering", Interspeech 2016
(DPCL++): four BLSTM layers of 300 units per direction, dropout 0.3 between layers.
Wang, Le Roux, Hershey, "Alternative objective functions for deep clustering", ICASSP 2018 (Chimera++):
the same BLSTM feeds a second, mask-inference head, ``mask_heads`` masks per bin (sigmoid), trained with
a truncated phase-sensitive approximation; separation can then read the masks directly (no k-means).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from deepclust.pipeline.plan import JsonableConfig

_PRESETS = {
    # Hershey et al. 2016: 2 BLSTM layers of 600 cells = 300 per direction, D = 20 (Sec. 4.2).
    "paper": dict(n_freq=129, hidden=300, layers=2, emb_dim=20, dropout=0.0),
    # Isik et al. 2016 (DPCL++): deeper network with dropout; embedding size unchanged.
    "dpcl++": dict(n_freq=129, hidden=300, layers=4, emb_dim=20, dropout=0.3),
    # Wang et al. 2018 (Chimera++), sized for CPU training: the paper's 2 x 300 BLSTM with both heads.
    # (Their 4 x 600 network is about 9x the compute per frame; see deepclust/pretrained/MODEL_CARD.md.)
    "chimera++": dict(n_freq=129, hidden=300, layers=2, emb_dim=20, dropout=0.0, mask_heads=2),
    # Issue 16's equal-time trials (benchmarks/RESULTS.md, "Which network learns most per CPU-hour"):
    # a wider, deeper BLSTM for bf16 on AMX, and a BLSTM behind a strided convolution at half the frame rate.
    "chimera++-3x400": dict(n_freq=129, hidden=400, layers=3, emb_dim=20, dropout=0.0, mask_heads=2),
    "chimera++-conv2": dict(n_freq=129, hidden=400, layers=2, emb_dim=20, dropout=0.0, mask_heads=2, front_end="conv2"),
    # Issue 31: release 7's network grown by one BLSTM layer as a residual branch whose output projection
    # starts at zero, so a warm start from a 2-layer file first computes exactly that file's function.
    "chimera++-grown": dict(n_freq=129, hidden=300, layers=2, emb_dim=20, dropout=0.0, mask_heads=2, residual_layers=1),
}
FRONT_ENDS = ("none", "conv2")
CONV_CHANNELS = 256  # the strided front end's width (conv2)


@dataclass(frozen=True)
class ModelConfig(JsonableConfig):
    """Size of the embedding network.

    ``n_freq``: STFT bins per frame (129 for a 256-point FFT); ``hidden``: LSTM units *per direction*;
    ``layers``: stacked BLSTM layers; ``emb_dim``: embedding dimension D; ``dropout``: between BLSTM
    layers (and before the output layer); ``mask_heads``: masks of the Chimera++ mask-inference head
    (0 = the deep clustering head only); ``front_end``: "none" (the BLSTM reads every frame) or "conv2" (a
    strided 1-D convolution over time feeds the BLSTM at half the frame rate; a transposed convolution and a
    per-frame skip from the input bring it back to every frame before the heads); ``residual_layers``: BLSTM
    layers stacked on the trunk as residual branches, ``h + W blstm(h)``, W starting at zero (growth: a network
    warm-started from one with fewer residual layers computes exactly what its parent did at step 0).
    """

    n_freq: int = 129
    hidden: int = 300
    layers: int = 2
    emb_dim: int = 20
    dropout: float = 0.0
    mask_heads: int = 0
    front_end: str = "none"
    residual_layers: int = 0

    def __post_init__(self):
        if self.front_end not in FRONT_ENDS:
            raise ValueError(f"front_end must be one of {FRONT_ENDS}, got {self.front_end!r}")
        if self.residual_layers < 0:
            raise ValueError(f"residual_layers must be 0 or more, got {self.residual_layers}")

    def grows(self, parent: "ModelConfig") -> bool:
        """Whether this network is ``parent`` with more residual layers (and otherwise the same)."""
        return (
            self.residual_layers > parent.residual_layers
            and dataclasses.replace(parent, residual_layers=self.residual_layers) == self
        )

    @classmethod
    def preset(cls, name: str, **overrides) -> "ModelConfig":
        """A named network (``sorted(_PRESETS)``: ``paper``, ``dpcl++``, ``chimera++``, its 3x400, conv2 and
        grown variants), with optional field overrides."""
        if name not in _PRESETS:
            raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(_PRESETS)}")
        return cls(**{**_PRESETS[name], **overrides})


class DeepClusteringNet(nn.Module):
    """BLSTM embedding network of deep clustering.

    forward: normalised log-magnitude ``(batch, frames, freq)`` -> embeddings ``(batch, frames, freq, emb)``,
    each bin's embedding of unit Euclidean norm.
    """

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config = config or ModelConfig()
        if config.front_end == "conv2":
            # Frames t and t+1 -> one BLSTM step (kernel 4 sees one frame either side of the pair).
            self.down = nn.Conv1d(config.n_freq, CONV_CHANNELS, kernel_size=4, stride=2, padding=1)
            self.up = nn.ConvTranspose1d(2 * config.hidden, 2 * config.hidden, kernel_size=2, stride=2)
            self.skip = nn.Linear(config.n_freq, 2 * config.hidden)  # per-frame detail the pair step blurs
        self.blstm = nn.LSTM(
            input_size=CONV_CHANNELS if config.front_end == "conv2" else config.n_freq,
            hidden_size=config.hidden,
            num_layers=config.layers,
            batch_first=True,
            bidirectional=True,
            # nn.LSTM applies dropout between layers only; it warns when there is a single layer.
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        # Growth (issue 31): each residual branch adds W blstm(h) to the trunk; W = 0 at the start.
        self.residual = nn.ModuleList(ResidualBLSTM(config.hidden) for _ in range(config.residual_layers))
        self.dropout = nn.Dropout(config.dropout)
        self.embed = nn.Linear(2 * config.hidden, config.n_freq * config.emb_dim)
        # Chimera++ mask-inference head: one sigmoid mask per source and bin, from the same BLSTM output.
        self.mask = nn.Linear(2 * config.hidden, config.n_freq * config.mask_heads) if config.mask_heads else None

    def forward(
        self, log_mag: torch.Tensor, lengths: torch.Tensor | None = None, heads: bool = False, embeddings: bool = True
    ):
        """``(batch, frames, freq)`` -> ``(batch, frames, freq, emb)`` unit-norm embeddings.

        ``lengths`` (batch,): valid frames per item of a zero-padded batch. The sequences are then packed,
        so the backward LSTM of a short item starts at its own last frame, not in the padding.
        ``heads=True`` returns a dict instead: ``embeddings`` and, with a mask head, ``masks``
        ``(batch, mask_heads, frames, freq)`` in [0, 1] (a keyword, so DistributedDataParallel passes it on).
        ``embeddings=False`` (with ``heads=True``) skips the embedding head: mask inference does not need it.
        """
        if log_mag.ndim != 3 or log_mag.shape[-1] != self.config.n_freq:
            raise ValueError(
                f"expected (batch, frames, {self.config.n_freq}) log-magnitudes, got {tuple(log_mag.shape)}"
            )
        return self.apply_heads(self.encode(log_mag, lengths), heads, embeddings)

    def encode(self, log_mag: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """The shared trunk: ``(batch, frames, freq)`` -> ``(batch, frames, 2 * hidden)``, one vector per frame."""
        return self._encode(log_mag, lengths)

    def apply_heads(self, hidden: torch.Tensor, heads: bool = True, embeddings: bool = True):
        """The per-bin heads on the trunk's ``(batch, frames, 2 * hidden)``; see ``forward`` for what returns.

        Kept apart from the trunk so that training can compile the heads together with the losses: their
        per-bin elementwise work (tanh, normalisation, sigmoid, the losses) fuses there
        (deepclust.training.objective)."""
        outputs = {}
        if embeddings or not heads:
            outputs["embeddings"] = self.embedding_head(hidden)
        if not heads:
            return outputs["embeddings"]
        if self.mask is not None:
            outputs["masks"] = self.mask_head(hidden)
        return outputs

    def embedding_head(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(batch, frames, 2 * hidden)`` -> unit embeddings ``(batch, frames, freq, emb)`` float32 (Eq. 1)."""
        batch, frames, freq = *hidden.shape[:2], self.config.n_freq
        shape = (batch, frames, freq, self.config.emb_dim)
        if not torch.is_grad_enabled():
            # Inference: the same function in place on one float32 copy of the projection (tanh, then the unit
            # norm), 15-20 % less time for the head on a CPU than fresh tensors for each step (issue 17).
            embedded = self.embed(hidden).view(shape).float().tanh_()
            return embedded.div_(torch.linalg.vector_norm(embedded, dim=-1, keepdim=True).clamp_min_(1e-8))
        projected = torch.tanh(self.embed(self.dropout(hidden)))  # (batch, frames, freq * emb)
        # |v_i| = 1 (Eq. 1): the affinity V V^T is then a cosine similarity bounded in [-1, 1].
        # Normalise in float32: under fp16 autocast the squared norm of a 20-dim tanh vector is safe, but
        # the division of tiny norms is not.
        return F.normalize(projected.view(shape).float(), p=2, dim=-1, eps=1e-8)

    def mask_head(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(batch, frames, 2 * hidden)`` -> Chimera++ masks ``(batch, mask_heads, frames, freq)`` in [0, 1]."""
        if self.mask is None:
            raise ValueError("this model has no mask head (mask_heads = 0)")
        batch, frames, freq = *hidden.shape[:2], self.config.n_freq
        logits = self.mask(self.dropout(hidden)).float().view(batch, frames, freq, self.config.mask_heads)
        return torch.sigmoid(logits).permute(0, 3, 1, 2)  # (batch, sources, frames, freq)

    def infer(
        self,
        log_mag: torch.Tensor,
        lengths: torch.Tensor | None = None,
        embeddings: bool = True,
        masks: bool = True,
        hidden: bool = False,
    ) -> dict:
        """Inference: only the outputs asked for, from one trunk pass (separation reads one head, never both).

        ``(batch, frames, freq)`` -> dict with ``embeddings`` ``(batch, frames, freq, emb)`` when asked, ``masks``
        ``(batch, mask_heads, frames, freq)`` when asked and the model has a mask head, and ``hidden``, the
        trunk's ``(batch, frames, 2 * hidden)``, when asked (``embedding_head`` turns it into embeddings later).
        Each output is the very tensor ``forward(..., heads=True)`` returns: the same layers, the same order.
        The embedding head is 10x the mask head's work (``freq * emb`` outputs per frame against
        ``freq * mask_heads``); on a CPU it measured about half the BLSTM's time (benchmarks/RESULTS.md, issue 17).

        >>> model.infer(torch.randn(2, 100, 129), embeddings=False)["masks"].shape  # chimera++ preset
        torch.Size([2, 2, 100, 129])
        """
        if log_mag.ndim != 3 or log_mag.shape[-1] != self.config.n_freq:
            raise ValueError(
                f"expected (batch, frames, {self.config.n_freq}) log-magnitudes, got {tuple(log_mag.shape)}"
            )
        trunk = self.encode(log_mag, lengths)
        outputs = {}
        if embeddings:
            outputs["embeddings"] = self.embedding_head(trunk)
        if masks and self.mask is not None:
            outputs["masks"] = self.mask_head(trunk)
        if hidden:
            outputs["hidden"] = trunk
        return outputs

    def _encode(self, log_mag: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """``(batch, frames, freq)`` -> ``(batch, frames, 2 * hidden)``, at every frame."""
        hidden = self._trunk(log_mag, lengths)
        for branch in self.residual:
            hidden = hidden + branch.projection(recurrence(branch.blstm, hidden, lengths))
        return hidden

    def _trunk(self, log_mag: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """The stacked BLSTM (behind the conv2 front end where there is one), before any residual branch."""
        if self.config.front_end == "none":
            return recurrence(self.blstm, log_mag, lengths)
        frames = log_mag.shape[1]
        if lengths is not None:  # the convolution sees zeros past an item's end, as it does alone
            steps = torch.arange(frames, device=log_mag.device)
            log_mag = log_mag * (steps[None, :] < lengths.to(log_mag.device)[:, None]).unsqueeze(-1).to(log_mag.dtype)
        even = F.pad(log_mag, (0, 0, 0, frames % 2))  # an odd last frame gets a zero partner
        pairs = torch.relu(self.down(even.transpose(1, 2))).transpose(1, 2)  # (batch, ceil(frames / 2), C)
        pair_lengths = None if lengths is None else torch.div(lengths + 1, 2, rounding_mode="floor")
        hidden = recurrence(self.blstm, pairs, pair_lengths)
        restored = self.up(hidden.transpose(1, 2)).transpose(1, 2)[:, :frames]  # (batch, frames, 2 * hidden)
        return torch.tanh(restored + self.skip(log_mag))

    @property
    def num_parameters(self) -> int:
        """Number of parameter values (weights and biases) in the network."""
        return sum(p.numel() for p in self.parameters())


class ResidualBLSTM(nn.Module):
    """One grown layer: a BLSTM over the trunk's ``(batch, frames, 2 * hidden)`` and a projection back to it,
    zero at the start so that ``h + projection(blstm(h))`` is ``h`` until training moves it."""

    def __init__(self, hidden: int):
        super().__init__()
        self.blstm = nn.LSTM(2 * hidden, hidden, batch_first=True, bidirectional=True)
        self.projection = nn.Linear(2 * hidden, 2 * hidden)
        nn.init.zeros_(self.projection.weight)
        nn.init.zeros_(self.projection.bias)


def recurrence(blstm: nn.LSTM, inputs: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """``blstm`` over ``(batch, steps, features)``, packed when the items have different lengths."""
    steps = inputs.shape[1]
    if lengths is not None and int(lengths.min()) < steps:
        packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
        return pad_packed_sequence(blstm(packed)[0], batch_first=True, total_length=steps)[0]
    return blstm(inputs)[0]


def training_flops_per_frame(config: ModelConfig) -> float:
    """Multiply-add FLOPs of one training step per input frame (forward + backward ~ 3x forward),
    counting the matrix products only: what a GEMM rate bounds."""
    steps_per_frame = 0.5 if config.front_end == "conv2" else 1.0
    inputs = CONV_CHANNELS if config.front_end == "conv2" else config.n_freq
    forward = 0.0
    for layer in range(config.layers):
        width = inputs if layer == 0 else 2 * config.hidden
        forward += steps_per_frame * 2 * 2 * 4 * config.hidden * (width + config.hidden)
    if config.front_end == "conv2":
        forward += 0.5 * 2 * 4 * config.n_freq * CONV_CHANNELS + 2 * 2 * config.hidden * 2 * config.hidden
        forward += 2 * config.n_freq * 2 * config.hidden
    for _ in range(config.residual_layers):  # full frame rate: the branch reads the restored trunk
        forward += 2 * 2 * 4 * config.hidden * 3 * config.hidden + 2 * (2 * config.hidden) ** 2
    forward += 2 * 2 * config.hidden * config.n_freq * (config.emb_dim + config.mask_heads)
    return 3 * forward
