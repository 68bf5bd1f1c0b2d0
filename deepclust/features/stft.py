"""Short-time Fourier transform in the order used everywhere in deepclust: `(batch, frames, freq)`.

Hershey et al., "Deep clustering: discriminative embeddings for segmentation and separation",
ICASSP 2016, Sec. 4.1: 32 ms sine (square-root Hann) window, 8 ms hop, at 8 kHz, giving
256-point frames and 129 frequency bins. The same square-root Hann window is used for analysis and
synthesis, so with a hop of a quarter window the overlap-added window product (a Hann window) sums to a
constant and masks applied in the STFT domain invert without extra gain.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from deepclust.pipeline.plan import JsonableConfig

__all__ = ["StftConfig", "stft", "istft", "stft_np", "istft_np", "num_frames"]


@dataclass(frozen=True)
class StftConfig(JsonableConfig):
    """STFT parameters; the defaults are the paper's recipe (Sec. 4.1).

    Window and hop are given in milliseconds so one config serves 8 kHz (256/64/129) and
    16 kHz (512/128/257) audio alike.
    """

    sample_rate: int = 8000
    win_ms: float = 32.0
    hop_ms: float = 8.0

    @property
    def n_fft(self) -> int:
        """Window (and FFT) length in samples: 256 at 8 kHz."""
        return int(round(self.sample_rate * self.win_ms / 1000.0))

    @property
    def hop(self) -> int:
        """Hop length in samples: 64 at 8 kHz."""
        return int(round(self.sample_rate * self.hop_ms / 1000.0))

    @property
    def n_freq(self) -> int:
        """Number of one-sided frequency bins: `n_fft // 2 + 1` (129 at 8 kHz)."""
        return self.n_fft // 2 + 1

    @classmethod
    def from_dict(cls, data: dict) -> "StftConfig":
        """``JsonableConfig.from_dict``, each number made its field's type first: a hand-written ``win_ms: 32`` reads
        as 32.0, so the dict form (in model files and stage keys) does not depend on how a number was spelt."""
        kinds = {"sample_rate": int, "win_ms": float, "hop_ms": float}
        return super().from_dict({key: kinds[key](value) if key in kinds else value for key, value in data.items()})


def num_frames(num_samples: int, config: StftConfig) -> int:
    """Frames that `stft` returns for a signal of `num_samples` samples (centred frames)."""
    return 1 + num_samples // config.hop


@functools.lru_cache(maxsize=16)
def _sqrt_hann(n_fft: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    # Periodic (not symmetric) Hann: its shifted copies at hop n_fft/4 sum exactly to a constant,
    # which is what makes sqrt-Hann analysis + synthesis a perfect-reconstruction pair.
    return torch.hann_window(n_fft, periodic=True, dtype=dtype, device=device).sqrt()


def _window(config: StftConfig, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return _sqrt_hann(config.n_fft, dtype, str(device))


def stft(x: torch.Tensor, config: StftConfig = StftConfig()) -> torch.Tensor:
    """Complex STFT with a periodic sqrt-Hann window.

    Args:
        x: real waveform, `(batch, samples)` or `(samples,)`, float32 or float64, any device.
        config: window/hop parameters.

    Returns:
        complex tensor `(batch, frames, freq)` (or `(frames, freq)` for a 1-D input), with
        `frames = 1 + samples // hop` and `freq = n_fft // 2 + 1`; complex64 for float32 input.
    """
    if not torch.is_tensor(x):
        raise TypeError(f"stft expects a torch.Tensor, got {type(x).__name__}; use stft_np for numpy")
    squeeze = x.dim() == 1
    if squeeze:
        x = x.unsqueeze(0)
    if x.dim() != 2:
        raise ValueError(f"stft expects (batch, samples) or (samples,), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.float()
    spec = torch.stft(
        x,
        n_fft=config.n_fft,
        hop_length=config.hop,
        win_length=config.n_fft,
        window=_window(config, x.dtype, x.device),
        center=True,
        # Zero padding instead of torch's default reflect: reflect fails on signals shorter than
        # half a window and invents content at the edges that the sources do not contain.
        pad_mode="constant",
        normalized=False,
        onesided=True,
        return_complex=True,
    )  # (batch, freq, frames)
    spec = spec.transpose(1, 2)  # (batch, frames, freq)
    return spec[0] if squeeze else spec


def istft(X: torch.Tensor, config: StftConfig = StftConfig(), length: int | None = None) -> torch.Tensor:
    """Inverse of `stft` (weighted overlap-add, normalised by the summed squared window).

    Args:
        X: complex tensor `(batch, frames, freq)` or `(frames, freq)`.
        config: the config used for the forward transform.
        length: number of output samples (the original signal length); without it the output has
            `(frames - 1) * hop` samples.

    Returns:
        real tensor `(batch, samples)` (or `(samples,)` for a 2-D input).
    """
    squeeze = X.dim() == 2
    if squeeze:
        X = X.unsqueeze(0)
    if X.dim() != 3:
        raise ValueError(f"istft expects (batch, frames, freq) or (frames, freq), got {tuple(X.shape)}")
    if X.shape[-1] != config.n_freq:
        raise ValueError(f"istft expects {config.n_freq} frequency bins for {config}, got {X.shape[-1]}")
    if not X.is_complex():
        raise TypeError("istft expects a complex tensor")
    real_dtype = X.real.dtype
    y = torch.istft(
        X.transpose(1, 2).contiguous(),  # torch wants (batch, freq, frames)
        n_fft=config.n_fft,
        hop_length=config.hop,
        win_length=config.n_fft,
        window=_window(config, real_dtype, X.device),
        center=True,
        normalized=False,
        onesided=True,
        length=length,
        return_complex=False,
    )  # (batch, samples)
    return y[0] if squeeze else y


def stft_np(x: np.ndarray, config: StftConfig = StftConfig()) -> np.ndarray:
    """numpy wrapper of `stft`: `(samples,)` or `(batch, samples)` -> complex `(..., frames, freq)`.

    float64 input gives complex128 output, anything else complex64.
    """
    x = np.asarray(x)
    dtype = np.float64 if x.dtype == np.float64 else np.float32
    return stft(torch.from_numpy(np.ascontiguousarray(x, dtype=dtype)), config).numpy()


def istft_np(X: np.ndarray, config: StftConfig = StftConfig(), length: int | None = None) -> np.ndarray:
    """numpy wrapper of `istft`: complex `(..., frames, freq)` -> `(..., samples)`."""
    X = np.asarray(X)
    dtype = np.complex128 if X.dtype == np.complex128 else np.complex64
    return istft(torch.from_numpy(np.ascontiguousarray(X, dtype=dtype)), config, length).numpy()
