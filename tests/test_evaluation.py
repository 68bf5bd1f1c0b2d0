"""Scoring a test set: one row per (mixture, system), oracle rows, failures recorded, not raised."""

import numpy as np
import pandas as pd
import pytest

from deepclust.audio import read_audio, write_audio
from deepclust.evaluation import RESULT_COLUMNS, evaluate_mixture, evaluate_mixtures, gender_condition, mean_scores_by
from deepclust.metrics.bss_eval import bss_eval
from deepclust.separation.oracle import ideal_binary_mask_estimates

PAIRS = [
    ("1_george_3.wav", "6_theo_8.wav"),
    ("4_jackson_11.wav", "9_lucas_2.wav"),
    ("7_nicolas_30.wav", "0_yweweler_5.wav"),
]


@pytest.fixture(scope="module")
def test_set(fsdd_dir, tmp_path_factory):
    """Three 2-speaker mixtures written like the mixing stage does, and IBM 'model' estimates."""
    root = tmp_path_factory.mktemp("eval")
    rows, estimate_paths = [], {}
    for i, names in enumerate(PAIRS):
        signals = [read_audio(fsdd_dir / name)[0] for name in names]
        n = min(len(s) for s in signals)
        sources = np.stack([s[:n] / np.abs(s[:n]).max() * 0.4 for s in signals])
        mixture = sources.sum(0)
        source_paths = []
        for k, source in enumerate(sources):
            source_paths.append(str(root / f"s{k + 1}_{i}.wav"))
            write_audio(source_paths[-1], source, 8000)
        write_audio(root / f"mix_{i}.wav", mixture, 8000)
        # stand-in for a model: the IBM estimates, stored in reversed order
        estimates = ideal_binary_mask_estimates(
            read_audio(root / f"mix_{i}.wav")[0], np.stack([read_audio(p)[0] for p in source_paths])
        )
        estimate_paths[f"mix{i}"] = []
        for k, estimate in enumerate(estimates[::-1]):
            estimate_paths[f"mix{i}"].append(str(root / f"est{k}_{i}.wav"))
            write_audio(estimate_paths[f"mix{i}"][-1], estimate, 8000, subtype="FLOAT")
        rows.append(
            {
                "mixture_id": f"mix{i}",
                "split": "tt",
                "mixture_path": str(root / f"mix_{i}.wav"),
                "source_paths": source_paths,
                "speakers": [n.split("_")[1] for n in names],
                "genders": ["m", "f"] if i == 1 else ["m", "m"],
                "num_speakers": 2,
                "sample_rate": 8000,
            }
        )
    return pd.DataFrame(rows), estimate_paths, root


def test_one_row_per_mixture_and_system_with_oracles(test_set):
    manifest, estimate_paths, _ = test_set
    results = evaluate_mixtures(manifest, estimate_paths)
    assert list(results.columns) == RESULT_COLUMNS
    assert len(results) == 9 and set(results["system"]) == {"model", "ibm", "irm"}
    assert (results["status"] == "done").all()
    for column in ["sdr", "sir", "sar", "si_sdr", "sdri", "si_sdri"]:
        assert np.isfinite(results[column]).all(), column
    np.testing.assert_allclose(results["sdri"], results["sdr"] - results["sdr_mixture"])
    np.testing.assert_allclose(results["si_sdri"], results["si_sdr"] - results["si_sdr_mixture"])
    by_system = results.set_index(["mixture_id", "system"])
    # the "model" here is the IBM in another order: same scores (the permutation is found)
    for mixture_id in manifest["mixture_id"]:
        assert by_system.loc[(mixture_id, "model"), "sdr"] == pytest.approx(
            by_system.loc[(mixture_id, "ibm"), "sdr"], abs=1e-3
        )
    assert (results.loc[results["system"] == "ibm", "sdri"] > 5).all()
    assert list(results.loc[results["system"] == "ibm", "gender_condition"]) == ["same", "different", "same"]
    summary = mean_scores_by(results)
    assert set(summary["system"]) == {"model", "ibm", "irm"} and summary["mixtures"].sum() == 9


def test_failed_mixture_gets_failed_rows_and_others_go_on(test_set):
    manifest, estimate_paths, root = test_set
    broken = manifest.copy()
    broken.loc[1, "mixture_path"] = str(root / "missing.wav")
    partial = {k: v for k, v in estimate_paths.items() if k != "mix2"}
    results = evaluate_mixtures(broken, partial, oracles=("ibm",))
    status = results.set_index(["mixture_id", "system"])["status"].to_dict()
    assert status == {
        ("mix0", "model"): "done",
        ("mix0", "ibm"): "done",
        ("mix1", "model"): "failed",
        ("mix1", "ibm"): "failed",
        ("mix2", "model"): "failed",
        ("mix2", "ibm"): "done",
    }
    failed = results[results["status"] == "failed"]
    assert failed["error"].str.len().gt(0).all() and failed["sdr"].isna().all()
    assert "missing.wav" in failed.iloc[0]["error"]


def test_oracles_only_when_no_estimates(test_set):
    manifest, _, _ = test_set
    results = evaluate_mixtures(manifest.iloc[:1], None, oracles=("irm",))
    assert list(results["system"]) == ["irm"] and results["status"].eq("done").all()


def test_evaluate_mixture_backends_agree(test_set):
    manifest, estimate_paths, _ = test_set
    row = manifest.iloc[0]
    mixture, sr = read_audio(row["mixture_path"])
    sources = np.stack([read_audio(p)[0] for p in row["source_paths"]])
    estimates = np.stack([read_audio(p)[0] for p in estimate_paths["mix0"]])
    fast = evaluate_mixture(mixture, sources, estimates, sr, backend="fast")
    reference = evaluate_mixture(mixture, sources, estimates, sr, backend="mir_eval")
    for key in ("sdr", "sir", "sar", "sdri", "sdr_mixture"):
        np.testing.assert_allclose(fast[key], reference[key], atol=0.01)
    np.testing.assert_array_equal(fast["perm"], [1, 0])
    assert fast["sdri"].shape == (2,)
    np.testing.assert_allclose(fast["sdr"], bss_eval(sources, estimates[::-1])["sdr"])


def test_gender_condition():
    assert gender_condition(["f", "f"]) == "same"
    assert gender_condition(["m", "f", "m"]) == "different"
    assert gender_condition(["m", None]) is None
    assert gender_condition([]) is None
