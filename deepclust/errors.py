"""The one error type for audio that cannot be used, naming the file and the reason."""


class BadAudioError(ValueError):
    """Unreadable, empty, non-finite or wrong-shaped audio.

    ``str(error)`` is ``"<path>: <reason>"`` so that a batch can record it verbatim in its manifest.
    """

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        # Keep the two-argument constructor picklable (process pools, Dask, Prefect results).
        return (BadAudioError, (self.path, self.reason))
