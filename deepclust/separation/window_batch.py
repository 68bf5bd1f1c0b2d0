"""One padded network forward and one batched clustering over a list of windows (or whole short files).

The batch step of every separation path: ``separate_window_batch`` times the network and the clustering
apart, runs only the head that the inference reads, and hands back each window's cluster centroids
(``WindowCentroids``, lazy with the mask head) for the alignment of a long recording's windows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class WindowBatch:
    """Separated windows: ``outputs`` list of ``(K, samples)``; ``centroids`` one ``WindowCentroids`` per window
    (None when not asked for)."""

    outputs: list
    centroids: list | None
    network_seconds: float
    clustering_seconds: float


def _synchronise(device: torch.device) -> None:
    # CUDA runs asynchronously: without a sync the network's time would be billed to the clustering.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cluster_centroids(embeddings: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
    """Mean embedding of each cluster over the valid bins: ``(batch, frames, freq, emb)`` -> ``(batch, K, emb)``."""
    one_hot = torch.nn.functional.one_hot(labels, k).to(embeddings.dtype) * valid.unsqueeze(-1)  # (B, F, Q, K)
    sums = torch.einsum("bfqk,bfqd->bkd", one_hot, embeddings)
    counts = one_hot.sum((1, 2)).unsqueeze(-1)  # (B, K, 1)
    return sums / counts.clamp_min(1.0)


class WindowCentroids:
    """The ``(K, emb)`` cluster centroids of one window (``cluster_centroids``), computed when first asked for.

    With k-means the embeddings exist anyway, and the centroids are given. With the mask head the embedding
    head is not run at all (it takes about half the BLSTM's time): the window keeps its trunk output, masks' labels
    and valid bins, and runs the embedding head on them only if the speaker alignment needs the centroids
    (an overlap too quiet to decide), then drops them. ``Stitcher`` keeps only the last ``TRACK_HISTORY``
    windows, so what is kept stays bounded by that, whatever the recording's length.
    """

    def __init__(
        self,
        values: np.ndarray | None = None,
        separator=None,
        hidden: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
        k: int = 0,
    ):
        self._values = values
        self._inputs = (separator, hidden, labels, valid, k) if values is None else None

    def __call__(self) -> np.ndarray:
        if self._values is None:
            separator, hidden, labels, valid, k = self._inputs
            embeddings = separator.embeddings_of(hidden.unsqueeze(0))  # (1, frames, freq, emb)
            self._values = (
                cluster_centroids(embeddings, labels.long().unsqueeze(0), valid.unsqueeze(0), k)[0]
                .float()
                .cpu()
                .numpy()
            )
            self._inputs = None
        return self._values

    @property
    def computed(self) -> bool:
        """Whether the centroids exist yet (with the mask head: whether the embedding head ran)."""
        return self._values is not None


@torch.no_grad()
def separate_window_batch(separator, waveforms: list, n_speakers: int, centroids: bool = True) -> WindowBatch:
    """Separate a list of ``(samples,)`` windows in one network forward and one batched clustering.

    The same steps as ``Separator.separate_batch`` (masks on the mixture STFT, inverse STFT with the
    mixture phase), timed separately; only the head that the inference reads is run. ``centroids``: also
    return each window's cluster centroids (``WindowCentroids``: lazy with the mask head), which the
    alignment of a long recording's windows may need; inputs that are separated whole need none.
    """
    k = int(n_speakers)
    mask_head = separator.uses_mask_head(k)  # the mask head alone: no embeddings unless the alignment asks
    began = time.perf_counter()
    batch = separator.embed_batch(waveforms, **separator.heads_for(k), hidden=mask_head and centroids)
    _synchronise(separator.device)
    network_done = time.perf_counter()
    masks, labels = separator.assign(batch, k)  # k-means, a Chimera++ model's mask head, or their blend
    window_centroids = None
    if centroids and mask_head:
        # Owned copies of each window's part (not views), so a kept window does not keep the whole batch.
        window_centroids = [
            WindowCentroids(
                separator=separator,
                hidden=batch["hidden"][i, :n].clone(),
                labels=labels[i, :n].to(torch.uint8 if k <= 255 else torch.long),
                valid=batch["valid"][i, :n].clone(),
                k=k,
            )
            for i, n in enumerate(batch["frame_counts"])
        ]
    elif centroids:
        values = cluster_centroids(batch["embeddings"], labels, batch["valid"], k).float().cpu().numpy()
        window_centroids = [WindowCentroids(item) for item in values]
    outputs = separator.reconstruct_masks(batch, masks)
    _synchronise(separator.device)
    return WindowBatch(outputs, window_centroids, network_done - began, time.perf_counter() - network_done)
