"""The waveform loss: minus the SNR of the mask head's resynthesised talkers, permutation-invariant, capped."""

import numpy as np
import pytest
import torch

from deepclust.audio import read_audio
from deepclust.features.extract import FeatureConfig
from deepclust.features.stft import StftConfig, istft, stft
from deepclust.model.blstm import DeepClusteringNet, ModelConfig
from deepclust.model.waveform_loss import waveform_snr_loss
from deepclust.training.config import TrainConfig
from deepclust.training.dynamic_mixing import mixture_batch
from deepclust.training.objective import batch_loss

CONFIG = StftConfig()


@pytest.fixture(scope="module")
def talkers(corpora_dir):
    """Two real LibriSpeech readers, 1.5 s each, at comparable levels: ``(1, 2, samples)``."""
    paths = sorted((corpora_dir / "librispeech-speakers").glob("*/*.flac"))[:2]
    waves = [read_audio(str(p), target_sr=8000)[0][4000:16000] for p in paths]
    waves = [w / np.sqrt(np.mean(w**2)) * 0.05 for w in waves]
    return torch.from_numpy(np.stack(waves).astype(np.float32)).unsqueeze(0)


def _snr_db(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    return float(10 * torch.log10(reference.pow(2).sum() / (reference - estimate).pow(2).sum()))


def test_the_loss_is_minus_the_mean_snr_in_bels_of_the_best_pairing(talkers):
    mixture = talkers.sum(1)
    spectra = stft(mixture, CONFIG)
    sources_spectra = stft(talkers[0], CONFIG)
    masks = (sources_spectra.abs() / (sources_spectra.abs().sum(0) + 1e-8)).unsqueeze(0)  # the IRM, (1, 2, T, F)
    loss = waveform_snr_loss(masks, spectra, talkers, CONFIG, max_snr_db=100.0)
    estimates = [istft(masks[0, c] * spectra[0], CONFIG, length=talkers.shape[-1]) for c in range(2)]
    expected = -np.mean([_snr_db(estimates[c], talkers[0, c]) for c in range(2)]) / 10
    assert float(loss) == pytest.approx(expected, rel=1e-4)
    assert expected < -0.8  # the IRM separates these two readers by more than 8 dB
    # The order of the masks does not matter, and a worse mask scores worse.
    assert float(waveform_snr_loss(masks.flip(1), spectra, talkers, CONFIG, max_snr_db=100.0)) == pytest.approx(
        float(loss), rel=1e-6
    )
    halves = torch.full_like(masks, 0.5)
    assert float(waveform_snr_loss(halves, spectra, talkers, CONFIG)) > float(loss) + 0.5


def test_the_cap_bounds_a_perfect_estimate_and_a_silent_talker_stays_finite(talkers):
    spectra = stft(talkers.sum(1), CONFIG)
    ones = torch.ones(1, 1, *spectra.shape[1:])
    # One talker and silence: mask 1 gives back the talker exactly, the zero mask the silence.
    alone = torch.cat([talkers[:, :1], torch.zeros_like(talkers[:, :1])], 1)
    alone_spectra = stft(alone[:, 0], CONFIG)
    masks = torch.cat([ones, torch.zeros_like(ones)], 1).requires_grad_()
    loss = waveform_snr_loss(masks, alone_spectra, alone, CONFIG, max_snr_db=30.0)
    assert loss.item() == pytest.approx(-3.0, abs=0.01)  # both at the 30 dB cap: log10(1e-3)
    loss.backward()
    assert torch.isfinite(masks.grad).all()


def test_batch_loss_adds_the_waveform_term_only_when_asked_and_it_trains(talkers):
    batch = mixture_batch(talkers.numpy(), FeatureConfig(), None)
    torch.manual_seed(0)
    model = DeepClusteringNet(ModelConfig.preset("chimera++", hidden=8, layers=1, emb_dim=4))
    plain = batch_loss(model, batch, torch.device("cpu"), None, TrainConfig(dc_loss="whitened"))
    mixed = batch_loss(
        model, batch, torch.device("cpu"), None, TrainConfig(dc_loss="whitened", waveform_loss_weight=1.0)
    )
    assert float(plain) != pytest.approx(float(mixed), abs=1e-3)
    # All of the mask term to the waveform: 0.5 DC + 0.5 WAV, the phase-sensitive loss not in it at all.
    dc_only = batch_loss(model, batch, torch.device("cpu"), None, TrainConfig(dc_loss="whitened", mask_loss_weight=0.0))
    masks = model(batch["log_mag"], heads=True)["masks"]
    wav = waveform_snr_loss(masks, batch["mixture_spectra"], batch["sources"], batch["stft_config"])
    assert float(mixed) == pytest.approx(0.5 * float(dc_only) + 0.5 * float(wav), abs=1e-5)
    # Trained on the waveform loss alone for a few steps, the tiny network resynthesises these talkers better.
    config = TrainConfig(dc_loss="whitened", mask_loss_weight=1.0, waveform_loss_weight=1.0)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = batch_loss(model, batch, torch.device("cpu"), None, config)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05, losses
    without = {k: v for k, v in batch.items() if k != "sources"}
    with pytest.raises(ValueError, match="dynamic mixing"):
        batch_loss(model, without, torch.device("cpu"), None, TrainConfig(waveform_loss_weight=0.5))
    with pytest.raises(ValueError, match="waveform_loss_weight"):
        TrainConfig(waveform_loss_weight=1.5)
