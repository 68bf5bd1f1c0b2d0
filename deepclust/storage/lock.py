"""One writer per output folder: ``out/.lock`` with a heartbeat, on local disks and object stores alike.

A run holds ``out/.lock`` (JSON ``{owner, host, pid, acquired, heartbeat}``) for as long as it writes into
``out``; a daemon thread rewrites the heartbeat every ``heartbeat_seconds``. Another run refuses to start
while the heartbeat is fresh. A lock whose heartbeat is older than ``stale_minutes`` is taken over (its
owner is presumed dead), and so is a lock left by a process of this host that no longer exists. Object
stores have no compare-and-swap on SeaweedFS/MinIO, so taking the lock is write-then-verify after a short
pause: two runs starting within that pause could both believe they won; ``check()`` before every commit
makes the loser stop instead of committing. A free lock on a local disk is created exclusively instead
(``storage.create_exclusive``): no pause, and exactly one of two racing runs wins.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from contextlib import contextmanager

from deepclust import storage

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
PARTIAL_NAME = ".partial"  # local temporary outputs of the lock holder
_HELD: set[str] = set()  # owners of the locks this process holds right now


class LockBusyError(RuntimeError):
    """Another live run holds ``out/.lock``."""


class LockLostError(RuntimeError):
    """Our lock was taken over (our heartbeat went stale); stop before committing anything."""


def machine_identity() -> dict:
    """Who we are, precisely enough to tell a dead owner from a live one: the host name alone is not (two
    containers can share it with separate PID namespaces, and PIDs repeat after a reboot)."""

    def read(path: str) -> str:
        try:
            with open(path) as handle:
                return handle.read().strip()
        except OSError:
            return ""

    try:
        pid_namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_namespace = ""
    return {
        "host": socket.gethostname(),
        "boot_id": read("/proc/sys/kernel/random/boot_id"),
        "pid_namespace": pid_namespace,
    }


def pid_alive(pid: int) -> bool:
    """Whether a process of this PID namespace exists (signal 0 probes without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FolderLock:
    """``out/.lock``: one run writes into ``out`` at a time (see the module docstring).

    Args:
        out_url: the output folder or prefix.
        stale_minutes: a lock whose heartbeat is older than this is taken over.
        heartbeat_seconds: how often the holder rewrites its heartbeat (in a daemon thread).
        settle_seconds: pause between writing the lock and reading it back to confirm ownership.
        break_lock: take the lock whatever its state (the user knows its owner is gone); logged with the owner.
    """

    STALE_MINUTES = 10.0

    def __init__(
        self,
        out_url: str,
        stale_minutes: float = STALE_MINUTES,
        heartbeat_seconds: float = 30.0,
        settle_seconds: float = 0.5,
        break_lock: bool = False,
    ):
        self.url = storage.join(out_url, LOCK_NAME)
        self.stale_seconds = stale_minutes * 60.0
        self.heartbeat_seconds = heartbeat_seconds
        self.settle_seconds = settle_seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.identity = machine_identity()
        self.break_lock = break_lock
        self.lost = False
        self._stop = threading.Event()
        self._thread = None

    def _record(self, acquired: float) -> dict:
        return {
            "owner": self.owner,
            **self.identity,
            "pid": os.getpid(),
            "acquired": acquired,
            "heartbeat": time.time(),
        }

    def _read(self) -> dict | None:
        try:
            return storage.read_json(self.url)
        except (FileNotFoundError, json.JSONDecodeError, ValueError):
            return None  # vanished or half-visible: treat as free, verification decides

    def _takeable(self, record: dict | None) -> bool:
        if record is None:
            return True
        if time.time() - float(record.get("heartbeat", 0)) > self.stale_seconds:
            return True
        # A killed run of this machine and PID namespace, since its last boot: its process is gone, no need to
        # wait for the heartbeat to age. Same host name alone proves nothing (containers share it).
        same_processes = all(record.get(k) == v for k, v in self.identity.items()) and all(self.identity.values())
        if same_processes and int(record.get("pid", -1)) == os.getpid():
            # This very process wrote it: a lock it holds now, or an attempt whose read-back failed (a restarting
            # object store) and that is being retried.
            return record.get("owner") not in _HELD
        return same_processes and not pid_alive(int(record.get("pid", -1)))

    def acquire(self) -> "FolderLock":
        """Take the lock (or raise ``LockBusyError`` naming its live owner) and start the heartbeat."""
        record = self._read()
        if record is not None and self.break_lock:
            log.warning(
                "%s: breaking the lock of %s (heartbeat %.0f s ago) as asked",
                self.url,
                record.get("owner"),
                time.time() - float(record.get("heartbeat", 0)),
            )
        elif not self._takeable(record):
            age = time.time() - float(record.get("heartbeat", 0))
            raise LockBusyError(
                f"{self.url}: held by {record.get('owner')} (heartbeat {age:.0f} s ago); "
                f"it is taken over once older than {self.stale_seconds / 60:.0f} min "
                "(--lock-stale-minutes), or now with --break-lock if you know its owner is gone"
            )
        self.acquired = time.time()
        created = None
        if record is None:  # free: where the store can create a file exclusively, no pause is needed
            text = json.dumps(self._record(self.acquired), indent=2, sort_keys=True, default=str) + "\n"
            created = storage.create_exclusive(self.url, text.encode("utf-8"))
            if created is False:
                if self._read() is not None:  # a run created it between our read and our create
                    raise LockBusyError(f"{self.url}: another run took the lock at the same time")
                created = None  # an unreadable leftover file: taken over below, as a stale lock is
        if created is None:  # an object store, or taking over a stale lock: write, pause, read back
            storage.write_json(self._record(self.acquired), self.url)
            time.sleep(self.settle_seconds)
            if not self.owns():
                raise LockBusyError(f"{self.url}: another run took the lock at the same time")
        self._thread = threading.Thread(target=self._beat, name="folder-lock-heartbeat", daemon=True)
        self._thread.start()
        _HELD.add(self.owner)
        return self

    def owns(self) -> bool:
        """Whether the lock file names us (read back from storage, not remembered)."""
        record = self._read()
        return record is not None and record.get("owner") == self.owner

    def check(self) -> None:
        """Raise ``LockLostError`` when another run has taken the lock over."""
        if self.lost or not self.owns():
            self.lost = True
            raise LockLostError(f"{self.url}: lock taken over by another run; stopping without committing")

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            try:
                if not self.owns():
                    self.lost = True
                    return
                storage.write_json(self._record(self.acquired), self.url)
            except Exception:  # a failed heartbeat is retried next time; staleness needs many misses
                continue

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if it is still ours."""
        _HELD.discard(self.owner)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if not self.lost and self.owns():
            storage.remove(self.url)


@contextmanager
def folder_lock(out_url: str, retry_seconds: float | None = None, **kwargs):
    """Hold ``out/.lock`` for the block; partial files of a killed run are removed once it is ours.

    Taking the lock is retried through transient faults (an object store restarting) for ``retry_seconds``
    (default: ``deepclust.faults.transient.RETRY_BUDGET_SECONDS``); a release that fails transiently only logs (the lock
    names a process that is gone by then, so the next run takes it over)."""
    from deepclust.faults.transient import RETRY_BUDGET_SECONDS, call_with_retries, is_transient

    budget = RETRY_BUDGET_SECONDS if retry_seconds is None else retry_seconds
    lock = call_with_retries(
        lambda: FolderLock(out_url, **kwargs).acquire(), what=f"taking {out_url}/.lock", budget_seconds=budget
    )
    try:
        call_with_retries(lambda: remove_partials(out_url), what="removing partial files", budget_seconds=budget)
        yield lock
    finally:
        try:
            lock.release()
        except Exception as error:
            if not is_transient(error):
                raise
            log.warning(
                "%s: could not release the lock (%s: %s); the next run takes it over",
                lock.url,
                type(error).__name__,
                error,
            )


def remove_partials(out_url: str) -> None:
    """Delete ``out/.partial`` (local temporary outputs) and the temporary files of an atomic write that a
    killed run left in ``out/`` (``.tmp-manifest.parquet-*``) or in the manifest log's folders; only the lock
    holder may call this."""
    partial = storage.join(out_url, PARTIAL_NAME)
    if storage.is_local(partial):
        shutil.rmtree(partial, ignore_errors=True)
        root = os.path.dirname(os.path.abspath(partial))
        # The manifest log's levels (deepclust.storage.manifest_log) are written atomically too.
        for folder in (root, *(os.path.join(root, ".manifest", level) for level in ("", "parts", "segments"))):
            if not os.path.isdir(folder):
                continue
            for name in os.listdir(folder):
                if name.startswith(".tmp-"):  # storage.write_bytes_atomic's prefix
                    try:
                        os.unlink(os.path.join(folder, name))
                    except OSError:
                        pass
