"""Inference runs only the head it reads, and that changes no output (issue 17).

The shipped Chimera++ model on real FSDD speech: ``DeepClusteringNet.infer`` equals the training forward to
1e-5 head by head; mask inference never runs the embedding head unless a long recording's alignment asks for
the centroids, and then they equal the ones computed from the full forward; k-means never runs the mask head.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from deepclust import pretrained
from deepclust.audio import read_audio
from deepclust.model.blstm import DeepClusteringNet, ModelConfig
from deepclust.separation import long as long_module
from deepclust.separation.long import separate_long
from deepclust.separation.separator import Separator
from deepclust.separation.stitching import TRACK_HISTORY, Stitcher
from deepclust.separation.window_batch import WindowBatch, WindowCentroids, cluster_centroids, separate_window_batch
from deepclust.separation.windows import WindowConfig

RATE = 8000
SPEAKERS = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]


@pytest.fixture(scope="module")
def shipped():
    return pretrained.load("cpu")


@pytest.fixture(scope="module")
def mixtures(fsdd_dir):
    """Four real two-talker FSDD mixtures of different lengths (the batch is padded and packed)."""
    items = []
    for i in range(4):
        a = read_audio(fsdd_dir / f"{i}_{SPEAKERS[i]}_{i + 3}.wav")[0]
        b = read_audio(fsdd_dir / f"{(i + 5) % 10}_{SPEAKERS[(i + 2) % 6]}_{i + 11}.wav")[0]
        n = max(len(a), len(b))
        items.append((0.5 * (np.pad(a, (0, n - len(a))) + np.pad(b, (0, n - len(b))))).astype(np.float32))
    return items


class HeadCalls:
    """Counts the calls of a model's two head layers (forward hooks)."""

    def __init__(self, model):
        self.calls = {"embed": 0, "mask": 0}
        self.handles = [getattr(model, name).register_forward_hook(self._hook(name)) for name in self.calls]

    def _hook(self, name):
        def count(*_):
            self.calls[name] += 1

        return count

    def close(self):
        for handle in self.handles:
            handle.remove()


@pytest.mark.parametrize("front_end", ["none", "conv2"])
def test_infer_equals_the_training_forward_head_by_head(front_end):
    torch.manual_seed(0)
    model = DeepClusteringNet(
        ModelConfig.preset("chimera++", hidden=24, layers=2, emb_dim=5, front_end=front_end)
    ).eval()
    features, lengths = torch.randn(3, 41, 129), torch.tensor([41, 30, 17])
    with torch.no_grad():
        full = model(features, lengths=lengths, heads=True)
        both = model.infer(features, lengths, hidden=True)
        masks_only = model.infer(features, lengths, embeddings=False)
        embeddings_only = model.infer(features, lengths, masks=False)
        later = model.embedding_head(both["hidden"])
    assert set(masks_only) == {"masks"} and set(embeddings_only) == {"embeddings"}
    torch.testing.assert_close(masks_only["masks"], full["masks"], rtol=0, atol=1e-5)
    torch.testing.assert_close(embeddings_only["embeddings"], full["embeddings"], rtol=0, atol=1e-5)
    torch.testing.assert_close(both["masks"], full["masks"], rtol=0, atol=1e-5)
    torch.testing.assert_close(later, full["embeddings"], rtol=0, atol=1e-5)


def test_separator_reads_one_head_and_separates_as_the_full_forward_does(shipped, mixtures):
    """fp32 with the shipped model: mask inference runs no embedding head, k-means no mask head, and the
    separated signals equal those made from the full forward's masks to 1e-5."""
    for inference, unused in (("mask", "embed"), ("kmeans", "mask")):
        separator = Separator(shipped, device="cpu", inference=inference, precision="fp32")
        calls = HeadCalls(separator.model)
        estimates = separator.separate_batch(mixtures, 2)
        assert calls.calls[unused] == 0 and calls.calls["mask" if unused == "embed" else "embed"] == 1, calls.calls
        calls.close()
        # The reference: the training forward (both heads) on the same features, then the same k-means/masks.
        batch = separator.embed_batch(mixtures)  # both heads, as before issue 17
        with torch.no_grad():
            features = separator.feature_stats.apply(
                torch.log(
                    batch["spectra"].abs()
                    * (
                        torch.arange(batch["spectra"].shape[1])[None, :, None]
                        < torch.tensor(batch["frame_counts"])[:, None, None]
                    )
                    + separator.feature_config.log_floor
                )
            )
            full = separator.model(features, lengths=torch.tensor(batch["frame_counts"]), heads=True)
        torch.testing.assert_close(batch["masks"], full["masks"], rtol=0, atol=1e-5)
        torch.testing.assert_close(batch["embeddings"], full["embeddings"], rtol=0, atol=1e-5)
        reference = separator.reconstruct_masks(batch, separator.assign(batch, 2)[0])
        for got, expected in zip(estimates, reference):
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_mask_inference_centroids_are_computed_only_when_asked_and_equal_the_full_forwards(shipped, mixtures):
    separator = Separator(shipped, device="cpu", inference="mask", precision="fp32")
    calls = HeadCalls(separator.model)
    assert separate_window_batch(separator, mixtures, 2, centroids=False).centroids is None
    batch = separate_window_batch(separator, mixtures, 2)
    assert calls.calls["embed"] == 0 and not any(c.computed for c in batch.centroids)
    full = separator.embed_batch(mixtures)  # both heads
    labels = full["masks"].argmax(1)
    expected = cluster_centroids(full["embeddings"], labels, full["valid"], 2).numpy()
    for i, centroids in enumerate(batch.centroids):
        np.testing.assert_allclose(centroids(), expected[i], rtol=0, atol=1e-5)
        assert centroids.computed
    calls.close()


