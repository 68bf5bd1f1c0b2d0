"""Storage that works the same on a local disk and on object stores (``s3://``) through fsspec.

Code above this module never branches on the storage kind. S3-compatible endpoints are configured the
fsspec way, e.g. ``FSSPEC_S3_ENDPOINT_URL=http://127.0.0.1:8333`` (or ``storage_options``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

import fsspec
import pandas as pd


def is_local(url: str) -> bool:
    """True for a plain path or a ``file://`` URL, False for any other scheme (``s3://``, ...)."""
    return "://" not in str(url) or str(url).startswith("file://")


def _local_path(url: str) -> str:
    url = str(url)
    return url[len("file://") :] if url.startswith("file://") else url


def filesystem(url: str):
    """(fs, path) for a URL or local path."""
    fs, path = fsspec.core.url_to_fs(str(url))
    return fs, path


def join(url: str, *parts: str) -> str:
    """``url`` with ``parts`` appended: path rules locally (``file://`` dropped), ``/``-joined for object-store URLs."""
    url = str(url)
    if is_local(url):
        return str(Path(_local_path(url)).joinpath(*parts))
    return "/".join([url.rstrip("/"), *[p.strip("/") for p in parts]])


def parent(url: str) -> str:
    """The folder (or prefix) holding a file."""
    url = str(url)
    if is_local(url):
        return str(Path(_local_path(url)).parent)
    return url.rstrip("/").rsplit("/", 1)[0]


def absolute(url: str) -> str:
    """Absolute local path, or the URL unchanged."""
    return str(Path(_local_path(url)).resolve()) if is_local(url) else str(url)


def exists(url: str) -> bool:
    """Whether ``url`` exists, on a local disk or an object store."""
    if is_local(url):
        return os.path.exists(_local_path(url))
    fs, path = filesystem(url)
    return fs.exists(path)


def makedirs(url: str) -> None:
    """Create a local folder and its parents (no error if it exists); a no-op on object stores."""
    if is_local(url):
        os.makedirs(_local_path(url), exist_ok=True)
    # Object stores have no directories to create.


def remove(url: str, recursive: bool = False) -> None:
    """Delete a file (or, with ``recursive``, a whole folder or prefix); nothing happens if it is absent."""
    fs, path = filesystem(url)
    if fs.exists(path):
        fs.rm(path, recursive=recursive)


@contextmanager
def open_url(url: str, mode: str = "rb"):
    """Open for reading (or plain non-atomic writing); prefer ``write_bytes_atomic`` for outputs."""
    if is_local(url) and ("w" in mode or "a" in mode):
        os.makedirs(os.path.dirname(os.path.abspath(_local_path(url))) or ".", exist_ok=True)
    with fsspec.open(str(url), mode) as handle:
        yield handle


def read_bytes(url: str) -> bytes:
    """The whole file's bytes."""
    with open_url(url, "rb") as handle:
        return handle.read()


