"""Which failures are worth retrying: transient I/O faults, never bad inputs.

A bad utterance raises ``BadAudioError`` (a ``ValueError``): retrying cannot help, so batches record it
per item and go on. Network hiccups, timeouts and object-store throttling can be cured by a retry, so
batches re-raise them for the caller (a Prefect task's retries, or the next run) instead of recording
the item as bad.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Callable, TypeVar

from deepclust.errors import BadAudioError

log = logging.getLogger(__name__)
T = TypeVar("T")

# The plain (no Prefect) path's retries: the same schedule as the Prefect tasks' (tasks.stage_tasks.RETRY).
RETRIES = 3
BACKOFF_SECONDS = 1.0

# botocore error codes S3 (and S3-compatible stores) answer when asked to slow down.
THROTTLING_CODES = {
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled", "RequestThrottledException",
    "SlowDown", "RequestLimitExceeded", "TooManyRequestsException", "ProvisionedThroughputExceededException",
    "RequestTimeout", "RequestTimeoutException", "ServiceUnavailable", "InternalError", "503",
}
# botocore / urllib3 / aiohttp network errors that are not OSError subclasses; matched by name so that
# importing this module never needs botocore.
TRANSIENT_NAMES = {
    "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
    "ProxyConnectionError", "ResponseStreamingError", "IncompleteReadError",
    "ServerDisconnectedError", "ClientConnectionError", "ClientPayloadError",
}
# OSErrors that will fail the same way next time.
PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


def _is_throttling(error: BaseException) -> bool:
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return False
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in THROTTLING_CODES or status in (429, 503)


def is_transient(error: BaseException | None) -> bool:
    """True for faults a retry may cure (I/O errors, timeouts, connection drops, S3 throttling)."""
    seen = set()
    while error is not None and id(error) not in seen:  # look through `raise X from Y` chains
        seen.add(id(error))
        if isinstance(error, (BadAudioError, ValueError, TypeError, KeyError)):
            return False
        if isinstance(error, (TimeoutError, ConnectionError)):
            return True
        if isinstance(error, OSError) and not isinstance(error, PERMANENT_OS_ERRORS):
            return True
        if _is_throttling(error) or any(cls.__name__ in TRANSIENT_NAMES for cls in type(error).__mro__):
            return True
        error = error.__cause__ or error.__context__
    return False


def call_with_retries(call: Callable[[], T], what: str = "call", retries: int = RETRIES,
                    backoff_seconds: float = BACKOFF_SECONDS, jitter: float = 0.5) -> T:
    """``call()``, retried up to ``retries`` times while it fails transiently, ``backoff_seconds * 2**n``
    apart (each stretched by up to ``jitter`` at random, so parallel callers do not retry in lock-step).
    Any other error, and the last transient one, propagates."""
    for attempt in range(retries + 1):
        try:
            return call()
        except Exception as error:
            if attempt == retries or not is_transient(error):
                raise
            delay = backoff_seconds * 2 ** attempt * (1 + jitter * random.random())
            log.warning("%s: transient fault (%s: %s); retry %d of %d in %.1f s", what, type(error).__name__,
                        error, attempt + 1, retries, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")
