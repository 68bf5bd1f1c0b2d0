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

_PRESETS = {
    # Hershey et al. 2016: 2 BLSTM layers of 600 cells = 300 per direction, D = 20 (Sec. 4.2).
    "paper": dict(n_freq=129, hidden=300, layers=2, emb_dim=20, dropout=0.0),
    # Isik et al. 2016 (DPCL++): deeper network with dropout; embedding size unchanged.
    "dpcl++": dict(n_freq=129, hidden=300, layers=4, emb_dim=20, dropout=0.3),
    # Wang et al. 2018 (Chimera++), sized for CPU training: the paper's 2 x 300 BLSTM with both heads.
    # (Their 4 x 600 network is about 9x the compute per frame; see deepclust/pretrained/MODEL_CARD.md.)
    "chimera++": dict(n_freq=129, hidden=300, layers=2, emb_dim=20, dropout=0.0, mask_heads=2),
}


@dataclass(frozen=True)
class ModelConfig:
    """Size of the embedding network.

    ``n_freq``: STFT bins per frame (129 for a 256-point FFT); ``hidden``: LSTM units *per direction*;
    ``layers``: stacked BLSTM layers; ``emb_dim``: embedding dimension D; ``dropout``: between BLSTM
    layers (and before the output layer); ``mask_heads``: masks of the Chimera++ mask-inference head
    (0 = the deep clustering head only).
    """

    n_freq: int = 129
    hidden: int = 300
    layers: int = 2
    emb_dim: int = 20
    dropout: float = 0.0
    mask_heads: int = 0

    @classmethod
    def preset(cls, name: str, **overrides) -> "ModelConfig":
        """``"paper"`` (Hershey et al. 2016) or ``"dpcl++"`` (Isik et al. 2016), with optional overrides."""
        if name not in _PRESETS:
            raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(_PRESETS)}")
        return cls(**{**_PRESETS[name], **overrides})

    def to_dict(self) -> dict:
        """JSON-able form (``from_dict`` reads it back)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        """Inverse of ``to_dict``; unknown keys are ignored and missing ones take their defaults."""
        return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values})


class DeepClusteringNet(nn.Module):
    """BLSTM embedding network of deep clustering.

    forward: normalised log-magnitude ``(batch, frames, freq)`` -> embeddings ``(batch, frames, freq, emb)``,
    each bin's embedding of unit Euclidean norm.
    """

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config = config or ModelConfig()
        self.blstm = nn.LSTM(
            input_size=config.n_freq,
            hidden_size=config.hidden,
            num_layers=config.layers,
            batch_first=True,
            bidirectional=True,
            # nn.LSTM applies dropout between layers only; it warns when there is a single layer.
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.embed = nn.Linear(2 * config.hidden, config.n_freq * config.emb_dim)
        # Chimera++ mask-inference head: one sigmoid mask per source and bin, from the same BLSTM output.
        self.mask = nn.Linear(2 * config.hidden, config.n_freq * config.mask_heads) if config.mask_heads else None

    def forward(self, log_mag: torch.Tensor, lengths: torch.Tensor | None = None, heads: bool = False,
                embeddings: bool = True):
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
        batch, frames, freq = log_mag.shape
        if lengths is not None and int(lengths.min()) < frames:
            packed = pack_padded_sequence(log_mag, lengths.cpu(), batch_first=True, enforce_sorted=False)
            hidden, _ = pad_packed_sequence(self.blstm(packed)[0], batch_first=True, total_length=frames)
        else:
            hidden, _ = self.blstm(log_mag)  # (batch, frames, 2 * hidden)
        outputs = {}
        if embeddings or not heads:
            projected = torch.tanh(self.embed(self.dropout(hidden)))  # (batch, frames, freq * emb)
            # |v_i| = 1 (Eq. 1): the affinity V V^T is then a cosine similarity bounded in [-1, 1].
            # Normalise in float32: under fp16 autocast the squared norm of a 20-dim tanh vector is safe, but
            # the division of tiny norms is not.
            outputs["embeddings"] = F.normalize(projected.view(batch, frames, freq, self.config.emb_dim).float(),
                                                p=2, dim=-1, eps=1e-8)
        if not heads:
            return outputs["embeddings"]
        if self.mask is not None:
            logits = self.mask(self.dropout(hidden)).float().view(batch, frames, freq, self.config.mask_heads)
            outputs["masks"] = torch.sigmoid(logits).permute(0, 3, 1, 2)  # (batch, sources, frames, freq)
        return outputs

    @property
    def num_parameters(self) -> int:
        """Number of parameter values (weights and biases) in the network."""
        return sum(p.numel() for p in self.parameters())
