"""A trained model file made compact for shipping: float tensors in half precision.

Half precision keeps 11 significant bits, far more than the network's outputs need (they are masks and
unit embeddings); ``load_model`` copies the weights back into a float32 network.
"""

from __future__ import annotations

import hashlib
import io

import torch

from deepclust import storage
from deepclust.model.checkpoint import read_payload


def averaged_payload(urls: list[str]) -> dict:
    """The last file's payload with the mean of all the files' weights (checkpoint averaging).

    The mean of the weights of the last few epochs of one run is a smoother model than any one of them (Polyak
    averaging; Vaswani et al. 2017 average their last checkpoints): the noise of small-batch steps averages out
    at no training cost. The files must be one network on one input normalisation (snapshots of one run are);
    the facts and lineage are the last file's, with ``averaged_from`` naming every file and its epoch.
    """
    contents = [storage.read_bytes(url) for url in urls]  # each file read once: loaded and hashed
    payloads = [read_payload(url, data) for url, data in zip(urls, contents)]
    last = payloads[-1]
    for url, payload in zip(urls, payloads):
        for key in ("model_config", "feature_stats", "feature_config"):
            if payload[key] != last[key]:
                raise ValueError(
                    f"{url}: its {key} differs from {urls[-1]}'s: only one network on one input "
                    "normalisation can be averaged (snapshots of one run)"
                )
        if {k: tuple(v.shape) for k, v in payload["state_dict"].items()} != {
            k: tuple(v.shape) for k, v in last["state_dict"].items()
        }:
            raise ValueError(f"{url}: its weights differ in names or shapes from {urls[-1]}'s")
    mean = {}
    for key, value in last["state_dict"].items():
        if value.is_floating_point():
            mean[key] = torch.stack([p["state_dict"][key].float() for p in payloads]).mean(0).to(value.dtype)
        else:
            mean[key] = value
    sources = [
        {
            "file": storage.absolute(url),
            "sha256": hashlib.sha256(data).hexdigest(),
            "epoch": p["extra"].get("epoch"),
            "global_step": p["extra"].get("global_step"),
            "val_loss": p["extra"].get("val_loss", p["extra"].get("best_val_loss")),
        }
        for url, data, p in zip(urls, contents, payloads)
    ]
    extra = {**last["extra"], "averaged_from": sources}
    if extra.get("lineage"):  # the link of the run these snapshots came from says which epochs were averaged
        extra["lineage"] = [*extra["lineage"][:-1], averaged_link(extra["lineage"][-1], sources, payloads)]
    return {**last, "state_dict": mean, "extra": extra}


def averaged_link(link: dict, sources: list[dict], payloads: list[dict]) -> dict:
    """The last file's lineage link with the epochs averaged. Snapshots of sibling runs (warm-started from one
    parent, told apart by their commands) may be averaged too, a "model soup" (Wortsman et al. 2022): their own
    links, each with its epochs, are kept under ``averaged_with``, so the lineage names every run in the file."""
    newest: dict = {}  # command -> that run's newest link among the files (dicts keep file order)
    epochs: dict = {}  # command -> that run's averaged epochs
    for source, payload in zip(sources, payloads):
        own = (payload["extra"].get("lineage") or [{}])[-1]
        newest[own.get("command")] = own
        epochs.setdefault(own.get("command"), []).append(source["epoch"])
    averaged = {**link, "averaged_epochs": epochs[link.get("command")]}
    siblings = [
        {**other, "averaged_epochs": epochs[command]}
        for command, other in newest.items()
        if command != link.get("command")
    ]
    if siblings:
        averaged["averaged_with"] = siblings
    return averaged


def export_half(
    model_url: "str | list[str]", out_url: str, drop_extra: tuple[str, ...] = (), set_extra: dict | None = None
) -> dict:
    """Write ``model_url``'s model to ``out_url`` with float16 weights; returns the written payload's ``extra``.

    ``model_url``: one file, or several snapshots of one run, oldest first, whose weights are averaged
    (``averaged_payload``). ``drop_extra``: keys of the training facts not worth shipping. ``set_extra``: facts
    to add, e.g. ``{"inference": {"2": "soft-kmeans"}}`` (what ``Separator(inference="auto")`` then uses).
    """
    urls = [model_url] if isinstance(model_url, str) else list(model_url)
    payload = read_payload(urls[0]) if len(urls) == 1 else averaged_payload(urls)
    newest = urls[-1]
    payload["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    payload["extra"] = {k: v for k, v in payload["extra"].items() if k not in drop_extra}
    if payload["extra"].get("lineage"):  # the clock and host readings the training run kept beside its model
        from deepclust.model.lineage import with_run_facts

        payload["extra"]["lineage"] = with_run_facts(payload["extra"]["lineage"], newest)
    payload["extra"].update(set_extra or {})
    payload["extra"]["exported_from"] = storage.absolute(newest)
    payload["extra"]["weights_dtype"] = "float16"
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    storage.write_bytes_atomic(out_url, buffer.getvalue())
    return payload["extra"]
