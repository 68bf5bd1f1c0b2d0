"""BSS-eval back ends on real separations: agreement with mir_eval (the reference) and time per call.

    pip install fast_bss_eval       # not a dependency of deepclust: only this comparison needs it
    python benchmarks/bench_bss_eval.py [--mixtures 12] [--seconds 4] [--threads 1] [--seed 28]

Two-talker mixtures of real 8 kHz read speech (``../shared/corpora``: LibriSpeech speakers and speechocean762,
one talker of each corpus per mixture, 0-5 dB apart, truncated to the shorter and to ``--seconds``) are
separated by the shipped model (``deepclust.pretrained``, its estimates reversed so that the permutation
search has work) and by the ideal binary and ratio masks. Every estimate set is scored by mir_eval's
``bss_eval_sources``, by ``deepclust.metrics.bss_eval`` ("deepclust fast") and by the PyPI package
``fast_bss_eval`` (its exact default, and its approximate 10-iteration conjugate-gradient mode); the script
prints, per back end, the largest |difference| from mir_eval of SDR, SIR and SAR in dB, whether the
permutations agree, and the median time per call, with ratios, all measured in this one run (the back ends
take turns going first on every estimate set, so a busy machine slows all alike).

It also scores one separation scaled below fast_bss_eval's normalisation floor (norm 1e-6; BSS-eval is
scale-invariant), and times the evaluation stage's own path: the 3 systems' 6 estimates and the mixture
against one mixture's references in one call (``pairwise_criteria``; fast_bss_eval's
``square_cosine_metrics``, pairwise).

Issue 28's rule: switch to fast_bss_eval if it agrees with mir_eval within 1e-3 dB and is not slower than
ours. The figures and the decision are in the docstring of ``deepclust/metrics/bss_eval.py``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

try:
    import fast_bss_eval
except ImportError:
    raise SystemExit("this comparison needs fast_bss_eval: pip install fast_bss_eval") from None
import mir_eval  # noqa: E402
import torch  # noqa: E402

from deepclust import pretrained  # noqa: E402
from deepclust.audio import read_audio  # noqa: E402
from deepclust.metrics.bss_eval import bss_eval, pairwise_criteria  # noqa: E402
from deepclust.separation.oracle import ideal_binary_mask_estimates, ideal_ratio_mask_estimates  # noqa: E402
from deepclust.separation.separator import Separator  # noqa: E402

SR = 8000
CORPORA = REPO.parent / "shared" / "corpora"
CORPUS_FOLDERS = ("librispeech-speakers", "speechocean762")  # one talker from each per mixture
LEVEL_DB_RANGE = (0.0, 5.0)  # wsj0-2mix's relative levels
METRICS = ("sdr", "sir", "sar")


def draw_mixtures(count: int, seconds: float, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` two-talker mixtures: ``(mixture (T,), sources (2, T))`` float32, as the sources appear in it."""
    rng = np.random.default_rng(seed)
    files = [sorted((CORPORA / name).rglob("*.flac")) for name in CORPUS_FOLDERS]
    mixtures = []
    while len(mixtures) < count:
        talkers = [read_audio(paths[rng.integers(len(paths))], target_sr=SR)[0] for paths in files]
        length = min(min(len(t) for t in talkers), int(seconds * SR))
        sources = np.stack([t[:length] / np.sqrt(np.mean(t[:length] ** 2)) for t in talkers]).astype(np.float64)
        if not np.all(np.isfinite(sources)):  # a silent crop: draw again
            continue
        sources[1] *= 10 ** (-rng.uniform(*LEVEL_DB_RANGE) / 20)
        sources *= 0.1 / np.abs(sources.sum(0)).max()
        mixtures.append((sources.sum(0).astype(np.float32), sources.astype(np.float32)))
    return mixtures


def by_mir_eval(reference, estimate) -> dict:
    return bss_eval(reference, estimate, backend="mir_eval")


def by_ours(reference, estimate) -> dict:
    return bss_eval(reference, estimate, backend="fast")


