"""Separation with a trained deep clustering model (Hershey et al., ICASSP 2016, sec. 3 and 4.1).

For a mixture x and a known number of speakers K:

1. features: ``log(|X| + floor)`` of the mixture STFT, normalised with the training statistics;
2. embeddings ``V`` ``(frames, freq, emb)`` from the network, one unit vector per time-frequency bin;
3. k-means with K clusters on the embeddings of the non-silent bins (within ``silence_db`` = 40 dB of
   the utterance's loudest bin, the same rule that weights the training loss);
4. every bin, silent ones too, goes to its nearest centroid: K binary masks that tile the plane;
5. each mask times the mixture STFT, inverse STFT with the mixture phase -> K waveforms.

A Chimera++ model (Wang et al., ICASSP 2018) also has a mask-inference head: when it was trained for K
sources, steps 3-4 can be replaced by its K soft masks (``inference="mask"``), which needs no k-means; for
another K (three speakers with a two-mask head) k-means on its embeddings still works. ``"soft-kmeans"`` keeps
step 3 but gives soft masks around the centroids in step 4, and ``"blend"`` averages the mask head's masks with
soft masks around centroids the head seeds; ``"auto"`` uses what the model file names for K
(``Separator.inference_for``).

``separate_batch`` runs step 2 as one padded network forward (sequences packed, so padding does not
leak into the backward LSTM) and step 3 as one batched k-means, which is the fast path for test sets.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from deepclust.features.extract import FeatureConfig, loud_bins, network_input
from deepclust.features.stft import istft, num_frames, stft
from deepclust.model.checkpoint import LoadedModel, load_model
from deepclust.model.device import autocast, autocast_dtype, inference_precision, quantize_for_inference, usable_device
from deepclust.separation.kmeans import DEFAULT_N_INIT, kmeans_sklearn, kmeans_torch
from deepclust.separation.phase import misi

INFERENCES = ("auto", "mask", "kmeans", "soft-kmeans", "blend")
# The blend's share of the mask head (the rest: head-seeded soft masks). On the outside sets 0.5 beat 0.65 and 0
# (release 3, 80 + 60 mixtures; benchmarks/RESULTS.md, "Inference: the blend").
BLEND_HEAD_WEIGHT = 0.5
# Methods a model file may name for ``auto`` (``export-model --inference K=METHOD``).
METHODS = INFERENCES[1:]
# The methods that read the mask head (a model without one for K cannot serve them).
MASK_HEAD_METHODS = ("mask", "blend")
# How each method is named to a person (reports, the demo's last line).
METHOD_NAMES = {
    "mask": "mask head",
    "kmeans": "k-means",
    "soft-kmeans": "soft k-means",
    "blend": "mask head + head-seeded soft k-means",
}
SOFT_KMEANS_BETA = 5.0  # issue 16's trial: beta 3-10 all beat hard k-means on outside recordings


def _feature_config(value) -> FeatureConfig:
    if isinstance(value, FeatureConfig):
        return value
    if isinstance(value, dict) and value:
        return FeatureConfig.from_dict(value)
    return FeatureConfig()


def whiten_embeddings(embeddings: torch.Tensor, valid: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``(batch, frames, freq, emb)`` -> the same shape times ``(V^T V / n)^-1/2`` of each item's valid bins."""
    batch, dim = embeddings.shape[0], embeddings.shape[-1]
    flat = embeddings.reshape(batch, -1, dim).double()
    weights = valid.reshape(batch, -1, 1).double()
    covariance = (flat * weights).transpose(1, 2) @ flat / weights.sum(1, keepdim=True).clamp_min(1.0)
    values, vectors = torch.linalg.eigh(covariance + eps * torch.eye(dim, dtype=flat.dtype, device=flat.device))
    inverse_root = vectors @ torch.diag_embed(values.clamp_min(eps).rsqrt()) @ vectors.transpose(1, 2)
    return (flat @ inverse_root).to(embeddings.dtype).reshape(embeddings.shape)


