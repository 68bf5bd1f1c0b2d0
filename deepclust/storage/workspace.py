"""Local scratch space of one batch of separation: inputs downloaded from object stores, outputs to upload.

Local inputs are used in place and local outputs are written under ``out/.partial`` and renamed into
place; for ``s3://`` both go through a temporary folder on local disk (bounded disk, never RAM).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid

from deepclust.faults.errors import BadAudioError
from deepclust.faults.transient import is_transient
from deepclust.storage import urls
from deepclust.storage.lock import PARTIAL_NAME, pid_alive

PREFIX = "deepclust-archive-"
_swept = False


def sweep_stale_workspaces(folder: str | None = None) -> list[str]:
    """Delete the scratch folders (``deepclust-archive-<pid>-*``) of killed processes: a run killed mid-batch
    leaves its downloads behind, and an overnight archive job would fill ``/tmp``. Once per process."""
    global _swept
    if _swept and folder is None:
        return []
    _swept = True
    folder = folder or tempfile.gettempdir()
    removed = []
    for name in os.listdir(folder):
        if not name.startswith(PREFIX):
            continue
        pid = name[len(PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
            removed.append(name)
    return removed


def _download_failure(error: Exception) -> str:
    """What a failed download means for the user, in plain words."""
    if isinstance(error, FileNotFoundError):
        return "it is no longer there (deleted or moved after it was listed)"
    if isinstance(error, PermissionError):
        return "access to it is denied (check the credentials' read permission)"
    if isinstance(error, IsADirectoryError):
        return "a folder (prefix), not an object"
    return f"its download failed ({type(error).__name__})"


class Workspace:
    """Local scratch space of one batch: downloaded inputs and outputs to upload (S3 only)."""

    def __init__(self, out_url: str):
        self.out_url = out_url
        self.local_out = urls.is_local(out_url)
        sweep_stale_workspaces()
        self.root = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")
        self.temp_dir = urls.join(out_url, PARTIAL_NAME) if self.local_out else os.path.join(self.root, "partial")

    def local_input(self, url: str) -> str:
        """A local path for the input: itself, or a download into the workspace (bounded disk, not RAM)."""
        if urls.is_local(url):
            return urls._local_path(url)
        target = os.path.join(self.root, "input-" + uuid.uuid4().hex[:8] + os.path.splitext(url)[1])
        try:
            fs, path = urls.filesystem(url)
            fs.get_file(path, target)
        except Exception as error:  # the object vanished or is forbidden (timeouts/throttling: re-raised)
            if is_transient(error):
                raise
            raise BadAudioError(
                url,
                f"unreadable object: {_download_failure(error)}",
                f"{type(error).__name__}: {error}".replace(target, url),
            ) from error
        return target

    def local_outputs(self, outputs: list[str]) -> list[str]:
        """Where separation writes each output: its final path (local), or a scratch file to upload (S3)."""
        if self.local_out:
            return [urls._local_path(u) for u in outputs]
        folder = os.path.join(self.root, uuid.uuid4().hex[:8])
        return [os.path.join(folder, os.path.basename(u)) for u in outputs]

    def publish(self, local_outputs: list[str], outputs: list[str]) -> None:
        """Upload finished local outputs (S3); local outputs were already renamed into place."""
        if self.local_out:
            return
        fs, _ = urls.filesystem(self.out_url)
        for local, url in zip(local_outputs, outputs):
            fs.put_file(local, urls.filesystem(url)[1])
            os.unlink(local)

    def discard_input(self, local: str, url: str) -> None:
        """Delete a downloaded input once read (local inputs are left alone)."""
        if not urls.is_local(url) and os.path.exists(local):
            os.unlink(local)

    def close(self) -> None:
        """Delete the scratch folder."""
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
