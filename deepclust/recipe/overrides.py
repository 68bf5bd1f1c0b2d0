"""``--set train.max_epochs=20``: one field of the end-to-end config changed by its dotted path.

The path walks the config's own fields (``train.max_epochs``, ``mixtures.sizes.tr``, ``corpus.root``), so every field of
every stage is reachable and a misspelt one is refused naming the fields there are. The value is read as JSON
(``20``, ``1e-4``, ``null``, ``true``, ``[2, 3]``, ``{"tr": 100}``), a comma list for a list field (``2,3``) or, for
a text field, as the text itself (``cuda``, ``/data/wsj0``); a value of another type than the field's is refused.

    >>> from deepclust.recipe.presets import preset_config
    >>> apply_overrides(preset_config("paper"), ["train.max_epochs=20"]).train.max_epochs
    20
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
import warnings
from collections.abc import Sequence

from deepclust.recipe.config import OLD_FIELD_NAMES

__all__ = ["apply_overrides", "parse_override"]


def parse_override(text: str) -> tuple[list[str], str]:
    """``"train.max_epochs=20"`` -> ``(["train", "max_epochs"], "20")``; a malformed one raises ``ValueError``."""
    path, sep, raw = text.partition("=")
    parts = path.strip().split(".")
    if not sep or not all(parts):
        raise ValueError(f"--set {text!r}: expected FIELD.PATH=VALUE, e.g. train.max_epochs=20")
    return parts, raw.strip()


def apply_overrides(config, overrides: Sequence[str]):
    """A copy of the dataclass ``config`` (``ReproduceConfig``) with each ``PATH=VALUE`` applied in order, rebuilt
    by its own ``from_dict`` (so every config's own checks run on the result)."""
    data = config.to_dict()
    for text in overrides:
        path, raw = parse_override(text)
        if path[0] in OLD_FIELD_NAMES and dataclasses.is_dataclass(config) and not hasattr(config, path[0]):
            warnings.warn(
                f"--set {text}: {path[0]} is now {OLD_FIELD_NAMES[path[0]]} (named for its stage); the old name goes "
                "in the next release",
                FutureWarning,  # shown by default: the person typing --set is the one to tell
                stacklevel=2,
            )
            path = [OLD_FIELD_NAMES[path[0]], *path[1:]]
        _set(config, data, path, raw, text)
    return type(config).from_dict(data)


def _set(config, data: dict, path: list[str], raw: str, text: str) -> None:
    obj, node, hint = config, data, None
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        where = ".".join(path[:depth]) or "the config"
        if dataclasses.is_dataclass(obj):
            names = [f.name for f in dataclasses.fields(obj)]
            if part not in names:
                raise ValueError(f"--set {text!r}: {where} has no field {part!r}; its fields: {', '.join(names)}")
            hint = typing.get_type_hints(type(obj)).get(part)
            child = getattr(obj, part)
            if not last and not dataclasses.is_dataclass(child) and dict not in _types_of(hint):
                raise ValueError(f"--set {text!r}: {'.'.join(path[: depth + 1])} is a value, not a config with fields")
        elif isinstance(obj, dict) or obj is None:  # a dict-valued field (mixtures.sizes): free keys
            child, hint = (obj or {}).get(part), None
        else:
            raise ValueError(f"--set {text!r}: {where} is a value ({obj!r}), not a config with fields")
        if last:
            node[part] = _value(raw, child, hint, text)
            return
        if node.get(part) is None:
            node[part] = {}
        obj, node = child, node[part]


def _value(raw: str, current, hint, text: str):
    """``raw`` as a value for a field that now holds ``current`` and is typed ``hint`` (None: untyped)."""
    allowed = _types_of(hint) if hint is not None else None
    if allowed is not None and allowed <= {str, type(None)} and raw != "null":
        return raw  # text fields take the text as written ("123" stays a string)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if allowed is not None and (allowed & {list, tuple}) and value is not None and not isinstance(value, list):
        # a list field: "2,3" or a single "2"
        value = [_scalar(item.strip()) for item in raw.split(",") if item.strip()]
    if allowed is None or object in allowed:
        if current is not None and value is not None and not _same_kind(value, current):
            raise ValueError(f"--set {text!r}: expected a value like {current!r}, got {value!r}")
        return value
    kind = type(value)
    if kind is int and float in allowed and int not in allowed:
        return float(value)
    if kind is list and tuple in allowed:
        return value
    if kind is dict and any(dataclasses.is_dataclass(t) for t in allowed):
        return value  # a whole nested config, e.g. --set 'model={"hidden": 400}' (its own from_dict fills the rest)
    if kind not in allowed or (kind is bool and bool not in allowed):
        names = " or ".join(sorted(t.__name__ if t is not type(None) else "null" for t in allowed))
        raise ValueError(f"--set {text!r}: expected {names}, got {value!r}")
    return value


def _scalar(item: str):
    try:
        return json.loads(item)
    except json.JSONDecodeError:
        return item


def _same_kind(value, current) -> bool:
    numbers = (int, float)
    if isinstance(current, bool) or isinstance(value, bool):
        return isinstance(current, bool) and isinstance(value, bool)
    if isinstance(current, numbers):
        return isinstance(value, numbers)
    if isinstance(current, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(current))


def _types_of(hint) -> set:
    """The plain types a field's annotation admits: ``int | None`` -> {int, NoneType}, ``tuple[int, ...]`` ->
    {tuple}; a nested config or ``typing.Any`` -> every type (None)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        found = set()
        for arg in typing.get_args(hint):
            found |= _types_of(arg)
        return found
    if origin is not None:
        return {origin}
    return {hint} if isinstance(hint, type) else {object}
