"""Multiple input spectrogram inversion (MISI; Gunawan and Sen, IEEE TASLP 2010), as Chimera++ uses it
(Wang, Le Roux, Hershey, ICASSP 2018, Sec. 4): re-estimate each source's phase so that the K estimates
are consistent STFTs and add up to the mixture, keeping the masked magnitudes.

    S_c = |M_c X| e^{j angle X}                                    (mixture phase: iteration 0)
    repeat: s_c = iSTFT(S_c); s_c += (x - sum_k s_k) / K;  S_c = |M_c X| e^{j angle STFT(s_c)}
    return iSTFT(S_c)
"""

from __future__ import annotations

import torch

from deepclust.features.stft import StftConfig, istft, stft


def misi(
    mixture_spectrum: torch.Tensor, masks: torch.Tensor, mixture: torch.Tensor, config: StftConfig, iterations: int
) -> torch.Tensor:
    """Waveforms ``(K, samples)`` from masks ``(K, frames, freq)`` on the mixture STFT ``(frames, freq)``.

    ``mixture`` ``(samples,)`` is the time-domain mixture the estimates must add up to; ``iterations`` = 0
    gives the plain mixture-phase inversion.
    """
    magnitudes = (masks * mixture_spectrum.abs().unsqueeze(0)).to(mixture_spectrum.real.dtype)  # (K, T, F)
    length, k = mixture.shape[-1], masks.shape[0]
    estimates = magnitudes * torch.exp(1j * torch.angle(mixture_spectrum)).unsqueeze(0)
    signals = istft(estimates, config, length)
    for _ in range(iterations):
        signals = signals + (mixture.unsqueeze(0) - signals.sum(0, keepdim=True)) / k
        phases = torch.angle(stft(signals, config))
        signals = istft(magnitudes * torch.exp(1j * phases), config, length)
    return signals
