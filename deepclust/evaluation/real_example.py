"""The embedded real two-talker example (``deepclust/data/real_example``, LibriSpeech, CC BY 4.0).

``separate_example`` separates it with a model (the shipped one by default), writes the estimates and
scores them against the two true sources: the demo's last step, showing what a user gets on real speech.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepclust import storage
from deepclust.audio import read_audio, write_audio

EXAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "real_example"


def example_paths() -> dict[str, str]:
    """``mixture``, ``s1``, ``s2`` FLAC paths of the example."""
    return {name: str(EXAMPLE_DIR / f"{name}.flac") for name in ("mixture", "s1", "s2")}


def separate_example(out_url: str, separator=None) -> dict:
    """Separate the example into ``out_url/s1.wav, s2.wav``; returns the scores and paths.

    Returns ``dict(sdri, si_sdri, sdr, outputs, mixture, inference, seconds)``: mean SDR improvement and
    SI-SDR improvement in dB over the two speakers, and the written files.
    """
    import time

    from deepclust.evaluation import evaluate_mixture
    from deepclust.separation.separator import METHOD_NAMES, Separator

    if separator is None:
        from deepclust import pretrained

        separator = Separator(pretrained.load(), device="cpu")
    paths = example_paths()
    mixture, rate = read_audio(paths["mixture"], target_sr=separator.sample_rate)
    sources = np.stack([read_audio(paths[name], target_sr=rate)[0] for name in ("s1", "s2")])
    began = time.perf_counter()
    estimates = separator.separate(mixture, 2)
    seconds = time.perf_counter() - began
    storage.makedirs(out_url)
    outputs = []
    for index, estimate in enumerate(estimates, 1):
        target = storage.join(out_url, f"s{index}.wav")
        write_audio(target, estimate, rate)
        outputs.append(storage.absolute(target))
    scores = evaluate_mixture(mixture, sources, estimates)
    return {
        "sdri": float(np.mean(scores["sdri"])),
        "si_sdri": float(np.mean(scores["si_sdri"])),
        "sdr": float(np.mean(scores["sdr"])),
        "outputs": outputs,
        "mixture": paths["mixture"],
        "inference": METHOD_NAMES[separator.inference_for(2)],
        "seconds": seconds,
    }
