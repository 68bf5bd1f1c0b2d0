"""Run history rows, the regression rule and `deepclust compare`, on records of real tiny runs' shape."""

import dataclasses

import pandas as pd
import pytest

from deepclust import storage
from deepclust.recipe.config import demo_config
from deepclust.reports.comparison import compare_runs, find_regression
from deepclust.reports.history import append_history, config_fingerprint, headline_figures, plot_trend


def _summary(sdri: float, ibm: float = 12.0) -> pd.DataFrame:
    rows = []
    for system, value in (("model", sdri), ("ibm", ibm), ("irm", ibm - 1)):
        rows.append(
            {
                "system": system,
                "num_speakers": 2,
                "condition": "open",
                "gender_condition": "all",
                "mixtures": 10,
                "sdri_mean": value,
                "si_sdri_mean": value - 0.5,
            }
        )
    return pd.DataFrame(rows)


def _row(run_id, sdri, fingerprint="abc", corpus="demo:", capped=False):
    return {
        "run_id": run_id,
        "run_root": f"/runs/{run_id}",
        "config_fingerprint": fingerprint,
        "corpus": corpus,
        "finished_at": f"2026-11-{len(run_id):02d}T00:00:00+00:00",
        "time_capped": capped,
        "sdri_2spk_open": sdri,
        "ibm_sdri_2spk_open": 12.0,
    }


def test_headline_figures_take_model_and_ceilings():
    figures = headline_figures(_summary(7.0))
    assert figures == {
        "sdri_2spk_open": 7.0,
        "si_sdri_2spk_open": 6.5,
        "ibm_sdri_2spk_open": 12.0,
        "irm_sdri_2spk_open": 11.0,
    }


def test_fingerprint_ignores_where_and_how_fast_but_not_the_recipe():
    base = demo_config("runs/a", quick=True)
    moved = dataclasses.replace(
        base,
        run_root="runs/b",
        train=dataclasses.replace(base.train, device="cuda", num_threads=None),
        separate=dataclasses.replace(base.separate, batch_size=64),
    )
    longer = dataclasses.replace(base, train=dataclasses.replace(base.train, max_epochs=20))
    assert config_fingerprint(base) == config_fingerprint(moved) != config_fingerprint(longer)


def test_regression_is_measured_against_the_best_earlier_run_of_the_same_recipe_and_corpus():
    history = pd.DataFrame(
        [
            _row("a", 7.0),
            _row("bb", 7.4),
            _row("ccc", 9.9, fingerprint="other"),
            _row("dddd", 9.0, capped=True),
            _row("eeeee", 9.5, corpus="wsj0:/data"),
        ]
    )
    current = _row("ffffff", 6.8)
    flagged = find_regression(pd.concat([history, pd.DataFrame([current])]), current, margin_db=0.5)
    assert flagged["best_run_id"] == "bb" and flagged["drop"] == pytest.approx(0.6)
    assert "bb" in flagged["message"] and "ffffff" in flagged["message"]
    assert find_regression(history, _row("g", 7.0), margin_db=0.5) is None  # within the margin
    assert find_regression(history, _row("h", 1.0, capped=True)) is None  # a capped run is not judged


def test_history_appends_and_plots(tmp_path):
    url = str(tmp_path / "history.parquet")
    append_history(url, _row("a", 7.0))
    history = append_history(url, _row("bb", 7.2))
    assert list(history["run_id"]) == ["a", "bb"]
    png = plot_trend(history, str(tmp_path / "trend.png"))
    assert storage.read_bytes(png)[:4] == b"\x89PNG"


def test_compare_lists_config_differences_and_result_deltas(tmp_path):
    runs = []
    for name, sdri, epochs in (("a", 7.0, 16), ("b", 7.5, 20)):
        root = tmp_path / name
        root.mkdir()
        _summary(sdri).to_parquet(root / "summary.parquet")
        storage.write_json(
            {
                "run_root": str(root),
                "summary": str(root / "summary.parquet"),
                "config": {"train": {"max_epochs": epochs, "seed": 0}},
            },
            str(root / "run.json"),
        )
        runs.append(str(root))
    comparison = compare_runs(*runs)
    assert comparison["config_diff"].to_dict("records") == [{"key": "train.max_epochs", "a": 16, "b": 20}]
    model = comparison["results"].set_index("system").loc["model"]
    assert model["SDRi b - a"] == pytest.approx(0.5)
    assert "train.max_epochs" in comparison["markdown"]
    with pytest.raises(FileNotFoundError, match="run.json"):
        compare_runs(str(tmp_path / "missing"), runs[0])
