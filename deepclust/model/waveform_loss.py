"""A loss on the mask head's waveforms: the quantity the benchmarks score, instead of a spectral proxy.

Chimera++'s truncated PSA loss compares masked magnitudes with phase-sensitive targets bin by bin. What a
user hears, and what BSS-eval scores, is the waveform that the mask and the mixture's phase resynthesise.
Wang, Le Roux, Wang and Hershey ("End-to-end speech separation with unfolded iterative phase
reconstruction", Interspeech 2018) fine-tune Chimera++ through the inverse STFT with a waveform loss and
gain about 0.3-0.6 dB SDR over PSA alone. We use the negative signal-to-noise ratio rather than their L1:
it weighs every utterance alike in dB, as the SDRi averages do, and does not depend on loudness.

    L_WAV = min_pi 1/C sum_c log10( (|s_pi(c) - istft(M_c X)|^2 + tau |s_pi(c)|^2) / |s_pi(c)|^2 )

``log10`` of the error ratio is minus the SNR in bels (-1 at 10 dB). ``tau = 10^(-30/10)`` caps what an
already clean utterance can contribute at 30 dB (Wisdom et al.'s soft threshold, MixIT, 2020), so the
easy mixtures do not drown the hard ones; a floor of ``1e-8`` of the mixture's energy keeps a source that
is silent in its crop finite.
"""

from __future__ import annotations

import torch

from deepclust.features.stft import StftConfig, istft
from deepclust.model.permutation import min_over_permutations

MAX_SNR_DB = 30.0


def masked_waveforms(
    masks: torch.Tensor, mixture_spectra: torch.Tensor, config: StftConfig, samples: int
) -> torch.Tensor:
    """``istft(M_c X)`` with the mixture's phase: masks ``(batch, C, frames, freq)``, complex spectra
    ``(batch, frames, freq)`` -> float ``(batch, C, samples)``."""
    batch, n_sources, frames, freq = masks.shape
    spectra = masks * mixture_spectra.unsqueeze(1)
    return istft(spectra.reshape(batch * n_sources, frames, freq), config, length=samples).view(
        batch, n_sources, samples
    )


def waveform_snr_loss(
    masks: torch.Tensor,
    mixture_spectra: torch.Tensor,
    sources: torch.Tensor,
    config: StftConfig,
    max_snr_db: float = MAX_SNR_DB,
) -> torch.Tensor:
    """Permutation-invariant negative SNR, in bels, of the masked mixture's waveforms; batch mean.

    Args:
        masks: ``(batch, C, frames, freq)`` the mask head's masks.
        mixture_spectra: complex ``(batch, frames, freq)``: the mixture's STFT (``deepclust.features.stft``).
        sources: ``(batch, C, samples)`` the talkers' target waveforms (what the PSA targets were made from).
        config: the STFT the spectra came from.
    """
    if masks.ndim != 4 or sources.ndim != 3 or masks.shape[:2] != sources.shape[:2]:
        raise ValueError(
            f"masks {tuple(masks.shape)} and sources {tuple(sources.shape)} must be "
            f"(batch, C, frames, freq) and (batch, C, samples)"
        )
    with torch.autocast(device_type=masks.device.type, enabled=False):
        sources = sources.float()
        estimates = masked_waveforms(masks.float(), mixture_spectra, config, sources.shape[-1])
        floor = 1e-8 * sources.sum(1).pow(2).sum(-1).clamp_min(1e-12)  # (batch,)
        energy = sources.pow(2).sum(-1) + floor.unsqueeze(1)  # (batch, C)
        # error of estimate i against target j: (batch, C, C)
        error = (estimates.unsqueeze(2) - sources.unsqueeze(1)).pow(2).sum(-1)
        tau = 10.0 ** (-max_snr_db / 10.0)
        pair = torch.log10((error + tau * energy.unsqueeze(1)) / energy.unsqueeze(1))
        return (min_over_permutations(pair) / masks.shape[1]).mean()
