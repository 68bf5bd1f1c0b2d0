"""STFT conventions of Hershey et al. 2016 (32 ms sqrt-Hann, 8 ms hop) and perfect reconstruction."""

import numpy as np
import pytest
import soundfile as sf
import torch

from deepclust.features.stft import StftConfig, istft, istft_np, num_frames, stft, stft_np

FSDD_FILES = ["0_jackson_0.wav", "3_theo_12.wav", "7_nicolas_33.wav", "9_yweweler_4.wav"]


def _speech(fsdd_dir, name):
    x, sr = sf.read(fsdd_dir / name, dtype="float64")
    assert sr == 8000
    return x


def test_sizes_at_8khz_are_the_papers():
    config = StftConfig()
    assert (config.n_fft, config.hop, config.n_freq) == (256, 64, 129)


def test_sizes_at_16khz_scale_with_the_sample_rate():
    config = StftConfig(sample_rate=16000)
    assert (config.n_fft, config.hop, config.n_freq) == (512, 128, 257)
    X = stft(torch.randn(2, 16000), config)
    assert X.shape == (2, 1 + 16000 // 128, 257)
    assert X.dtype == torch.complex64


def test_stft_shape_is_batch_frames_freq(fsdd_dir):
    x = torch.from_numpy(_speech(fsdd_dir, FSDD_FILES[0])).float()
    X = stft(x.unsqueeze(0).repeat(3, 1))
    assert X.shape == (3, num_frames(x.shape[0], StftConfig()), 129)
    # A 1-D input gives (frames, freq), the same frames as the batched call.
    torch.testing.assert_close(stft(x), X[1])
    # Frequency is the last axis: a pure tone at 1 kHz peaks in bin 1000 / (8000 / 256) = 32.
    t = torch.arange(8000) / 8000.0
    tone = stft(torch.sin(2 * torch.pi * 1000.0 * t))
    assert int(tone.abs().mean(dim=0).argmax()) == 32


def test_window_is_periodic_sqrt_hann_and_overlap_adds_to_a_constant():
    config = StftConfig()
    # The spectrum of a unit impulse at the centre of frame 4 is the window value at its centre (1).
    x = torch.zeros(4096, dtype=torch.float64)
    x[4 * config.hop] = 1.0
    X = stft(x, config)
    assert X[4].abs().max().item() == pytest.approx(1.0, abs=1e-12)
    w = torch.hann_window(config.n_fft, periodic=True, dtype=torch.float64).sqrt()
    # The product of analysis and synthesis windows, overlap-added at the hop, is flat (= 2).
    ola = sum(torch.roll(w**2, k * config.hop) for k in range(config.n_fft // config.hop))
    torch.testing.assert_close(ola, torch.full_like(ola, 2.0))


@pytest.mark.parametrize("dtype, tolerance", [(np.float32, 1e-6), (np.float64, 1e-12)])
def test_stft_istft_reconstructs_real_speech(fsdd_dir, dtype, tolerance):
    for name in FSDD_FILES:
        x = _speech(fsdd_dir, name).astype(dtype)
        y = istft_np(stft_np(x), length=x.shape[0])
        assert y.dtype == dtype
        assert y.shape == x.shape
        error = np.abs(y.astype(np.float64) - x.astype(np.float64)).max()
        assert error < tolerance, f"{name}: max abs error {error:.3g} ({np.dtype(dtype).name})"


def test_batched_istft_reconstructs_at_16khz():
    config = StftConfig(sample_rate=16000)
    x = torch.randn(2, 12345, dtype=torch.float64) * 0.1
    y = istft(stft(x, config), config, length=x.shape[-1])
    assert y.shape == x.shape
    assert (y - x).abs().max().item() < 1e-12


def test_short_signals_work_with_zero_padding():
    # Shorter than half a window: reflect padding would fail here.
    x = torch.randn(100)
    y = istft(stft(x), length=100)
    assert (y - x).abs().max().item() < 1e-6


def test_istft_rejects_a_wrong_number_of_bins():
    with pytest.raises(ValueError, match="129"):
        istft(torch.zeros(1, 10, 257, dtype=torch.complex64), StftConfig(), length=576)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_stft_runs_on_cuda(fsdd_dir):
    x = torch.from_numpy(_speech(fsdd_dir, FSDD_FILES[1])).float()
    X_cpu = stft(x)
    X_gpu = stft(x.cuda())
    assert X_gpu.is_cuda
    torch.testing.assert_close(X_gpu.cpu(), X_cpu, rtol=1e-4, atol=1e-4)
    y = istft(X_gpu, length=x.shape[0])
    assert (y.cpu() - x).abs().max().item() < 1e-5
