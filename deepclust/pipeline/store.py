"""The stage store: ``{run_root}/{stage}/{key}/`` folders that are committed only when complete.

A stage's ``key`` fingerprints what it depends on by content: the checksums of its upstream manifests,
its parameters and the library version. Inside the folder, the stage's data, ``manifest.parquet`` and the
``_COMPLETE`` marker, written last, so a half-written stage is never mistaken for a finished one. Work
inside a stage is split into units (shards, batches) that each leave a ``units/<id>.json`` marker when
done, so a stage killed midway resumes at unit granularity. Works on local disks and ``s3://`` alike.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field

import pandas as pd

from deepclust import storage
from deepclust.storage.manifests import MANIFEST_NAME
from deepclust.version import __version__

MANIFEST = MANIFEST_NAME
COMPLETE = "_COMPLETE"

# Counts the units and stages this process actually computed (not reused). Tests and the Prefect
# layer read it to prove that a rerun recomputes nothing.
COMPUTE_COUNTER: dict[str, int] = {}


_COUNTER_LOCK = threading.Lock()  # units run in thread pools: a bare read-modify-write can lose counts


def _count(name: str) -> None:
    with _COUNTER_LOCK:
        COMPUTE_COUNTER[name] = COMPUTE_COUNTER.get(name, 0) + 1


def canonical(value):
    """JSON-able, order-independent form of configs (dataclasses, tuples, dicts)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, float):
        return float(f"{value:.12g}")
    return value


def fingerprint(stage: str, params, upstream: list[str] | tuple[str, ...] = ()) -> str:
    """Content key of a stage: its parameters, its upstream manifests' checksums, the library version."""
    payload = json.dumps(
        {"stage": stage, "params": canonical(params), "upstream": list(upstream), "version": __version__},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def manifest_checksum(manifest_url: str) -> str:
    """Checksum of an upstream stage, read from its commit marker (falls back to hashing the manifest)."""
    marker = storage.join(storage.parent(manifest_url), COMPLETE)
    if storage.exists(marker):
        return storage.read_json(marker)["manifest_sha256"]
    return storage.sha256_of(manifest_url)


@dataclass
class Stage:
    """One stage's output folder."""

    run_root: str
    name: str
    key: str
    params: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The stage folder, ``{run_root}/{name}/{key}``."""
        return storage.join(self.run_root, self.name, self.key)

    def path(self, *parts: str) -> str:
        """A path inside the stage folder."""
        return storage.join(self.url, *parts)

    @property
    def manifest_url(self) -> str:
        """The stage's ``manifest.parquet``."""
        return self.path(MANIFEST)

    def is_complete(self) -> bool:
        """Whether the stage is committed (its ``_COMPLETE`` marker exists)."""
        return storage.exists(self.path(COMPLETE))

    # Units -----------------------------------------------------------------------------------------
    def unit_marker(self, unit_id: str) -> str:
        """The ``units/<id>.json`` marker a finished unit leaves."""
        return self.path("units", f"{unit_id}.json")

    def unit_result(self, unit_id: str):
        """The recorded result of a finished unit, or None."""
        marker = self.unit_marker(unit_id)
        return storage.read_json(marker)["result"] if storage.exists(marker) else None

    def finish_unit(self, unit_id: str, result) -> None:
        """Write a unit's marker with its result (the unit is now done) and count it as computed."""
        storage.write_json({"unit": unit_id, "result": result, "finished": time.time()}, self.unit_marker(unit_id))
        _count(f"{self.name}:unit")

    def compute_once(self, unit_id: str, compute):
        """``compute()`` unless the unit is already done (its marker exists); returns its (JSON-able) result."""
        done = self.unit_result(unit_id)
        if done is not None:
            return done
        result = compute()
        self.finish_unit(unit_id, result)
        return result

    # Commit ----------------------------------------------------------------------------------------
    def commit(self, manifest: pd.DataFrame, info: dict | None = None) -> str:
        """Write the manifest, then the marker (last): the stage is now complete."""
        storage.write_parquet(manifest, self.manifest_url)
        marker = {
            "stage": self.name,
            "key": self.key,
            "params": canonical(self.params),
            "manifest_sha256": storage.sha256_of(self.manifest_url),
            "rows": int(len(manifest)),
            "info": info or {},
            "committed": time.time(),
            "version": __version__,
        }
        storage.write_json(marker, self.path(COMPLETE))
        _count(self.name)
        return self.manifest_url

    def info(self) -> dict:
        """The ``info`` the stage was committed with (from its ``_COMPLETE`` marker)."""
        return storage.read_json(self.path(COMPLETE)).get("info", {})

    @classmethod
    def of_manifest(cls, manifest_url: str) -> "Stage":
        """The committed stage a manifest belongs to (``{run_root}/{stage}/{key}/manifest.parquet``)."""
        folder = storage.parent(manifest_url)
        marker = storage.read_json(storage.join(folder, COMPLETE))
        return cls(
            run_root=storage.parent(storage.parent(folder)),
            name=marker["stage"],
            key=marker["key"],
            params=marker.get("params", {}),
        )


def make_stage(run_root: str, name: str, params, upstream: list[str] | tuple[str, ...] = ()) -> Stage:
    """The stage folder for these parameters and these upstream manifests (by content)."""
    checksums = [manifest_checksum(u) for u in upstream]
    return Stage(run_root=str(run_root), name=name, key=fingerprint(name, params, checksums), params=canonical(params))


def batches(items: list, size: int) -> list[list]:
    """``items`` cut into consecutive lists of ``size`` (the last may be shorter)."""
    return [items[i : i + size] for i in range(0, len(items), max(1, int(size)))]


def range_units(items: list, size: int) -> list[tuple[str, list]]:
    """``items`` cut into consecutive lists of ``size``, each with a unit id naming the range it holds
    (``items-00000-00099``). A unit size is an execution-only setting, kept out of the stage key; naming a unit
    by its range (not its index) means a stage resumed with another unit size never takes a finished unit's
    marker for a different range of items: equal ids hold equal items."""
    size = max(1, int(size))
    return [
        (f"items-{first:05d}-{first + len(chunk) - 1:05d}", chunk)
        for first, chunk in zip(range(0, len(items), size), batches(items, size))
    ]