def test_running_track_centroids_from_the_bounded_history_equal_the_running_average_over_every_window():
    rng = np.random.default_rng(0)
    stitcher = Stitcher([], writer=None)
    running = None
    for index in range(3 * TRACK_HISTORY):
        values = rng.normal(size=(3, 20)).astype(np.float32)
        values /= np.linalg.norm(values, axis=1, keepdims=True)
        perm = tuple(rng.permutation(3))
        stitcher.history.append((WindowCentroids(values), perm))
        aligned = values[list(perm)]
        # The eager rule every window used to apply.
        running = aligned if running is None else 0.5 * running + 0.5 * aligned
        if index < TRACK_HISTORY:
            assert np.array_equal(stitcher.track_centroids(), running)
        else:
            np.testing.assert_allclose(stitcher.track_centroids(), running, rtol=0, atol=1e-7)


def _eager_window_batch(separator, waveforms, n_speakers, centroids=True):
    """separate_window_batch as it was before issue 17: both heads, every window's centroids computed."""
    k = int(n_speakers)
    batch = separator.embed_batch(waveforms)
    masks, labels = separator.assign(batch, k)
    values = cluster_centroids(batch["embeddings"], labels, batch["valid"], k).float().cpu().numpy()
    return WindowBatch(separator.reconstruct_masks(batch, masks), [WindowCentroids(v) for v in values], 0.0, 0.0)


def test_long_recording_with_silent_overlaps_separates_as_with_eager_centroids(
    shipped, fsdd_dir, tmp_path, monkeypatch
):
    """Digital silence over two overlaps makes the alignment fall back to the centroids: the lazy ones (the
    embedding head run then, on the kept trunk output) give the outputs the eager ones gave."""
    speech = np.concatenate([read_audio(fsdd_dir / f"{d}_{SPEAKERS[d % 6]}_{d + 1}.wav")[0] for d in range(10)])
    other = np.concatenate([read_audio(fsdd_dir / f"{d}_{SPEAKERS[(d + 3) % 6]}_{d + 20}.wav")[0] for d in range(10)])
    n = 14 * RATE
    mixture = 0.5 * (np.resize(speech, n) + np.resize(other, n))
    for start, end in ((2.8, 4.2), (8.8, 10.2)):  # window 4 s, hop 3 s: overlaps at [3, 4] and [9, 10]
        mixture[int(start * RATE) : int(end * RATE)] = 0.0
    path = tmp_path / "gaps.wav"
    sf.write(path, mixture.astype(np.float32), RATE, subtype="FLOAT")
    config = WindowConfig(window_seconds=4.0, overlap_seconds=1.0, windows_per_batch=2)
    separator = Separator(shipped, device="cpu", inference="mask", precision="fp32")

    lazy = [str(tmp_path / f"lazy{k}.wav") for k in (1, 2)]
    info = separate_long(separator, str(path), lazy, 2, config)
    assert info["aligned_by_centroids"] == 2, info
    monkeypatch.setattr(long_module, "separate_window_batch", _eager_window_batch)
    eager = [str(tmp_path / f"eager{k}.wav") for k in (1, 2)]
    eager_info = separate_long(separator, str(path), eager, 2, config)
    assert eager_info["aligned_by_centroids"] == 2
    for a, b in zip(lazy, eager):
        np.testing.assert_allclose(sf.read(a, dtype="float32")[0], sf.read(b, dtype="float32")[0], rtol=0, atol=1e-5)


def test_int8_is_a_separation_precision_only_and_a_change_of_settings(shipped, mixtures, tmp_path):
    """``precision="int8"``: the LSTM and linear layers quantised (a copy: the loaded model stays float32), the
    masks within a few hundredths of float32's, and an archive separated at fp32 is separated again at int8
    (the rows' settings name the precision), never mixed."""
    import json

    from deepclust.archive import separate_archive
    from deepclust.model.device import inference_precision, resolve_precision

    assert inference_precision("int8", "cpu") == "int8"
    with pytest.raises(ValueError, match="CPU only"):
        inference_precision("int8", "cuda")
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("int8", torch.device("cpu"))  # training never takes it
    int8 = Separator(shipped, device="cpu", inference="mask", precision="int8")
    fp32 = Separator(shipped, device="cpu", inference="mask", precision="fp32")
    quantised_lstm = torch.ao.nn.quantized.dynamic.LSTM
    assert isinstance(int8.model.blstm, quantised_lstm) and not isinstance(shipped.model.blstm, quantised_lstm)
    quantised, reference = (s.embed_batch(mixtures, embeddings=False)["masks"] for s in (int8, fp32))
    assert (quantised - reference).abs().mean() < 0.02
    assert all(e.dtype == np.float32 for e in int8.separate_batch(mixtures, 2))

    archive = tmp_path / "in"
    archive.mkdir()
    for i, mixture in enumerate(mixtures[:2]):
        sf.write(archive / f"m{i}.wav", mixture, RATE)
    out = str(tmp_path / "out")
    model_url = pretrained.path()
    first = separate_archive(fp32, str(archive), out, model_url=model_url, precision="fp32")
    again = separate_archive(int8, str(archive), out, model_url=model_url, precision="int8")
    assert first["separated"] == again["separated"] == 2, (first, again)
    from deepclust.archive import read_manifest

    assert {json.loads(s)["precision"] for s in read_manifest(out)["settings"]} == {"int8"}