def head_seeded_soft_masks(
    embeddings: torch.Tensor, head: torch.Tensor, valid: torch.Tensor, beta: float
) -> torch.Tensor:
    """Soft k-means masks around centroids that the mask head seeds, in the head's speaker order.

    Centroid ``k`` is the mean of the loud bins' embeddings weighted by the head's mask ``k``; each bin's mask is
    ``softmax_k(-beta |v - c_k|^2)``. No k-means restarts and no permutation to find.

    Args:
        embeddings: ``(batch, frames, freq, emb)``; head: ``(batch, K, frames, freq)``; valid: ``(batch, frames,
            freq)`` loud, non-padded bins.

    Returns:
        ``(batch, K, frames, freq)`` masks summing to one over K.
    """
    batch, frames, freq, dim = embeddings.shape
    points = embeddings.float().reshape(batch, frames * freq, dim)
    weights = head.float().flatten(2) * valid.reshape(batch, 1, -1)  # (batch, K, N)
    centroids = torch.bmm(weights, points) / weights.sum(-1, keepdim=True).clamp_min(1e-6)  # (batch, K, emb)
    # -beta |v - c|^2 = beta (2 v.c - |c|^2) - beta |v|^2, and softmax over K ignores the last term: one
    # (batch, K, N) product, already in the masks' layout.
    logits = 2.0 * torch.bmm(centroids, points.transpose(1, 2)) - (centroids**2).sum(-1, keepdim=True)
    return torch.softmax(beta * logits, dim=1).view(batch, -1, frames, freq)


def mono_signals(waveforms, sample_rate: int) -> list[torch.Tensor]:
    """A batch's waveforms as float32 ``(samples,)`` tensors. A list (or a ``(batch, samples)`` array) of mono
    waveforms is what a batch is; anything else is refused in words, not flattened: a ``(channels, samples)``
    item read as one waveform would join its channels end to end, and a lone 1-D array or a file name would be
    taken as a batch of one-sample waveforms or of characters."""
    if isinstance(waveforms, (str, bytes)) or hasattr(waveforms, "__fspath__"):
        raise TypeError(
            f"separate_batch takes a list of waveforms, not a file name ({waveforms!r}): "
            "deepclust.separate(path) reads, downmixes and resamples a file"
        )
    if getattr(waveforms, "ndim", None) == 1:
        raise ValueError(
            f"separate_batch takes a list of waveforms; this is one waveform of {len(waveforms)} samples: "
            "give [waveform], or use Separator.separate(waveform)"
        )
    signals = []
    for index, waveform in enumerate(waveforms):
        signal = torch.as_tensor(
            np.asarray(waveform, dtype=np.float32) if not torch.is_tensor(waveform) else waveform, dtype=torch.float32
        )
        if signal.dim() > 1 and sum(size > 1 for size in signal.shape) > 1:
            raise ValueError(
                f"waveform {index} has shape {tuple(signal.shape)}: a Separator takes mono waveforms (samples,) at "
                f"{sample_rate} Hz; average the channels first, or give the array to deepclust.separate, which "
                "downmixes and resamples"
            )
        signals.append(signal.reshape(-1))
    return signals


