"""Mix lists in the wsj0-2mix / wsj0-3mix format, and generating new ones with the same protocol.

One mixture per line, whitespace separated: ``path snr path snr [path snr]``, e.g. the official
``mix_2_spk_tr.txt`` line ``wsj0/si_tr_s/40n/40na010x.wv1 1.9857 wsj0/si_tr_s/017/017o0317.wv1 -1.9857``.
The SNRs are gains in dB applied after each source is normalised to 0 dB active level (P.56).
"""

from __future__ import annotations

import math
import posixpath
from dataclasses import dataclass

import numpy as np
import pandas as pd

from deepclust import storage

DEFAULT_SIZES = {"tr": 20000, "cv": 5000, "tt": 3000}
MAX_RELATIVE_SNR_DB = 5.0  # the recipe draws the relative SNR of the first two speakers from U(0, 5) dB
THIRD_SPEAKER_SNR_DB = 2.5  # wsj0-3mix: the third speaker's gain from U(-2.5, 2.5) dB


@dataclass(frozen=True)
class MixEntry:
    """One mixture: source paths (as listed) and their gains in dB re 0 dB active level."""

    paths: tuple[str, ...]
    snrs_db: tuple[float, ...]

    def __post_init__(self):
        object.__setattr__(self, "paths", tuple(str(p) for p in self.paths))
        object.__setattr__(self, "snrs_db", tuple(float(s) for s in self.snrs_db))
        if len(self.paths) != len(self.snrs_db) or not self.paths:
            raise ValueError(f"MixEntry needs one SNR per path, got {len(self.paths)} paths, {len(self.snrs_db)} SNRs")


def format_snr(snr_db: float) -> str:
    """An SNR as MATLAB ``num2str`` prints it (5 significant digits below 10), as the recipe names files."""
    value = float(snr_db)
    if value == 0.0:
        return "0"  # also for -0.0, which num2str prints as 0
    if value == round(value) and abs(value) < 1e15:
        return str(int(round(value)))
    digits = max(int(math.floor(math.log10(abs(value)))) + 5, 5)
    return f"{value:.{digits}g}"


def round_snr(snr_db: float) -> float:
    """The value an SNR has after printing and reading back (so generated lists round-trip exactly)."""
    return float(format_snr(snr_db))


def utterance_stem(path: str) -> str:
    """File name without folders or suffix: ``wsj0/si_tr_s/40n/40na010x.wv1`` -> ``40na010x``."""
    name = posixpath.basename(str(path).replace("\\", "/"))
    return name.rsplit(".", 1)[0] if "." in name else name


def mixture_id(entry: MixEntry) -> str:
    """The recipe's mixture name: ``{utt1}_{snr1}_{utt2}_{snr2}[_{utt3}_{snr3}]`` (num2str SNRs)."""
    return "_".join(f"{utterance_stem(p)}_{format_snr(s)}" for p, s in zip(entry.paths, entry.snrs_db))


def format_mix_line(entry: MixEntry) -> str:
    """One mix-list line, ``path snr path snr ...`` with ``format_snr`` SNRs; a path holding whitespace is refused."""
    if any(any(c.isspace() for c in p) for p in entry.paths):
        raise ValueError(f"mix list paths cannot contain whitespace: {entry.paths}")
    return " ".join(f"{p} {format_snr(s)}" for p, s in zip(entry.paths, entry.snrs_db))


def parse_mix_list(text: str, source: str = "<text>", uniform: bool = False) -> list[MixEntry]:
    """Parse mix-list text; blank lines are skipped; a malformed line raises ``ValueError`` naming it. With
    ``uniform``, so does a line with another number of sources than the first line (a 3-speaker line in a
    2-speaker list: the recipe mixes a whole list for one speaker count)."""
    entries, first_line = [], 0
    for line_number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) % 2 or len(fields) < 4:
            raise ValueError(f"{source}:{line_number}: expected 'path snr path snr [path snr ...]', got {line!r}")
        try:
            snrs = tuple(float(s) for s in fields[1::2])
        except ValueError:
            raise ValueError(f"{source}:{line_number}: SNR is not a number in {line!r}") from None
        if not all(math.isfinite(s) for s in snrs):
            raise ValueError(f"{source}:{line_number}: non-finite SNR in {line!r}")
        if uniform and entries and len(snrs) != len(entries[0].snrs_db):
            raise ValueError(
                f"{source}:{line_number}: {len(snrs)} sources, but line {first_line} has "
                f"{len(entries[0].snrs_db)}: {line!r}"
            )
        first_line = first_line or line_number
        entries.append(MixEntry(tuple(fields[0::2]), snrs))
    return entries


def read_mix_list(url, uniform: bool = False) -> list[MixEntry]:
    """Read an official-format mix list (local path or fsspec URL); ``uniform``: see ``parse_mix_list``."""
    return parse_mix_list(storage.read_text(str(url)), source=str(url), uniform=uniform)


def write_mix_list(entries, url) -> None:
    """Write entries one per line, ``path snr path snr ...`` (atomic). ``read_mix_list`` round-trips
    entries whose SNRs have at most 5 significant digits (``generate_mix_lists`` makes them so)."""
    storage.write_text_atomic(str(url), "".join(format_mix_line(e) + "\n" for e in entries))


