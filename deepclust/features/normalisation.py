"""Per-frequency mean/variance normalisation of log-magnitude features.

Hershey et al. (ICASSP 2016, Sec. 4.1) feed the network log spectral magnitudes normalised by the
mean and standard deviation computed on the training set; these statistics travel with the model
checkpoint so separation normalises exactly as training did.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["FeatureStats", "RunningStats"]

# Floor on the standard deviation so a constant bin (e.g. digital silence at the log floor) does not
# divide by zero.
_MIN_STD = 1e-5


@dataclass
class FeatureStats:
    """Per-bin statistics of log-magnitude features.

    Attributes:
        mean: `(freq,)` float32.
        std: `(freq,)` float32, strictly positive.
    """

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float32).reshape(-1)
        self.std = np.maximum(np.asarray(self.std, dtype=np.float32).reshape(-1), _MIN_STD)
        if self.mean.shape != self.std.shape:
            raise ValueError(f"mean {self.mean.shape} and std {self.std.shape} differ in shape")

    @property
    def n_freq(self) -> int:
        """Number of frequency bins."""
        return int(self.mean.shape[0])

    def to_dict(self) -> dict:
        """JSON-able form: `{"mean": [...], "std": [...]}` (plain Python floats)."""
        return {"mean": self.mean.astype(float).tolist(), "std": self.std.astype(float).tolist()}

    def same_as(self, other: "FeatureStats") -> bool:
        """Whether ``other`` normalises exactly as this does (a warm start and a teacher must agree)."""
        return np.array_equal(self.mean, other.mean) and np.array_equal(self.std, other.std)

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureStats":
        """Inverse of `to_dict`; extra keys (e.g. `num_frames`) are ignored."""
        return cls(mean=np.asarray(data["mean"]), std=np.asarray(data["std"]))

    def apply(self, log_mag):
        """Normalise `(..., freq)` log magnitudes: `(log_mag - mean) / std`.

        Accepts a numpy array (returns float32 numpy) or a torch tensor (returns a tensor on the same
        device and dtype), broadcasting over all leading axes, e.g. `(batch, frames, freq)`.
        """
        if log_mag.shape[-1] != self.n_freq:
            raise ValueError(f"features have {log_mag.shape[-1]} bins, stats have {self.n_freq}")
        if torch.is_tensor(log_mag):
            mean = torch.as_tensor(self.mean, dtype=log_mag.dtype, device=log_mag.device)
            std = torch.as_tensor(self.std, dtype=log_mag.dtype, device=log_mag.device)
            return (log_mag - mean) / std
        return ((np.asarray(log_mag, dtype=np.float32) - self.mean) / self.std).astype(np.float32)


class RunningStats:
    """Streaming per-bin mean/variance over frames (Chan et al.'s parallel Welford update, float64).

    Each `update` folds in a whole utterance at once, which is both fast and numerically stable;
    `merge` combines accumulators built on different shards (e.g. in parallel tasks).
    """

    def __init__(self, n_freq: int | None = None) -> None:
        self.count = 0
        self.mean = None if n_freq is None else np.zeros(n_freq, dtype=np.float64)
        self.m2 = None if n_freq is None else np.zeros(n_freq, dtype=np.float64)

    def _fold(self, count: int, mean: np.ndarray, m2: np.ndarray) -> None:
        if count == 0:
            return
        if self.count == 0 or self.mean is None:
            self.count, self.mean, self.m2 = count, mean.copy(), m2.copy()
            return
        if mean.shape != self.mean.shape:
            raise ValueError(f"expected {self.mean.shape[0]} bins, got {mean.shape[0]}")
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * count / total)
        self.count = total

    def update(self, log_mag: np.ndarray) -> None:
        """Add the frames of one utterance, `(frames, freq)`."""
        frames = np.asarray(log_mag, dtype=np.float64)
        if frames.ndim != 2:
            raise ValueError(f"update expects (frames, freq), got shape {frames.shape}")
        if frames.shape[0] == 0:
            return
        mean = frames.mean(axis=0)
        m2 = ((frames - mean) ** 2).sum(axis=0)
        self._fold(frames.shape[0], mean, m2)

    def merge(self, other: "RunningStats") -> "RunningStats":
        """Fold another accumulator into this one (in place); returns self."""
        if other.count:
            self._fold(other.count, other.mean, other.m2)
        return self

    def result(self) -> FeatureStats:
        """Mean and (population) standard deviation of everything seen so far."""
        if self.count == 0:
            raise ValueError("RunningStats.result() called before any frames were added")
        return FeatureStats(mean=self.mean, std=np.sqrt(self.m2 / self.count))

    def to_dict(self) -> dict:
        """JSON-able state, so partial statistics can be returned from separate workers."""
        return {
            "count": int(self.count),
            "mean": None if self.mean is None else self.mean.tolist(),
            "m2": None if self.m2 is None else self.m2.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "RunningStats":
        """Inverse of ``to_dict``; a state with no frames gives an empty accumulator."""
        stats = cls()
        if data.get("count"):
            stats.count = int(data["count"])
            stats.mean = np.asarray(data["mean"], dtype=np.float64)
            stats.m2 = np.asarray(data["m2"], dtype=np.float64)
        return stats
