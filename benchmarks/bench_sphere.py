"""NIST SPHERE decoding speed (desphere, pure Python): what reading WSJ0 as LDC ships it costs.

Decodes every sph2pipe test file (20 kHz, shorten-compressed pcm/ulaw, 1-2 channels) several times and
prints decoded samples per second, then the projection for one hour of 16 kHz mono audio (WSJ0's format),
on one core. Multiply by the hours of the subset you read.

    python benchmarks/bench_sphere.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from deepclust.audio import read_audio  # noqa: E402

FIXTURES = REPO.parent / "shared" / "corpora" / "sphere-shorten"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import desphere

    print(f"$ python benchmarks/bench_sphere.py --repeats {args.repeats}")
    print(f"desphere native extension: {desphere.native_available()}")
    print("| file | samples (all channels) | ms per decode | samples/s |")
    print("| --- | --- | --- | --- |")
    total_samples, total_seconds = 0, 0.0
    for path in sorted(FIXTURES.glob("*_shn.sph")):
        began = time.perf_counter()
        for _ in range(args.repeats):
            decoded, _ = read_audio(path, mono=False)
        seconds = (time.perf_counter() - began) / args.repeats
        samples = decoded.size
        total_samples += samples
        total_seconds += seconds
        print(f"| {path.name} | {samples} | {seconds * 1000:.1f} | {samples / seconds:,.0f} |")
    rate = total_samples / total_seconds
    hour = 3600 * 16000
    print(
        f"\nshorten decoding: {rate:,.0f} samples/s on one core -> {hour / rate / 60:.1f} min per hour of "
        f"16 kHz mono audio ({hour / rate / 3600 * 100:.1f}% of real time)"
    )


if __name__ == "__main__":
    main()
