"""A trained model file made compact for shipping: float tensors in half precision.

Half precision keeps 11 significant bits, far more than the network's outputs need (they are masks and
unit embeddings); ``load_model`` copies the weights back into a float32 network.
"""

from __future__ import annotations

import io

import torch

from deepclust import storage
from deepclust.model.checkpoint import FORMAT


def export_half(model_url: str, out_url: str, drop_extra: tuple[str, ...] = (), set_extra: dict | None = None) -> dict:
    """Write ``model_url``'s model to ``out_url`` with float16 weights; returns the written payload's ``extra``.

    ``drop_extra``: keys of the training facts not worth shipping. ``set_extra``: facts to add, e.g.
    ``{"inference": {"2": "soft-kmeans"}}`` (what ``Separator(inference="auto")`` then uses).
    """
    payload = torch.load(io.BytesIO(storage.read_bytes(model_url)), map_location="cpu", weights_only=True)
    if payload.get("format") != FORMAT:
        raise ValueError(f"{model_url}: not a deepclust model file (format {payload.get('format')!r})")
    payload["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    payload["extra"] = {k: v for k, v in payload["extra"].items() if k not in drop_extra}
    if payload["extra"].get("lineage"):  # the clock and host readings the training run kept beside its model
        from deepclust.model.lineage import with_run_facts

        payload["extra"]["lineage"] = with_run_facts(payload["extra"]["lineage"], model_url)
    payload["extra"].update(set_extra or {})
    payload["extra"]["exported_from"] = storage.absolute(model_url)
    payload["extra"]["weights_dtype"] = "float16"
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    storage.write_bytes_atomic(out_url, buffer.getvalue())
    return payload["extra"]
