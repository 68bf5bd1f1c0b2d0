"""Where everything is kept: URLs that work the same on a local disk and on ``s3://`` (``urls``), one writer per
output folder (``lock``), local scratch for object stores (``workspace``), the schema of every manifest kind
(``manifests``) and the append-only manifest of a long job (``manifest_log``).

``from deepclust import storage; storage.join(...)``: the URL functions of ``urls`` are this package's own names.
Only ``urls`` is loaded here; the other modules are imported by name (``deepclust.storage.manifests``).
"""

from deepclust.storage.urls import (
    absolute,
    content_identities,
    content_identity,
    create_exclusive,
    exists,
    file_identity,
    filesystem,
    is_local,
    join,
    list_files,
    makedirs,
    open_url,
    parent,
    read_bytes,
    read_json,
    read_parquet,
    read_text,
    remove,
    sha256_of,
    unique_suffix,
    walk_local_files,
    write_bytes_atomic,
    write_json,
    write_parquet,
    write_text_atomic,
)

__all__ = [
    "absolute",
    "content_identities",
    "content_identity",
    "create_exclusive",
    "exists",
    "file_identity",
    "filesystem",
    "is_local",
    "join",
    "list_files",
    "makedirs",
    "open_url",
    "parent",
    "read_bytes",
    "read_json",
    "read_parquet",
    "read_text",
    "remove",
    "sha256_of",
    "unique_suffix",
    "walk_local_files",
    "write_bytes_atomic",
    "write_json",
    "write_parquet",
    "write_text_atomic",
]
