"""The one error type for audio that cannot be used, naming the file and the reason."""


class BadAudioError(ValueError):
    """Unreadable, empty, non-finite, silent or wrong-shaped audio.

    ``str(error)`` is ``"<path>: <reason>"`` so that a batch can record it verbatim in its manifest; ``reason``
    is in plain words (``deepclust.audio_reasons``), ``detail`` the library's own message, if any, for
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
