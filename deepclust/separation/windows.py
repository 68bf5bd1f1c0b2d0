"""How a recording is cut into overlapping network windows: the setting every separation path shares.

``WindowConfig`` is part of a separation's settings (it is recorded in every row), ``plan_windows`` turns it
into sample positions. Short files are one window; long ones are separated window by window
(``deepclust.separation.long``).
"""

from __future__ import annotations

from dataclasses import dataclass

from deepclust.pipeline.plan import JsonableConfig


@dataclass(frozen=True)
class WindowConfig(JsonableConfig):
    """How long recordings are cut.

    Attributes:
        window_seconds: length of one network input; sets the memory bound with ``windows_per_batch``.
        overlap_seconds: shared by neighbouring windows; used to align the speaker order and to crossfade.
            At most half a window, so that a window overlaps only its two neighbours.
        windows_per_batch: windows per network forward (and per batched k-means).
        context_seconds: extra input read on each side of a window for the resampling filter.
    """

    window_seconds: float = 10.0
    overlap_seconds: float = 2.0
    windows_per_batch: int = 8
    context_seconds: float = 0.05

    def __post_init__(self):
        if self.window_seconds <= 0:
            raise ValueError(f"window_seconds must be > 0, got {self.window_seconds}")
        if not 0 < self.overlap_seconds <= self.window_seconds / 2:
            raise ValueError(
                f"overlap_seconds must be in (0, window_seconds / 2], got {self.overlap_seconds}"
                f" for a {self.window_seconds} s window"
            )
        if self.windows_per_batch < 1:
            raise ValueError(f"windows_per_batch must be >= 1, got {self.windows_per_batch}")
        if self.context_seconds < 0:
            raise ValueError(f"context_seconds must be >= 0, got {self.context_seconds}")

    def samples(self, sample_rate: int) -> tuple[int, int]:
        """``(window, hop)`` in samples at ``sample_rate``."""
        window = max(2, int(round(self.window_seconds * sample_rate)))
        overlap = max(1, int(round(self.overlap_seconds * sample_rate)))
        return window, window - overlap


@dataclass(frozen=True)
class Window:
    """One network input ``[context_start, end)``, of which ``[start, end)`` goes to the output."""

    context_start: int
    start: int
    end: int


def plan_windows(n_samples: int, window: int, hop: int) -> list[Window]:
    """Windows covering ``n_samples`` with a regular hop; each overlaps only its neighbours.

    The last window keeps the regular start (so its overlap is the normal one) but reaches back to a
    full window of network context; the part before its start is computed and discarded.
    """
    if n_samples <= 0:
        return []
    if n_samples <= window:
        return [Window(0, 0, n_samples)]
    # Full windows while one still ends before the recording does; then the remainder (> overlap long).
    windows = [Window(s, s, s + window) for s in range(0, n_samples - window, hop)]
    last = windows[-1].start + hop
    windows.append(Window(n_samples - window, last, n_samples))
    return windows
