"""Builds deepclust/data/real_example/: a short real two-talker mixture for the demo's last step.

Two LibriSpeech train-clean-100 readers (CC BY 4.0) that the shipped model never heard (held-out
speakers of the split recorded in deepclust/pretrained/MODEL_CARD.md): 5 s of each, both at 0 dB
P.56 active level, summed and scaled to a 0.9 peak, 8 kHz 16-bit FLAC. Run from the repository root
with ../shared beside it: python scripts/make_real_example.py
"""

from pathlib import Path

import numpy as np

from deepclust.audio import read_audio, write_audio
from deepclust.mixing.mix import mix_sources

CORPUS = Path("../shared/corpora/librispeech-speakers")
SPEAKERS = [("103", "103-1240-0000.flac"), ("460", "460-172357-0000.flac")]  # female, male; both held out
START_S, SECONDS, RATE = 1.0, 5.0, 8000
OUT = Path("deepclust/data/real_example")


def main() -> None:
    crops = []
    for speaker, name in SPEAKERS:
        waveform, _ = read_audio(CORPUS / speaker / name, target_sr=RATE)
        start = int(START_S * RATE)
        crops.append(waveform[start : start + int(SECONDS * RATE)])
    mixture, sources = mix_sources(crops, [0.0, 0.0], RATE, mode="min")
    OUT.mkdir(parents=True, exist_ok=True)
    write_audio(str(OUT / "mixture.flac"), mixture.astype(np.float32), RATE)
    for index, source in enumerate(sources, 1):
        write_audio(str(OUT / f"s{index}.flac"), source.astype(np.float32), RATE)
    print(f"wrote {OUT}: {mixture.size / RATE:.1f} s")


if __name__ == "__main__":
    main()