def _synced_temporary(path: str, data: bytes) -> str:
    """``data`` written and fsynced to a new temporary file beside local ``path`` (created folders included)."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + "-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def write_bytes_atomic(url: str, data: bytes) -> None:
    """Write so that readers see either nothing or the whole file, never a partial one.

    Local: a temporary file in the same folder, fsync, then ``os.replace``. Object stores: a single PUT,
    which S3 makes visible only when complete.
    """
    if is_local(url):
        path = os.path.abspath(_local_path(url))
        tmp = _synced_temporary(path, data)
        try:
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    else:
        fs, path = filesystem(url)
        fs.pipe_file(path, data)


def create_exclusive(url: str, data: bytes) -> bool | None:
    """Create ``url`` holding ``data`` only if no such file exists, in one step no other writer can interleave.

    Returns True when this call created it, False when a file was already there, and None where the store
    cannot promise it (object stores: SeaweedFS and MinIO have no conditional PUT), so the caller must use
    another protocol. Local: the complete file is written under a temporary name and hard-linked into place;
    the link fails if the name exists, so a reader never sees a partial file either.
    """
    if not is_local(url):
        return None
    path = os.path.abspath(_local_path(url))
    tmp = _synced_temporary(path, data)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def write_text_atomic(url: str, text: str) -> None:
    """``write_bytes_atomic`` of UTF-8 text."""
    write_bytes_atomic(url, text.encode("utf-8"))


def read_text(url: str) -> str:
    """The whole file decoded as UTF-8."""
    return read_bytes(url).decode("utf-8")


def write_json(obj, url: str) -> None:
    """Write ``obj`` as indented JSON with sorted keys, atomically; values JSON cannot hold are written as ``str``."""
    write_text_atomic(url, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(url: str):
    """The parsed contents of a JSON file."""
    return json.loads(read_text(url))


def write_parquet(df: pd.DataFrame, url: str) -> None:
    """Write ``df`` as Parquet (without its index), atomically."""
    buffer = io.BytesIO()
    df.to_parquet(buffer, index=False)
    write_bytes_atomic(url, buffer.getvalue())


def read_parquet(url: str) -> pd.DataFrame:
    """A Parquet file as a DataFrame, read whole through ``read_bytes`` (so any URL works alike)."""
    return pd.read_parquet(io.BytesIO(read_bytes(url)))


def sha256_of(url: str, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's contents, read in ``chunk_size`` blocks (memory bounded whatever the size)."""
    digest = hashlib.sha256()
    with open_url(url, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def walk_local_files(root: str) -> list[str]:
    """Files under a local folder, following symlinked folders (each real folder visited once, so a link
    back up the tree cannot loop); paths stay under ``root`` as the user sees them."""
    found, seen = [], set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders[:] = []
            continue
        seen.add(real)
        found += [os.path.join(folder, name) for name in files]
    return sorted(found)


def list_files(url: str, extensions: tuple[str, ...] | None = None) -> list[str]:
    """All files under a folder/prefix (recursively, symlinked folders followed), sorted, as local paths or
    full URLs."""
    url = str(url)
    fs, root = filesystem(url)
    if fs.isfile(root):
        found = [root]
    elif is_local(url):
        found = walk_local_files(root)
    else:
        found = sorted(fs.find(root))
    if extensions:
        lowered = tuple(e.lower() for e in extensions)
        found = [p for p in found if p.lower().endswith(lowered)]
    if is_local(url):
        return [str(Path(p)) for p in found]
    protocol = url.split("://", 1)[0]
    return [f"{protocol}://{p}" for p in found]


def content_identity(info: dict) -> str:
    """Content identity from an fsspec listing entry (or ``os.stat`` fields): ETag, else size and mtime."""
    etag = info.get("ETag") or info.get("etag")
    if etag:
        return f"etag:{str(etag).strip(chr(34))}"
    mtime = info.get("mtime_ns") or info.get("mtime") or info.get("LastModified") or info.get("last_modified") or ""
    if hasattr(mtime, "timestamp"):
        mtime = int(mtime.timestamp() * 1e9)
    return f"{int(info.get('size') or 0)}:{mtime}"


def _stat_identity(path: str) -> str:
    stat = os.stat(path)
    return content_identity({"size": stat.st_size, "mtime_ns": stat.st_mtime_ns})


def content_identities(input_url: str) -> dict[str, str]:
    """``{relative path: content identity}`` of every file under a folder or prefix, from one listing (on every
    storage: an edited corpus or archive file changes its identity, and so every key that depends on it)."""
    fs, root = filesystem(input_url)
    prefix = root.rstrip("/") + "/"
    if is_local(input_url):  # follows symlinked folders, as the listing does
        return {path[len(prefix) :]: _stat_identity(path) for path in walk_local_files(root) if path.startswith(prefix)}
    return {
        path[len(prefix) :]: content_identity(info)
        for path, info in fs.find(root, detail=True).items()
        if path.startswith(prefix)
    }


def file_identity(url: str) -> str:
    """Content identity of one file (local: size and mtime; object stores: ETag)."""
    if is_local(url):
        return _stat_identity(absolute(url))
    fs, path = filesystem(url)
    return content_identity(fs.info(path))


def unique_suffix() -> str:
    """12 random hex digits, for names that must not collide (e.g. run ids)."""
    return uuid.uuid4().hex[:12]
