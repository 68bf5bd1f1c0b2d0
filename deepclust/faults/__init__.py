"""What can go wrong, and what is worth trying again: the error types that name the item or the run and the reason
(``errors``), and the one rule for transient faults with the retry schedule built on it (``transient``).

The error types are this package's own names: ``from deepclust.faults import BadAudioError``.
"""

from deepclust.faults.errors import (
    BadAudioError,
    DamagedManifestError,
    DiskFullError,
    NetworkFaultError,
    RunFaultError,
    RunSettingError,
    WorkerLostError,
)

__all__ = [
    "BadAudioError",
    "DamagedManifestError",
    "DiskFullError",
    "NetworkFaultError",
    "RunFaultError",
    "RunSettingError",
    "WorkerLostError",
]
