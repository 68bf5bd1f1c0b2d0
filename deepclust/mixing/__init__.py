"""Mixtures as in wsj0-2mix / wsj0-3mix: P.56 active level, official mix lists, mixture creation."""

from deepclust.mixing.mix import MixConfig, create_mixtures, mix_sources
from deepclust.mixing.mixlist import (
    MixEntry,
    format_snr,
    generate_mix_lists,
    mixture_id,
    parse_mix_list,
    read_mix_list,
    write_mix_list,
)
from deepclust.mixing.p56 import active_level, normalise_active_level

__all__ = [
    "MixConfig",
    "MixEntry",
    "active_level",
    "create_mixtures",
    "format_snr",
    "generate_mix_lists",
    "mix_sources",
    "mixture_id",
    "normalise_active_level",
    "parse_mix_list",
    "read_mix_list",
    "write_mix_list",
]
