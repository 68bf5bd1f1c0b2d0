"""How a multi-channel recording becomes mono, and what "silent" means: one rule for whole files
(``deepclust.audio.read_audio``) and files read in blocks (``deepclust.audio.blocks.BlockReader``).

The mean of the channels, unless that mean cancels (is more than ``CANCEL_DB`` below the channels' mean energy:
one channel is the other with its polarity inverted, as a miswired balanced microphone records); then the
loudest channel. A user who knows better names the channel (``--channel N``, counted from 1).
"""

from __future__ import annotations

import math

import numpy as np

from deepclust.faults.errors import BadAudioError

# "Silent" means every channel's peak is below -90 dBFS: at most one step of 16-bit audio (-90.3 dBFS), so
# digital zeros and the last bit's dither, never a quiet recording.
SILENT_PEAK_DBFS = -90.0
SILENT_PEAK = 10.0 ** (SILENT_PEAK_DBFS / 20.0)
# A mean of the channels this far below their mean energy has cancelled: the mean of identical channels is 0 dB
# below, of uncorrelated ones 3 dB; 20 dB takes channels that are (nearly) each other's negative.
CANCEL_DB = 20.0


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """``(peaks (channels,), energies (channels,), energy of the mean)`` of ``(channels, samples)``; sums, so
    that blocks of a file add up to the whole file's figures (energies are summed, peaks maxed)."""
    x = np.asarray(x, dtype=np.float64)
    peaks = np.max(np.abs(x), axis=1) if x.shape[1] else np.zeros(x.shape[0])
    return peaks, np.sum(x * x, axis=1), float(np.sum(x.mean(axis=0) ** 2))


def _dbfs(value: float) -> str:
    return f"{20 * math.log10(value):.1f} dBFS" if value > 0 else "digital zero"


def silence_reason(peaks: np.ndarray) -> str | None:
    """The reason of a recording whose every channel is silent (see ``SILENT_PEAK_DBFS``), else None."""
    peaks = np.asarray(peaks, dtype=np.float64)
    if peaks.size == 0 or float(np.max(peaks)) >= SILENT_PEAK:
        return None
    channels = "its only channel is" if peaks.size == 1 else f"all {peaks.size} channels are"
    if float(np.max(peaks)) == 0.0:
        return f"all-silent audio: {channels} digital zero (every sample is 0)"
    return (
        f"all-silent audio: {channels} below {SILENT_PEAK_DBFS:.0f} dBFS peak (loudest sample "
        f"{_dbfs(float(np.max(peaks)))}), nothing above 16-bit audio's smallest step"
    )


def choose_downmix(
    path, peaks: np.ndarray, energies: np.ndarray, mix_energy: float, channel: int | None = None
) -> tuple[int | None, str]:
    """``(channel index, or None for the mean of the channels; how the channels were made mono)``.

    A mono file is read as it is. ``channel``: 1-based, as the user counts them (``--channel``);
    ``BadAudioError`` when the file has no such channel or it is silent. Else the mean, unless it is more
    than ``CANCEL_DB`` below the channels' mean energy: then the loudest channel (a mean that cancels would
    be separated as silence).
    """
    n = len(energies)
    if n == 1:  # --channel is about multi-channel files; a mono file is read as it is
        return None, "mono"
    if channel is not None:
        if not 1 <= int(channel) <= n:
            raise BadAudioError(
                path, f"has {n} channels: --channel {channel} names none of them (channels are counted from 1)"
            )
        index = int(channel) - 1
        if float(peaks[index]) < SILENT_PEAK:
            raise BadAudioError(
                path,
                f"channel {channel} of {n}, chosen by --channel, is silent (peak "
                f"{_dbfs(float(peaks[index]))}): choose another",
            )
        return index, f"channel {channel} of {n}, chosen by --channel"
    mean_energy = float(np.mean(energies))
    if mean_energy > 0 and mix_energy < mean_energy * 10.0 ** (-CANCEL_DB / 10.0):
        index = int(np.argmax(energies))
        drop = (
            f"{10 * math.log10(mean_energy / mix_energy):.0f} dB below" if mix_energy > 0 else "digital zero, far below"
        )
        return index, (
            f"channel {index + 1} of {n}, the loudest: the mean of the channels is {drop} their "
            f"energy (they cancel: one is another with its polarity inverted)"
        )
    return None, f"mean of {n} channels"
