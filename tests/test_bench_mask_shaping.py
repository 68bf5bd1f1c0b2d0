"""The mask shapes of benchmarks/bench_mask_shaping.py do what their names say, and its system shares one network
forward between the shapes of a batch."""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_mask_shaping import SecondPass, ShapedMasks, ShiftedAverage, shaped  # noqa: E402


def test_each_shape_does_what_its_name_says():
    masks = torch.tensor([[[[0.0, 0.5, 0.9, 1.0]], [[0.0, 0.25, 0.6, 1.0]]]])  # (1, K=2, 1 frame, 4 bins)
    shapes = shaped(masks)
    assert torch.equal(shapes["id"], masks)
    torch.testing.assert_close(shapes["pow2"], masks**2)
    totals = shapes["norm"].sum(1)
    torch.testing.assert_close(totals[0, 0, 1:], torch.ones(3))  # every bin with any mask sums to one
    capped = shapes["normcap"]
    torch.testing.assert_close(capped[..., :2], masks[..., :2])  # bins that sum to <= 1 are left as they are
    torch.testing.assert_close(capped.sum(1)[0, 0, 2:], torch.ones(2))  # the others are brought down to one
    assert (shapes["pow1.5"] <= masks).all() and (shapes["pow0.75"] >= masks).all()


class _CountingSeparator:
    """A stand-in with the two calls ShapedMasks makes, counting forwards (no network needed to test sharing)."""

    def __init__(self):
        self.forwards = 0

    def embed_batch(self, waveforms, embeddings, masks):
        self.forwards += 1
        return {"masks": torch.full((len(waveforms), 2, 3, 4), 0.8)}

    def reconstruct_masks(self, batch, masks):
        return [m.numpy() for m in masks]


def test_the_shapes_of_one_batch_share_one_forward():
    separator, shared = _CountingSeparator(), {}
    systems = {name: ShapedMasks(separator, name, shared) for name in ("id", "normcap")}
    waveforms = [np.zeros(10), np.zeros(12)]
    outputs = {name: system.separate_batch(waveforms, 2) for name, system in systems.items()}
    assert separator.forwards == 1
    np.testing.assert_allclose(outputs["normcap"][0], 0.5)  # 0.8 + 0.8 > 1: brought down to 0.5 each
    systems["id"].separate_batch([np.zeros(10)], 2)  # another batch: a forward of its own
    assert separator.forwards == 2


class _HalvingSeparator:
    """Gives each input back as two voices: the input itself and a tenth of it (the quiet one)."""

    def separate_batch(self, waveforms, n_speakers):
        return [np.stack([w, 0.1 * w][:n_speakers]) for w in waveforms]


def test_the_second_pass_keeps_the_louder_voice_of_each_estimate():
    [estimates] = SecondPass(_HalvingSeparator()).separate_batch([np.arange(4.0)], 2)
    np.testing.assert_allclose(estimates, [np.arange(4.0), 0.1 * np.arange(4.0)])  # each estimate's own louder part


class _SwappingSeparator:
    """Knows the two talkers of a mixture; gives them back delayed as its input is, in the other order when the
    input is delayed (as a second pass may: its talkers' order is its own)."""

    def __init__(self, talkers):
        self.talkers = talkers

    def separate_batch(self, waveforms, n_speakers):
        out = []
        for w in waveforms:
            delay = np.zeros(len(w) - self.talkers.shape[1], np.float32)
            voices = np.stack([np.concatenate([delay, t]) for t in self.talkers])
            out.append(voices[::-1] if len(delay) else voices)
        return out


def test_the_shifted_average_undoes_each_delay_and_aligns_each_pass_to_the_first():
    rng = np.random.default_rng(0)
    talkers = rng.normal(size=(2, 400)).astype(np.float32)
    [estimate] = ShiftedAverage(_SwappingSeparator(talkers), (0, 16, 32)).separate_batch([talkers.sum(0)], 2)
    np.testing.assert_allclose(estimate, talkers, atol=1e-6)  # each pass shifted back, none averaged swapped