class Separator:
    """Deep clustering separator around a trained model.

    Args:
        model: a model file URL (written by ``save_model``) or a ``LoadedModel``.
        device: where the network and the torch k-means run ("auto" = CUDA when available, "cpu", "cuda", ...).
        kmeans: "auto" (the default: batched torch on CUDA, scikit-learn on CPU, where its compiled loop
            measured about 4x faster; see benchmarks/RESULTS.md), "torch" or "sklearn".
        seed: k-means seed; separation is deterministic for a given seed.
        n_init: k-means restarts per utterance.
        inference: "auto" (what the model file names for K, else the mask head when the model has one for
            the K asked for, else k-means), "mask" (the mask head; an error when it has none for K),
            "kmeans" (hard k-means on the embeddings) or "soft-kmeans" (soft masks around the k-means
            centroids, ``softmax(-soft_beta * squared distance)``: no retraining, and it held up better than
            the mask head on recordings from outside the training corpora; see benchmarks/RESULTS.md) or
            "blend" (the mean of the mask head's masks and soft masks around centroids the head seeds,
            ``head_seeded_soft_masks``: better than either alone on every test set, no k-means; a model with a
            mask head for K only).
        soft_beta: the inverse temperature of soft k-means (unit embeddings: squared distances in [0, 4]).
        precision: "auto" (bf16 network on a CPU with AMX or AVX-512 BF16, float32 elsewhere), "fp32", "bf16"
            or "int8" (CPU only, never auto: dynamic int8 quantisation of the LSTM and linear layers; within
            0.1 dB of float32, fastest on short inputs; see deepclust.model.device for its price). Features, masks,
            k-means and the output signals stay float32 (deepclust.model.device).
        whiten: cluster whitened embeddings ``V (V^T V)^-1/2`` (per utterance) instead of V.
        phase_iterations: MISI iterations (``deepclust.separation.phase``) after masking; 0 keeps the mixture
            phase.

    Attributes:
        sample_rate: the rate the model was trained at (from its feature config); inputs must use it.
    """

    def __init__(
        self,
        model: str | LoadedModel,
        device: str | torch.device = "auto",
        kmeans: str = "auto",
        seed: int = 0,
        n_init: int = DEFAULT_N_INIT,
        inference: str = "auto",
        whiten: bool = False,
        phase_iterations: int = 0,
        soft_beta: float = SOFT_KMEANS_BETA,
        precision: str = "auto",
    ):
        if kmeans not in ("auto", "torch", "sklearn"):
            raise ValueError(f"kmeans must be 'auto', 'torch' or 'sklearn', got {kmeans!r}")
        if inference not in INFERENCES:
            raise ValueError(f"inference must be one of {INFERENCES}, got {inference!r}")
        self.inference = inference
        self.soft_beta = float(soft_beta)
        self.device = usable_device(str(device))
        self.precision = inference_precision(precision, self.device)
        self.autocast_dtype = autocast_dtype(self.precision, self.device)
        if kmeans == "auto":
            kmeans = "torch" if self.device.type == "cuda" else "sklearn"
        loaded = model if isinstance(model, LoadedModel) else load_model(str(model), self.device)
        self.model_url = None if isinstance(model, LoadedModel) else str(model)  # jobs record its sha256
        self.loaded = loaded
        self.model = loaded.model.to(self.device).eval()
        if self.precision == "int8":  # a quantised copy: the LoadedModel may serve other separators
            self.model = quantize_for_inference(self.model)
        self.feature_config = _feature_config(loaded.feature_config)
        self.feature_stats = loaded.feature_stats
        self.stft_config = self.feature_config.stft
        self.sample_rate = int(self.stft_config.sample_rate)
        self.kmeans = kmeans
        self.seed = int(seed)
        self.n_init = int(n_init)
        # Whitened k-means (V (V^T V)^-1/2, the space Chimera++'s L_DC,W is written in) is an option, off by
        # default: on the shipped model's held-out mixtures it scored lower than plain k-means
        # (benchmarks/RESULTS.md) and took longer.
        self.whiten = bool(whiten)
        self.phase_iterations = int(phase_iterations)

    # -- embeddings -------------------------------------------------------------------------------

    def _network(
        self,
        features: torch.Tensor,
        frame_counts: list[int],
        embeddings: bool = True,
        masks: bool = True,
        hidden: bool = False,
    ) -> dict:
        """``(batch, frames, freq)`` normalised features -> the heads asked for (``DeepClusteringNet.infer``).

        A BLSTM reads its input backwards too, so zero padding after a short utterance would change
        that utterance's embeddings: the model packs the sequences given their lengths.
        """
        with autocast(self.device, self.autocast_dtype):  # the network only: masks and k-means stay float32
            return self.model.infer(
                features, lengths=torch.as_tensor(frame_counts), embeddings=embeddings, masks=masks, hidden=hidden
            )

    @torch.no_grad()
    def embeddings_of(self, hidden: torch.Tensor) -> torch.Tensor:
        """The embedding head on a kept trunk output (``embed_batch(..., hidden=True)``), at the network's
        precision: ``(batch, frames, 2 * hidden)`` -> ``(batch, frames, freq, emb)`` float32, as ``embed_batch``
        would have returned them."""
        with autocast(self.device, self.autocast_dtype):
            return self.model.embedding_head(hidden)

    @torch.no_grad()
    def embed_batch(self, waveforms, embeddings: bool = True, masks: bool = True, hidden: bool = False) -> dict:
        """Embeddings of a batch of mixtures, zero-padded to the longest.

        Args:
            waveforms: list of ``(samples,)`` arrays/tensors at ``sample_rate``.
            embeddings: False skips the embedding head (``embeddings`` is then None): for mask inference.
                A model without a mask head computes them whatever this says (they are all it has).
            masks: False skips the mask head (no ``masks``): for k-means inference.
            hidden: True keeps the trunk's output ``(batch, frames, 2 * hidden)`` as ``hidden`` (for
                ``embeddings_of`` later).

        Only the heads asked for are computed: on a CPU the embedding head measured about half the BLSTM's time
        (a third of the network stage), the mask head a tenth of the embedding head's (issue 17).

        Returns:
            dict with ``spectra`` complex ``(batch, frames, freq)`` mixture STFTs, ``embeddings``
            ``(batch, frames, freq, emb)``, ``valid`` bool ``(batch, frames, freq)`` (non-silent,
            non-padded bins), ``frame_counts`` and ``lengths`` (samples) per item; with a mask head (and
            ``masks``) also ``masks`` ``(batch, mask_heads, frames, freq)``; with ``hidden`` also ``hidden``;
            tensors on ``device``.
        """
        signals = mono_signals(waveforms, self.sample_rate)
        if not signals:
            raise ValueError("no waveforms to separate")
        lengths = [int(s.shape[0]) for s in signals]
        if min(lengths) == 0:
            raise ValueError("cannot separate an empty waveform")
        padded = torch.nn.utils.rnn.pad_sequence(signals, batch_first=True).to(self.device)  # (batch, samples)
        # Zero padding leaves each item's own frames unchanged (stft pads with zeros at the edges too).
        spectra = stft(padded, self.stft_config)  # (batch, frames, freq)
        frame_counts = [num_frames(n, self.stft_config) for n in lengths]
        frame_valid = (
            torch.arange(spectra.shape[1], device=self.device)[None, :]
            < torch.as_tensor(frame_counts, device=self.device)[:, None]
        )  # (batch, frames)
        magnitude = spectra.abs() * frame_valid.unsqueeze(-1)
        log_mag = network_input(magnitude, self.feature_config)
        features = self.feature_stats.apply(log_mag) if self.feature_stats is not None else log_mag
        # Without a mask head the embeddings are all there is, so they are always computed.
        outputs = self._network(
            features,
            frame_counts,
            embeddings=embeddings or getattr(self.model, "mask", None) is None,
            masks=masks,
            hidden=hidden,
        )
        embeddings = outputs.get("embeddings")
        # Training's silence rule, per item: only loud bins get a cluster (padding never does).
        valid = loud_bins(magnitude, self.feature_config) & frame_valid.unsqueeze(-1)
        batch = {
            "spectra": spectra,
            "embeddings": embeddings,
            "valid": valid,
            "frame_counts": frame_counts,
            "lengths": lengths,
            "waveforms": padded,
        }
        for name in ("masks", "hidden"):
            if name in outputs:
                batch[name] = outputs[name]
        return batch

    def embed(self, waveform) -> np.ndarray:
        """``(samples,)`` mixture -> embeddings ``(frames, freq, emb)`` float32 numpy."""
        return self.embed_batch([waveform])["embeddings"][0].cpu().numpy()

    # -- clustering and masking -------------------------------------------------------------------

    def _cluster(
        self, embeddings: torch.Tensor, valid: torch.Tensor, frame_counts, k: int, soft: bool = False
    ) -> torch.Tensor:
        """``(batch, frames, freq, emb)`` -> masks ``(batch, K, frames, freq)``, every bin assigned.

        Hard k-means gives one-hot masks (each bin to its nearest centroid); ``soft`` gives
        ``softmax_k(-beta |v - c_k|^2)`` around the same centroids (``soft_beta``)."""
        batch, frames, freq, dim = embeddings.shape
        if self.whiten:
            embeddings = whiten_embeddings(embeddings, valid)
        points = embeddings.reshape(batch, frames * freq, dim)
        if self.kmeans == "torch":
            labels, centroids = kmeans_torch(points, valid.reshape(batch, -1), k, seed=self.seed, n_init=self.n_init)
        else:
            labels, centroids = self._cluster_sklearn(embeddings, valid, frame_counts, k)
        if soft:
            distances = ((points.unsqueeze(2) - centroids.to(points.dtype).unsqueeze(1)) ** 2).sum(-1)  # (batch, N, K)
            masks = torch.softmax(-self.soft_beta * distances, dim=-1)
            return masks.view(batch, frames, freq, k).permute(0, 3, 1, 2).float()
        return torch.nn.functional.one_hot(labels.view(batch, frames, freq), k).permute(0, 3, 1, 2).float()

    def _cluster_sklearn(self, embeddings, valid, frame_counts, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """scikit-learn's k-means one item at a time: ``(labels (batch, frames * freq), centroids (batch, K, emb))``.

        The items are independent, so they are clustered side by side on up to ``torch.get_num_threads()``
        threads (the job's thread budget), each item on one thread as ``kmeans_sklearn`` does alone: the same
        labels in any order, about twice as fast on 2 cores (scikit-learn's loops release the GIL)."""
        batch, frames, freq, dim = embeddings.shape
        labels = torch.zeros(batch, frames, freq, dtype=torch.long, device=embeddings.device)
        all_centroids = torch.zeros(batch, k, dim, dtype=embeddings.dtype, device=embeddings.device)

        def cluster(i: int) -> tuple[np.ndarray, np.ndarray]:
            n = frame_counts[i]
            item = embeddings[i, :n].reshape(-1, dim).cpu().numpy()
            item_valid = valid[i, :n].reshape(-1).cpu().numpy()
            if item_valid.sum() < k:
                item_valid[:] = True
            centroid_labels = kmeans_sklearn(item[item_valid], k, seed=self.seed, n_init=self.n_init)
            centroids = np.stack([item[item_valid][centroid_labels == c].mean(0) for c in range(k)])
            # Silent bins were not clustered: give them the nearest centroid, as the torch path does.
            return ((item[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1), centroids

        workers = min(batch, max(1, torch.get_num_threads()))
        if workers > 1:
            # Every BLAS / OpenMP pool at one thread while the workers run (each worker limits its own
            # OpenMP too, in kmeans_sklearn): the per-item loops are the parallelism, not nested teams.
            with (
                threadpool_limits(limits=1),
                ThreadPoolExecutor(workers, thread_name_prefix="deepclust-kmeans") as pool,
            ):
                results = list(pool.map(cluster, range(batch)))
        else:
            results = [cluster(i) for i in range(batch)]
        for i, (nearest, centroids) in enumerate(results):
            n = frame_counts[i]
            labels[i, :n] = torch.from_numpy(nearest).view(n, freq).to(labels.device)
            all_centroids[i] = torch.from_numpy(centroids).to(all_centroids)
        return labels.view(batch, -1), all_centroids

    def inference_for(self, n_speakers: int) -> str:
        """How K = ``n_speakers`` sources are found: ``"mask"``, ``"kmeans"``, ``"soft-kmeans"`` or ``"blend"``.

        ``auto``: what the model file names for K (``extra["inference"]``, chosen by
        benchmarks/bench_quality_real.py on corpora the model never trained on) if it can serve K, else
        the mask head when it has K masks, else hard k-means."""
        k = int(n_speakers)
        heads = int(getattr(self.model.config, "mask_heads", 0))
        if self.inference in MASK_HEAD_METHODS and heads != k:
            raise ValueError(
                f"inference={self.inference!r} needs a mask head for {n_speakers} sources; this model "
                f"has {heads or 'none'}: use inference='kmeans' or 'auto'"
            )
        if self.inference != "auto":
            return self.inference
        preferred = (self.loaded.extra.get("inference") or {}).get(str(k))
        if preferred in ("kmeans", "soft-kmeans") or (preferred in MASK_HEAD_METHODS and heads == k):
            return preferred
        return "mask" if heads == k else "kmeans"

    def uses_mask_head(self, n_speakers: int) -> bool:
        """Whether K = ``n_speakers`` sources come from the mask head alone (no embeddings needed)."""
        return self.inference_for(n_speakers) == "mask"

    def heads_for(self, n_speakers: int) -> dict:
        """``embed_batch``'s ``embeddings`` / ``masks`` flags: the heads K sources are found from."""
        inference = self.inference_for(n_speakers)
        return {"embeddings": inference != "mask", "masks": inference in MASK_HEAD_METHODS}

    def assign(self, batch: dict, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(masks (batch, K, frames, freq) float, labels (batch, frames, freq))`` of an ``embed_batch``:
        the mask head's soft masks, k-means' binary ones, soft k-means' or the blend of the head's and soft
        k-means' (labels = the masks' argmax)."""
        inference = self.inference_for(k)
        if inference == "mask":
            masks = batch["masks"].float()
        elif inference == "blend":
            head = batch["masks"].float()
            soft = head_seeded_soft_masks(batch["embeddings"], head, batch["valid"], self.soft_beta)
            masks = BLEND_HEAD_WEIGHT * head + (1.0 - BLEND_HEAD_WEIGHT) * soft
        else:
            soft = inference == "soft-kmeans"
            masks = self._cluster(batch["embeddings"], batch["valid"], batch["frame_counts"], k, soft=soft)
        return masks, masks.argmax(1)

    @torch.no_grad()
    def separate_batch(self, waveforms, n_speakers: int) -> list[np.ndarray]:
        """Separate several mixtures at once (one network forward, one batched k-means): waveforms in memory, not
        files (a batch of the archive job's files is ``deepclust.archive.separate_job_batch``).

        Args:
            waveforms: list of ``(samples,)`` mixtures at ``sample_rate``, any lengths.
            n_speakers: K, the number of sources to extract (2 or 3 in the paper; it need not equal
                the number the model was trained on).

        Returns:
            list of ``(K, samples)`` float32 arrays, each as long as its input.
        """
        k = int(n_speakers)
        if k < 1:
            raise ValueError(f"n_speakers must be >= 1, got {n_speakers}")
        batch = self.embed_batch(waveforms, **self.heads_for(k))
        masks, _ = self.assign(batch, k)
        return self.reconstruct_masks(batch, masks)

    def reconstruct_masks(self, batch: dict, masks: torch.Tensor) -> list[np.ndarray]:
        """Masks ``(batch, K, frames, freq)`` on an ``embed_batch``'s mixture STFTs -> list of ``(K, samples)``.

        The inverse STFT of the masked spectra keeps the mixture phase. Each item is inverted on its own
        frames so that padding never enters the overlap-add.
        """
        outputs = []
        for i, (n_frames, length) in enumerate(zip(batch["frame_counts"], batch["lengths"])):
            item_masks = masks[i, :, :n_frames].to(batch["spectra"].real.dtype)
            if self.phase_iterations and "waveforms" in batch:
                signals = misi(
                    batch["spectra"][i, :n_frames],
                    item_masks,
                    batch["waveforms"][i, :length],
                    self.stft_config,
                    self.phase_iterations,
                )
            else:
                signals = istft(batch["spectra"][i, :n_frames].unsqueeze(0) * item_masks, self.stft_config, length)
            outputs.append(signals.float().cpu().numpy())
        return outputs

    def separate(self, waveform, n_speakers: int) -> np.ndarray:
        """Separate one mixture ``(samples,)`` at ``sample_rate`` into ``(K, samples)`` float32."""
        return self.separate_batch([waveform], n_speakers)[0]


_SEPARATORS: dict = {}
_SEPARATORS_LOCK = threading.Lock()
SEPARATOR_LOADS: Counter = Counter()  # model loads of this process, by cache key


def cached_separator(
    model_url: str,
    device: str = "auto",
    kmeans: str = "auto",
    inference: str = "auto",
    model_sha256: str | None = None,
    precision: str = "auto",
) -> Separator:
    """The ``Separator`` of this process for these settings: loaded by the first batch, reused by every later
    batch and thread of the process (a model file is read once per worker, not per batch). ``model_sha256``
    (the file's checksum, when the caller knows it) is part of the key: a replaced model file is loaded anew."""
    key = (model_url, device, kmeans, inference, model_sha256, precision)
    with _SEPARATORS_LOCK:  # two threads asking at once load it once
        if key not in _SEPARATORS:
            _SEPARATORS[key] = Separator(
                model_url, device=device, kmeans=kmeans, inference=inference, precision=precision
            )
            SEPARATOR_LOADS[key] += 1
        return _SEPARATORS[key]
