"""Set (b) of benchmarks/bench_quality_real.py: two corpora the model never trained on, a model that names one of
them refused, seeded mixtures for paired comparison, and the per-recording pick between the mask head and soft
k-means."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_quality_real as bench  # noqa: E402

from deepclust import pretrained  # noqa: E402
from deepclust.audio import read_audio  # noqa: E402
from deepclust.model.checkpoint import load_model, save_model  # noqa: E402
from deepclust.separation.separator import Separator  # noqa: E402


@pytest.fixture(scope="module")
def shipped():
    return load_model(pretrained.path())


def test_the_shipped_model_trained_on_neither_never_trained_corpus(shipped):
    assert [bench.training_use(shipped.extra, corpus) for corpus in bench.OUTSIDE.values()] == [None, None]


def test_a_model_that_names_a_never_trained_corpus_in_training_is_recognised(corpora_dir):
    msc, fsdd = bench.OUTSIDE["msc"], bench.OUTSIDE["fsdd"]
    by_name = {"sources": [{"name": "msc-malayalam", "root": "/elsewhere/msc-malayalam"}]}
    by_folder = {"sources": [{"name": "digits", "root": str(corpora_dir / "fsdd" / "recordings")}]}
    by_speakers = {"training_speakers": ["speechocean762/0001", "fsdd/jackson"]}
    assert "msc-malayalam" in bench.training_use(by_name, msc)
    assert "digits" in bench.training_use(by_folder, fsdd) and bench.training_use(by_folder, msc) is None
    assert "fsdd/jackson" in bench.training_use(by_speakers, fsdd)


def test_the_benchmark_refuses_to_score_a_model_on_a_corpus_it_trained_on(shipped, corpora_dir, tmp_path, monkeypatch):
    model_url = str(tmp_path / "trained-on-msc.pt")
    sources = [*shipped.extra["sources"], {"name": "msc-malayalam", "root": str(corpora_dir / "msc-malayalam")}]
    save_model(
        model_url,
        shipped.model,
        shipped.feature_stats,
        shipped.feature_config,
        extra={**shipped.extra, "sources": sources},
    )
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "bench_quality_real.py",
            "--model",
            model_url,
            "--threads",
            "1",
            "--source",
            str(corpora_dir / "speechocean762"),
        ],
    )
    with pytest.raises(SystemExit, match="lists msc-malayalam in training"):
        bench.main()


def test_msc_mixtures_hold_every_speaker_and_are_the_same_on_every_draw():
    pool, speaker_of, _ = bench.msc_pool(2026)
    assert len(pool.speakers) == 83 and all(s.startswith("msc-malayalam/ml") for s in pool.speakers)
    first, again = (bench.draw_mixtures(pool, 5, 2, 2026) for _ in range(2))
    assert [m["utterances"] for m in first] == [m["utterances"] for m in again]
    assert all(np.array_equal(a["mixture"], b["mixture"]) for a, b in zip(first, again))
    assert all(len({speaker_of[u] for u in m["utterances"]}) == 2 for m in first)


def test_age_brackets_count_as_children_only_when_the_whole_bracket_is_a_childs(corpora_dir):
    assert [bench.is_child(a) for a in (6, "15", "20-29", "<20", float("nan"), "")] == [
        True,
        True,
        False,
        False,
        False,
        False,
    ]
    sources = [bench.CorpusSource.parse(str(corpora_dir / "cv-fa-uz-tw"))]
    assert set(bench.speaker_ages(sources).values()) == {"adult"}  # brackets like "30-39" read without error


def test_mask_sharpness_is_zero_for_undecided_masks_and_one_for_binary_ones():
    weights = torch.rand(1, 4, 3)
    assert torch.allclose(bench.mask_sharpness(torch.full((1, 2, 4, 3), 0.5), weights), torch.zeros(1))
    binary = torch.stack([torch.ones(4, 3), torch.zeros(4, 3)])[None]
    assert torch.allclose(bench.mask_sharpness(binary, weights), torch.ones(1))
    with pytest.raises(ValueError, match="frames, freq"):
        bench.mask_sharpness(binary, torch.ones(1, 3, 4))


def test_mask_agreement_ignores_the_order_of_the_speakers():
    masks = torch.rand(2, 2, 5, 7)
    weights = torch.rand(2, 5, 7)
    assert torch.allclose(bench.mask_agreement(masks, masks.flip(1), weights), torch.ones(2))


def test_pick_returns_the_sharper_systems_separation_of_each_recording(shipped, corpora_dir):
    speakers = sorted(p for p in (corpora_dir / "msc-malayalam").iterdir() if p.is_dir())[:4]
    signals = [read_audio(str(sorted(s.glob("*.ogg"))[0]), target_sr=8000)[0][:8000] for s in speakers]  # >= 1 s
    mixtures = [signals[0] + signals[1], signals[2] + signals[3]]
    pick = bench.PickSeparator(shipped, soft_beta=5.0)
    picked = pick.separate_batch(mixtures, 2)
    head = Separator(shipped, device="cpu", inference="mask").separate_batch(mixtures, 2)
    soft = Separator(shipped, device="cpu", inference="soft-kmeans", soft_beta=5.0).separate_batch(mixtures, 2)
    for item, note in enumerate(pick.last_notes):
        chosen = soft if note["pick"] == "soft" else head
        assert (note["pick"] == "soft") == (note["soft_sharpness"] > note["mask_sharpness"])
        assert np.allclose(picked[item], chosen[item], atol=1e-5)
        assert 0.5 <= note["mask_soft_agreement"] <= 1.0


def test_the_pick_table_counts_both_corpora_of_set_b_in_its_pool(capsys):
    head, soft = "mask head", "soft k-means (beta 5)"
    frames = {}
    for key in ("b-fsdd", "b-msc"):
        rows = []
        for mixture in range(3):
            rows += [
                {"mixture": mixture, "num_speakers": 2, "system": head, "sdri": 5.0},
                {"mixture": mixture, "num_speakers": 2, "system": soft, "sdri": 4.0 + mixture},
                {"mixture": mixture, "num_speakers": 2, "system": bench.PICK, "sdri": 5.0, "pick": "mask"},
            ]
        frames[key] = pd.DataFrame(rows).assign(test_set=key + ": never trained on")
    bench.print_pick(frames, head, soft)
    lines = capsys.readouterr().out.splitlines()
    # 6 mixtures; oracle: soft wins mixture 2 (6 dB) of each corpus -> mean (5 + 5 + 6) / 3 = 5.33
    assert [line for line in lines if line.startswith("| b pooled")] == [
        "| b pooled | 6 | 5.00 | 5.00 | 5.00 | 5.33 | 0% | 33% | 67% |"
    ]
    assert not [line for line in lines if line.startswith("| b + c")]  # without set c it would repeat b pooled
