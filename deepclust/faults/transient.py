"""Which failures are worth retrying: transient I/O faults, never bad inputs.

A bad utterance raises ``BadAudioError`` (a ``ValueError``): retrying cannot help, so batches record it
per item and go on. Network hiccups, timeouts and object-store throttling can be cured by a retry, so
batches re-raise them for the caller (a Prefect task's retries, or the next run) instead of recording
the item as bad.
"""

from __future__ import annotations

import errno
import logging
import random
import time
from typing import Callable, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

# Retries of a transient fault: 1 s, 2 s, 4 s ... apart (each stretched by up to 50 % at random), for at most
# RETRY_BUDGET_SECONDS in all; the Prefect tasks use the same schedule (tasks.stage_tasks.RETRY).
BACKOFF_SECONDS = 1.0
MAX_DELAY_SECONDS = 60.0
RETRY_BUDGET_SECONDS = 600.0

# botocore error codes S3 (and S3-compatible stores) answer when asked to slow down.
THROTTLING_CODES = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestTimeout",
    "RequestTimeoutException",
    "ServiceUnavailable",
    "InternalError",
    "503",
}
# botocore / urllib3 / aiohttp network errors that are not OSError subclasses; matched by name so that
# importing this module never needs botocore.
TRANSIENT_NAMES = {
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ConnectionClosedError",
    "ProxyConnectionError",
    "ResponseStreamingError",
    "IncompleteReadError",
    "ServerDisconnectedError",
    "ClientConnectionError",
    "ClientPayloadError",
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
    """True for faults a retry may cure (I/O errors, timeouts, connection drops, S3 throttling), also when
    wrapped: a ``BadAudioError`` raised ``from`` a timeout is the timeout's fault, not the file's."""
    seen = set()
    while error is not None and id(error) not in seen:  # look through `raise X from Y` chains
        seen.add(id(error))
        if isinstance(error, (TimeoutError, ConnectionError)):
            return True
        if isinstance(error, OSError) and not isinstance(error, PERMANENT_OS_ERRORS) and not is_disk_full(error):
            return True
        if _is_throttling(error) or any(cls.__name__ in TRANSIENT_NAMES for cls in type(error).__mro__):
            return True
        if isinstance(error, (TypeError, KeyError)):
            return False  # a bug: its cause does not make it transient
        error = error.__cause__ or error.__context__
    return False


def is_disk_full(error: BaseException) -> bool:
    """A full disk or quota: not cured by retrying within minutes, and not the input's fault either."""
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


# Messages of CUDA faults after which the device is unusable (or wrong) for every later input; out-of-memory
# is not one of them (a smaller batch or a shorter input may fit).
DEVICE_FAULT_MARKERS = (
    "CUDA error",
    "CUBLAS_STATUS",
    "cuDNN error",
    "CUDNN_STATUS",
    "device-side assert",
    "NCCL error",
    "an illegal memory access",
    "unspecified launch failure",
)


def is_device_fault(error: BaseException | None) -> bool:
    """True for accelerator faults other than out-of-memory: stop the job, do not blame the inputs."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if "OutOfMemoryError" in type(error).__name__ or "out of memory" in str(error):
            return False
        if isinstance(error, RuntimeError) and any(marker in str(error) for marker in DEVICE_FAULT_MARKERS):
            return True
        error = error.__cause__ or error.__context__
    return False


def retry_delays(
    budget_seconds: float = RETRY_BUDGET_SECONDS,
    backoff_seconds: float = BACKOFF_SECONDS,
    max_delay_seconds: float = MAX_DELAY_SECONDS,
) -> list[float]:
    """The waits between attempts: doubling from ``backoff_seconds``, capped, summing to at most the budget."""
    delays, total, delay = [], 0.0, backoff_seconds
    while total + delay <= budget_seconds:
        delays.append(delay)
        total += delay
        delay = min(delay * 2, max_delay_seconds)
    return delays


def call_with_retries(
    call: Callable[[], T], what: str = "call", budget_seconds: float = RETRY_BUDGET_SECONDS, jitter: float = 0.5
) -> T:
    """``call()``, retried while it fails transiently, ``retry_delays(budget_seconds)`` apart (each stretched by
    up to ``jitter`` at random, so parallel callers do not retry in lock-step) and within the budget of wall
    time. Any other error, and the transient one that outlasts the budget, propagates."""
    began = time.monotonic()
    delays = retry_delays(budget_seconds)
    for attempt in range(len(delays) + 1):
        try:
            return call()
        except Exception as error:
            if not is_transient(error) or attempt == len(delays):
                raise
            delay = delays[attempt] * (1 + jitter * random.random())
            if time.monotonic() - began + delay > budget_seconds:
                raise
            log.warning(
                "%s: transient fault (%s: %s); retry %d in %.1f s",
                what,
                type(error).__name__,
                error,
                attempt + 1,
                delay,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")
