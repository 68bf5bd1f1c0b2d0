"""Two kinds of failure, kept apart: an input that cannot be used (``BadAudioError``: a ``failed`` row, the batch
goes on) and a fault of the run itself (``RunFaultError``: a setting, the model, a full disk, a damaged
manifest; it would fail for any input, so the run stops in one plain line and no input is blamed for it)."""


class BadAudioError(ValueError):
    """Unreadable, empty, non-finite, silent or wrong-shaped audio.

    ``str(error)`` is ``"<path>: <reason>"`` so that a batch can record it verbatim in its manifest; ``reason``
    is in plain words (``deepclust.audio.reasons``), ``detail`` the library's own message, if any, for
    debugging (a manifest keeps it in a column of its own: it may name no path of ours).
    """

    def __init__(self, path, reason: str, detail: str = ""):
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        # Keep the constructor picklable (process pools, Dask, Prefect results).
        return (BadAudioError, (self.path, self.reason, self.detail))


class RunFaultError(RuntimeError):
    """A fault of the run, not of any input: the job stops, keeps what it finished, and says why in one line.

    ``str(error)`` is that line. The command line prints it and exits with ``exit_status``."""

    exit_status = 4


class RunSettingError(RunFaultError, ValueError):
    """A setting this run cannot use (e.g. ``--precision bf16`` on a CPU without bf16): found before any input."""

    exit_status = 2


class DiskFullError(RunFaultError):
    """The output location has no space left (or the quota is spent): rerunning after freeing space continues."""


class DamagedManifestError(RunFaultError):
    """A manifest file that cannot be read (truncated, not Parquet) and could not be rebuilt from its copies."""


class NetworkFaultError(RunFaultError):
    """The network fails on a known-good input too: the model, the device or the settings are at fault."""


class WorkerLostError(RunFaultError):
    """A worker process of the run died (killed by the system, e.g. out of memory): no input's fault."""
