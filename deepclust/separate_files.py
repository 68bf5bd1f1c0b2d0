"""Separate one audio file or a folder of them, writing ``out/<relative path>/s1.wav .. sK.wav``.

Every input gets a row in ``out/manifest.parquet`` (``input, status, error, outputs, duration,
sample_rate, output_sample_rate, seconds``); a bad file is recorded with its reason and the batch goes on.
"""

from __future__ import annotations

import re
import time
from pathlib import PurePosixPath

import numpy as np
import pandas as pd

from deepclust import storage
from deepclust.audio import AUDIO_EXTENSIONS, read_audio, resample, write_audio
from deepclust.errors import BadAudioError

MANIFEST_COLUMNS = ["input", "status", "error", "outputs", "duration", "sample_rate", "output_sample_rate", "seconds"]


def safe_relative_stem(input_url: str, input_root: str) -> str:
    """The input's path relative to the root, without extension, made safe to use below ``out``.

    ``..``, absolute parts and odd characters can never make an output land outside ``out``.
    """
    root = str(input_root).rstrip("/")
    rel = str(input_url)[len(root):].lstrip("/\\") if str(input_url).startswith(root) else PurePosixPath(str(input_url)).name
    parts = []
    for part in re.split(r"[\\/]+", rel):
        part = re.sub(r"[^\w.\-]+", "_", part).strip(".")
        if part and part not in (".", ".."):
            parts.append(part)
    if not parts:
        parts = ["input"]
    parts[-1] = parts[-1].rsplit(".", 1)[0] if "." in parts[-1] else parts[-1]
    return "/".join(p for p in parts if p) or "input"


def list_inputs(input_url: str) -> tuple[list[str], str]:
    """Audio files under a folder (or the single file) and the root their relative paths start from."""
    fs, path = storage.filesystem(input_url)
    if fs.isfile(path):
        return [str(input_url)], storage.parent(str(input_url))
    if not fs.exists(path):
        raise FileNotFoundError(f"{input_url}: no such file or folder")
    return storage.list_files(input_url, AUDIO_EXTENSIONS), str(input_url)


def separate_files(separator, input_url: str, out_url: str, n_speakers: int = 2, batch_size: int = 8,
                   progress=None) -> pd.DataFrame:
    """Separate every audio file under ``input_url`` with a ``deepclust.separation.Separator``.

    Returns (and writes) the manifest. Inputs are read at any rate and channel count, downmixed and
    resampled to the model's rate; outputs are written at the model's rate.
    """
    inputs, root = list_inputs(input_url)
    rows: list[dict] = []
    rate = separator.sample_rate
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start:start + batch_size]
        loaded = []
        for url in batch:
            began = time.perf_counter()
            try:
                waveform, original_rate = read_audio(url)
                waveform = resample(waveform, original_rate, rate)
                if float(np.max(np.abs(waveform))) == 0.0:
                    raise BadAudioError(url, "all-silent audio (every sample is 0)")
                loaded.append((url, waveform, original_rate, began))
            except BadAudioError as error:
                rows.append(_failed(url, str(error), began))
        if loaded:
            estimates = separator.separate_batch([w for _, w, _, _ in loaded], n_speakers)
            for (url, waveform, original_rate, began), sources in zip(loaded, estimates):
                stem = safe_relative_stem(url, root)
                outputs = []
                for k, source in enumerate(sources, start=1):
                    target = storage.join(out_url, stem, f"s{k}.wav")
                    write_audio(target, source, rate)
                    outputs.append(storage.absolute(target))
                rows.append({"input": url, "status": "done", "error": "", "outputs": outputs,
                             "duration": len(waveform) / rate, "sample_rate": original_rate,
                             "output_sample_rate": rate, "seconds": time.perf_counter() - began})
        if progress:
            progress(min(start + batch_size, len(inputs)), len(inputs))
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    storage.makedirs(out_url)
    storage.write_parquet(manifest, storage.join(out_url, "manifest.parquet"))
    return manifest


def _failed(url: str, error: str, began: float) -> dict:
    return {"input": url, "status": "failed", "error": error, "outputs": [], "duration": np.nan,
            "sample_rate": np.nan, "output_sample_rate": np.nan, "seconds": time.perf_counter() - began}