def _draw_snrs(rng: np.random.Generator, n_speakers: int) -> tuple[float, ...]:
    # Two speakers: relative SNR r ~ U(0, 5) dB split symmetrically, +r/2 and -r/2, as the official
    # lists do. Three: the same for the first two; the third gets its own gain ~ U(-2.5, 2.5) dB.
    # More (not in the recipe): each further speaker like the third.
    half = rng.uniform(0.0, MAX_RELATIVE_SNR_DB) / 2
    snrs = [round_snr(half), round_snr(-half)]
    snrs += [round_snr(rng.uniform(-THIRD_SPEAKER_SNR_DB, THIRD_SPEAKER_SNR_DB)) for _ in range(n_speakers - 2)]
    return tuple(snrs)


class _UtterancePicker:
    """Draws utterances per speaker without replacement, reshuffling a speaker's pool when used up,
    so that utterances repeat only once a speaker's are all used (the lists reuse utterances too)."""

    def __init__(self, paths_by_speaker: dict[str, list[str]], rng: np.random.Generator):
        self.paths_by_speaker = paths_by_speaker
        self.rng = rng
        self.pools: dict[str, list[str]] = {}

    def take(self, speaker: str) -> str:
        """The next utterance of ``speaker`` from its shuffled pool, reshuffled in full once used up."""
        pool = self.pools.get(speaker)
        if not pool:
            pool = list(self.rng.permutation(self.paths_by_speaker[speaker]))
            self.pools[speaker] = pool
        return pool.pop()


def _draw_entries(
    paths_by_speaker: dict[str, list[str]], count: int, n_speakers: int, rng: np.random.Generator, split: str
) -> list[MixEntry]:
    speakers = sorted(paths_by_speaker)
    if len(speakers) < n_speakers:
        raise ValueError(f"{split}: need at least {n_speakers} speakers to mix, found {len(speakers)}: {speakers}")
    picker = _UtterancePicker(paths_by_speaker, rng)
    entries = []
    for _ in range(count):
        chosen = rng.choice(len(speakers), size=n_speakers, replace=False)  # distinct speakers
        paths = tuple(picker.take(speakers[i]) for i in chosen)
        entries.append(MixEntry(paths, _draw_snrs(rng, n_speakers)))
    return entries


def _split_training_utterances(
    paths_by_speaker: dict[str, list[str]], fractions: tuple[float, float]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Per speaker, the first share of (sorted) utterances for tr and the rest for cv, so the two sets
    use different utterances of the same speakers, as wsj0-2mix tr/cv (both from si_tr_s) do."""
    tr, cv = {}, {}
    share_tr = fractions[0] / max(sum(fractions), 1e-12)
    for speaker, paths in paths_by_speaker.items():
        paths = sorted(paths)
        if len(paths) < 2:  # cannot separate: both sets use it
            tr[speaker] = cv[speaker] = paths
            continue
        n_tr = min(max(int(round(share_tr * len(paths))), 1), len(paths) - 1)
        tr[speaker], cv[speaker] = paths[:n_tr], paths[n_tr:]
    return tr, cv


def generate_mix_lists(
    corpus_manifest: pd.DataFrame,
    n_speakers: int = 2,
    sizes: dict[str, int] | None = None,
    scale: float = 1.0,
    seed: int = 0,
    train_subsets=("train", "si_tr_s"),
    test_subsets=("test", "si_dt_05", "si_et_05"),
) -> dict[str, list[MixEntry]]:
    """Mix lists for ``tr``, ``cv``, ``tt`` with the wsj0-2mix / wsj0-3mix protocol.

    ``corpus_manifest`` needs columns ``path``, ``speaker``, ``subset``. Each mixture has
    ``n_speakers`` distinct speakers; SNRs as in :func:`_draw_snrs` (two speakers: ``+r/2, -r/2`` with
    ``r ~ U(0, 5)`` dB; a third ``~ U(-2.5, 2.5)`` dB), rounded to the printed precision so written lists
    read back identically. ``tr`` and ``cv`` use speakers from ``train_subsets`` (disjoint utterance
    halves per speaker, split in proportion to the sizes, where a speaker has >= 2 utterances); ``tt``
    uses only speakers from ``test_subsets``, so test speakers are unseen. Sizes are ``sizes`` times
    ``scale``, at least 1 each. Deterministic for a seed. Paths are the manifest's ``path`` values.
    """
    if n_speakers < 2:
        raise ValueError(f"n_speakers must be >= 2, got {n_speakers}")
    sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
    counts = {split: max(1, int(round(n * scale))) for split, n in sizes.items()}
    for column in ("path", "speaker", "subset"):
        if column not in corpus_manifest.columns:
            raise ValueError(f"corpus manifest lacks column {column!r}")

    def by_speaker(subsets) -> dict[str, list[str]]:
        rows = corpus_manifest[corpus_manifest["subset"].isin(list(subsets))]
        return {str(s): sorted(map(str, g["path"])) for s, g in rows.groupby("speaker", sort=True)}

    train_pool, test_pool = by_speaker(train_subsets), by_speaker(test_subsets)
    overlap = set(train_pool) & set(test_pool)
    if overlap:
        raise ValueError(f"speakers in both training and test subsets: {sorted(overlap)}")
    tr_pool, cv_pool = _split_training_utterances(train_pool, (counts.get("tr", 0), counts.get("cv", 0)))

    unknown = set(counts) - {"tr", "cv", "tt"}
    if unknown:
        raise ValueError(f"unknown splits {sorted(unknown)}: expected tr, cv, tt")
    pools = {"tr": tr_pool, "cv": cv_pool, "tt": test_pool}
    lists = {}
    for split_index, split in enumerate(("tr", "cv", "tt")):
        if split not in counts:
            continue
        # One independent stream per split, so one split's size leaves the others unchanged.
        rng = np.random.default_rng([int(seed), split_index])
        lists[split] = _draw_entries(pools[split], counts[split], n_speakers, rng, split)
    return lists
