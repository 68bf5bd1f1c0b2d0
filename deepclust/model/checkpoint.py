"""One self-describing file per trained model: everything separation needs to run it.

The file is a ``torch.save`` of plain Python containers and tensors (so ``torch.load(weights_only=True)``
reads it without executing code): format tag, model config, state_dict, the feature statistics the
network was trained with, the feature config (sample rate, STFT, silence threshold) and training info.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from deepclust import storage
from deepclust.faults.errors import RunSettingError
from deepclust.model.blstm import DeepClusteringNet, ModelConfig

FORMAT = "deepclust-model/1"


@dataclass
class LoadedModel:
    """A model ready for inference: ``model`` is in eval mode on the requested device."""

    model: DeepClusteringNet
    model_config: ModelConfig
    feature_stats: Any  # deepclust.features.normalisation.FeatureStats
    feature_config: dict
    extra: dict


def to_plain(value):
    """Numpy arrays/scalars, dataclasses and tuples -> lists, floats, dicts (safe for weights_only load)."""
    if hasattr(value, "to_dict") and callable(value.to_dict) and not isinstance(value, type):
        return to_plain(value.to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def stats_to_dict(feature_stats) -> dict:
    """FeatureStats (or an equivalent dict with mean/std) -> plain dict."""
    if feature_stats is None:
        return {}
    return to_plain(feature_stats)


def stats_from_dict(values: dict):
    """Plain dict -> FeatureStats (the features package owns the type)."""
    if not values:
        return None
    from deepclust.features.normalisation import FeatureStats

    return FeatureStats.from_dict(values)


def save_model(
    url: str, model: DeepClusteringNet, feature_stats, feature_config: dict, extra: dict | None = None
) -> None:
    """Write the model atomically to ``url`` (local path or fsspec URL)."""
    payload = {
        "format": FORMAT,
        "model_config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "feature_stats": stats_to_dict(feature_stats),
        "feature_config": to_plain(feature_config or {}),
        "extra": to_plain(extra or {}),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    storage.write_bytes_atomic(url, buffer.getvalue())


def read_payload(url: str, data: bytes | None = None) -> dict:
    """The raw payload of a file written by :func:`save_model` (weights as stored), refused naming the file when
    it is not one; ``data``: the file's bytes when the caller has read them already."""
    if data is None:
        data = storage.read_bytes(url)
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # text, audio, a cut download: torch's own error names no file
        # Its first sentence only: the rest of a weights-only refusal advises loading with arbitrary code execution.
        first = str(error).strip().split("\n", 1)[0].split(". ", 1)[0][:200]
        raise RunSettingError(
            f"{url}: not a deepclust model file (torch cannot read it: {type(error).__name__}: {first})"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise RunSettingError(f"{url}: not a deepclust model file (format {found!r}, expected {FORMAT!r})")
    return payload


def load_model(url: str, device: str | torch.device = "cpu") -> LoadedModel:
    """Read a file written by :func:`save_model`; the model is returned in eval mode on ``device``."""
    payload = read_payload(url)
    model_config = ModelConfig.from_dict(payload["model_config"])
    model = DeepClusteringNet(model_config)
    model.load_state_dict(payload["state_dict"])
    model.to(device).eval()
    return LoadedModel(
        model=model,
        model_config=model_config,
        feature_stats=stats_from_dict(payload["feature_stats"]),
        feature_config=payload["feature_config"],
        extra=payload["extra"],
    )
