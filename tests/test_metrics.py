"""BSS-eval (fast vs mir_eval) and SI-SDR on real separations."""

import numpy as np
import pytest

from deepclust.audio import read_audio
from deepclust.metrics.bss_eval import bss_eval, mixture_sdr, pairwise_criteria, sdr_improvement
from deepclust.metrics.si_sdr import si_sdr, si_sdr_best, si_sdr_improvement, si_sdr_mixture
from deepclust.separation.oracle import ideal_binary_mask_estimates

FSDD_FILES = ["2_george_4.wav", "5_jackson_9.wav", "8_yweweler_20.wav"]
LIBRISPEECH_FILES = ["198-209-0000.ogg", "3436-172162-0000.ogg", "5703-47212-0000.ogg"]


def mixture_of(signals, n_samples):
    sources = np.stack([np.pad(s, (0, max(0, n_samples - len(s))))[:n_samples] for s in signals])
    sources = sources / np.sqrt(np.mean(sources**2, axis=1, keepdims=True)) * 0.05
    return sources.sum(0), sources


@pytest.fixture(scope="module")
def real_mixtures(fsdd_dir, librispeech_dir):
    """2- and 3-source mixtures of FSDD digits (~0.6 s) and LibriSpeech excerpts (1.5 s at 8 kHz)."""
    fsdd = [read_audio(fsdd_dir / name)[0] for name in FSDD_FILES]
    # Skip the first second of each excerpt (leading silence) and keep 1.5 s.
    libri = [read_audio(librispeech_dir / name, target_sr=8000)[0][8000:20000] for name in LIBRISPEECH_FILES]
    mixtures = {}
    for k in (2, 3):
        mixtures[f"fsdd-{k}"] = mixture_of(fsdd[:k], 5000)
        mixtures[f"librispeech-{k}"] = mixture_of(libri[:k], 12000)
    return mixtures


def estimates_for(kind, mixture, sources):
    ibm = ideal_binary_mask_estimates(mixture, sources)
    if kind == "ibm":
        return ibm
    # A deliberately poor estimate: leaked mixture, a gain, noise, and the order reversed.
    noise = np.random.default_rng(1).normal(0, 0.01, ibm.shape)
    return (0.7 * ibm + 0.4 * mixture + noise)[::-1].copy()


@pytest.mark.parametrize("name", ["fsdd-2", "fsdd-3", "librispeech-2", "librispeech-3"])
@pytest.mark.parametrize("kind", ["ibm", "poor"])
def test_fast_bss_eval_matches_mir_eval(real_mixtures, name, kind):
    mixture, sources = real_mixtures[name]
    estimates = estimates_for(kind, mixture, sources)
    reference = bss_eval(sources, estimates, backend="mir_eval")
    fast = bss_eval(sources, estimates, backend="fast")
    for key in ("sdr", "sir", "sar"):
        # measured within 2e-11 dB on these mixtures; 1e-6 leaves room for another BLAS, not for a wrong formula
        np.testing.assert_allclose(fast[key], reference[key], atol=1e-6, rtol=0, err_msg=key)
    np.testing.assert_array_equal(fast["perm"], reference["perm"])
    if kind == "poor":
        assert list(fast["perm"]) == list(range(len(sources)))[::-1]


def test_mixture_baseline_matches_mir_eval(real_mixtures):
    mixture, sources = real_mixtures["fsdd-3"]
    np.testing.assert_allclose(
        mixture_sdr(sources, mixture), mixture_sdr(sources, mixture, backend="mir_eval"), atol=1e-6
    )
    scores = sdr_improvement(sources, ideal_binary_mask_estimates(mixture, sources), mixture)
    np.testing.assert_allclose(scores["sdri"], scores["sdr"] - scores["sdr_mixture"])
    assert np.all(scores["sdri"] > 5)


def test_pairwise_criteria_accepts_any_number_of_estimates(real_mixtures):
    mixture, sources = real_mixtures["fsdd-2"]
    sdr, sir, sar = pairwise_criteria(sources, np.stack([mixture, sources[0], sources[1] + 0.1 * sources[0]]))
    assert sdr.shape == sir.shape == sar.shape == (3, 2)
    assert sdr[1, 0] > 100 and sdr[2, 1] > sdr[2, 0]


def test_silent_sources_are_rejected_like_mir_eval(real_mixtures):
    _, sources = real_mixtures["fsdd-2"]
    silent = sources.copy()
    silent[1] = 0
    for backend in ("fast", "mir_eval"):
        with pytest.raises(ValueError):
            bss_eval(sources, silent, backend=backend)
    with pytest.raises(ValueError):
        bss_eval(sources, sources, backend="nope")


def test_si_sdr_known_value_and_scale_invariance():
    t = np.arange(8000) / 8000.0
    target = np.sin(2 * np.pi * 100 * t)
    noise = 0.1 * np.cos(2 * np.pi * 100 * t)  # orthogonal to the target, zero mean: SI-SDR = 20 dB
    assert si_sdr(target, target + noise) == pytest.approx(20.0, abs=1e-6)
    assert si_sdr(target, 3.7 * (target + noise)) == pytest.approx(20.0, abs=1e-6)
    assert si_sdr(0.01 * target, target + noise) == pytest.approx(20.0, abs=1e-6)
    # zero-mean: a DC offset on the estimate changes nothing
    assert si_sdr(target, target + noise + 0.5) == pytest.approx(20.0, abs=1e-6)
    assert si_sdr(target, target + 10 * noise) == pytest.approx(0.0, abs=1e-6)


def test_si_sdr_best_finds_the_permutation(real_mixtures):
    mixture, sources = real_mixtures["librispeech-3"]
    estimates = ideal_binary_mask_estimates(mixture, sources)
    in_order = si_sdr_best(sources, estimates)
    shuffled = si_sdr_best(sources, estimates[[2, 0, 1]])
    np.testing.assert_array_equal(shuffled["perm"], [1, 2, 0])
    np.testing.assert_allclose(shuffled["si_sdr"], in_order["si_sdr"])
    for j in range(3):
        assert in_order["si_sdr"][j] == pytest.approx(si_sdr(sources[j], estimates[j]))
    improvement = si_sdr_improvement(sources, estimates, mixture)
    np.testing.assert_allclose(improvement["si_sdri"], in_order["si_sdr"] - si_sdr_mixture(sources, mixture))
    assert np.all(improvement["si_sdri"] > 5)