def by_fast_bss_eval(reference, estimate) -> dict:
    sdr, sir, sar, perm = fast_bss_eval.bss_eval_sources(reference, estimate)
    return {"sdr": sdr, "sir": sir, "sar": sar, "perm": perm}


def by_fast_bss_eval_cg(reference, estimate) -> dict:
    # its faster, approximate mode: 10 conjugate-gradient iterations instead of the direct solve
    sdr, sir, sar, perm = fast_bss_eval.bss_eval_sources(reference, estimate, use_cg_iter=10)
    return {"sdr": sdr, "sir": sir, "sar": sar, "perm": perm}


BACK_ENDS = {
    "mir_eval": by_mir_eval,
    "deepclust fast": by_ours,
    "fast_bss_eval": by_fast_bss_eval,
    "fast_bss_eval cg10": by_fast_bss_eval_cg,
}


def timed(fn, *args):
    began = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - began, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mixtures", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=4.0, help="longest mixture, seconds")
    parser.add_argument("--threads", type=int, default=1, help="BLAS and torch threads")
    parser.add_argument("--seed", type=int, default=28)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"$ python benchmarks/bench_bss_eval.py {' '.join(sys.argv[1:])}")
    print(
        f"numpy {np.__version__}, scipy {__import__('scipy').__version__}, mir_eval {mir_eval.__version__}, "
        f"fast_bss_eval {version('fast_bss_eval')}, "
        f"{platform.processor() or platform.machine()}, {args.threads} thread(s)"
    )

    mixtures = draw_mixtures(args.mixtures, args.seconds, args.seed)
    separator = Separator(pretrained.load(), device="cpu")
    systems = {
        "model": lambda mix, src: separator.separate(mix, 2),
        "IBM": ideal_binary_mask_estimates,
        "IRM": ideal_ratio_mask_estimates,
    }
    np.seterr(divide="ignore")  # fast_bss_eval's log10(0) for the mixture's SAR (+inf dB)
    seconds = {name: [] for name in BACK_ENDS}
    worst = {name: {m: 0.0 for m in METRICS} for name in BACK_ENDS if name != "mir_eval"}
    perm_mismatches = {name: 0 for name in worst}
    shared_seconds = {"deepclust fast": [], "fast_bss_eval": []}
    shared_worst = {m: 0.0 for m in METRICS}
    sdr_by_system = {name: [] for name in systems}
    calls = 0
    warnings.simplefilter("ignore", FutureWarning)  # mir_eval 0.8 marks bss_eval_sources deprecated
    with threadpool_limits(args.threads):
        for index, (mixture, sources) in enumerate(mixtures):
            estimate_sets = {name: system(mixture, sources) for name, system in systems.items()}
            # a shuffled order, so that the permutation search is exercised
            estimate_sets["model"] = estimate_sets["model"][::-1].copy()
            reference = sources.astype(np.float64)
            for system, estimates in estimate_sets.items():
                estimates = estimates.astype(np.float64)  # fast_bss_eval computes in its inputs' precision
                order = list(BACK_ENDS)
                order = order[calls % len(order) :] + order[: calls % len(order)]  # take turns going first
                scores = {}
                for name in order:
                    elapsed, scores[name] = timed(BACK_ENDS[name], reference, estimates)
                    seconds[name].append(elapsed)
                calls += 1
                sdr_by_system[system].append(float(np.mean(scores["mir_eval"]["sdr"])))
                for name in worst:
                    if not np.array_equal(scores[name]["perm"], scores["mir_eval"]["perm"]):
                        perm_mismatches[name] += 1
                    for m in METRICS:
                        gap = float(np.max(np.abs(np.asarray(scores[name][m]) - scores["mir_eval"][m])))
                        worst[name][m] = max(worst[name][m], gap)
            # The evaluation stage's path: all systems and the mixture against the references, one call.
            stacked = np.concatenate([*estimate_sets.values(), mixture[None]]).astype(np.float64)
            elapsed, mine = timed(pairwise_criteria, reference, stacked)
            shared_seconds["deepclust fast"].append(elapsed)
            elapsed, (coh_sdr, coh_sar) = timed(fast_bss_eval.numpy.square_cosine_metrics, reference, stacked)
            shared_seconds["fast_bss_eval"].append(elapsed)
            theirs = [-x.T for x in fast_bss_eval.numpy.metrics._base_metrics_bss_eval(coh_sdr, coh_sar)]
            for m, a, b in zip(METRICS, mine, theirs):
                # The mixture lies in the references' span: its SAR is rounding noise (> 100 dB or +inf) in
                # every back end, so only the systems' SAR is compared.
                rows = slice(None, -1) if m == "sar" else slice(None)
                shared_worst[m] = max(shared_worst[m], float(np.max(np.abs(a[rows] - b[rows]))))
            print(
                f"  mixture {index}: {len(mixture) / SR:.1f} s, mean SDR (mir_eval) "
                + ", ".join(f"{s} {sdr_by_system[s][-1]:.2f} dB" for s in systems),
                flush=True,
            )

    print(
        f"\n{calls} bss_eval calls (2 sources, {len(mixtures)} mixtures x {len(systems)} systems: "
        f"{', '.join(systems)}); mean SDR: " + ", ".join(f"{s} {np.mean(v):.2f} dB" for s, v in sdr_by_system.items())
    )
    print("\nlargest |difference| from mir_eval, dB, over every source of every call:")
    print(f"  {'back end':<20} {'SDR':>10} {'SIR':>10} {'SAR':>10}  permutation differs")
    for name, gaps in worst.items():
        print(
            f"  {name:<20} " + " ".join(f"{gaps[m]:10.2e}" for m in METRICS) + f"  {perm_mismatches[name]} of {calls}"
        )
    print("\ntime per bss_eval call (median over the calls, this run):")
    medians = {name: float(np.median(v)) for name, v in seconds.items()}
    for name, median in medians.items():
        print(f"  {name:<20} {median * 1e3:8.1f} ms   (mean {np.mean(seconds[name]) * 1e3:.1f} ms)")
    print(f"  mir_eval / deepclust fast      : {medians['mir_eval'] / medians['deepclust fast']:6.2f}x")
    print(f"  mir_eval / fast_bss_eval       : {medians['mir_eval'] / medians['fast_bss_eval']:6.2f}x")
    print(
        f"  fast_bss_eval / deepclust fast : {medians['fast_bss_eval'] / medians['deepclust fast']:6.2f}x"
        "  (above 1: fast_bss_eval is slower)"
    )
    print(f"  fast_bss_eval cg10 / deepclust fast : {medians['fast_bss_eval cg10'] / medians['deepclust fast']:6.2f}x")
    # BSS-eval is scale-invariant; fast_bss_eval divides by max(norm, 1e-6), so below that norm it is not.
    mixture, sources = mixtures[0]
    quiet = 1e-9 * sources.astype(np.float64), 1e-9 * ideal_binary_mask_estimates(mixture, sources).astype(np.float64)
    print("\nthe first IBM separation scaled by 1e-9 (norms below 1e-6), |SDR difference| from mir_eval, dB:")
    expected = by_mir_eval(*quiet)["sdr"]
    for name in ("deepclust fast", "fast_bss_eval"):
        print(f"  {name:<20} {np.max(np.abs(BACK_ENDS[name](*quiet)['sdr'] - expected)):10.2e}")
    shared = {name: float(np.median(v)) for name, v in shared_seconds.items()}
    print(f"\none mixture's {len(systems) * 2 + 1} estimates (3 systems + the mixture) in one call, median:")
    for name, median in shared.items():
        print(f"  {name:<20} {median * 1e3:8.1f} ms")
    print(
        f"  fast_bss_eval / deepclust fast : {shared['fast_bss_eval'] / shared['deepclust fast']:6.2f}x; "
        "largest |difference| between them, dB: " + ", ".join(f"{m.upper()} {shared_worst[m]:.2e}" for m in METRICS)
    )


if __name__ == "__main__":
    main()
