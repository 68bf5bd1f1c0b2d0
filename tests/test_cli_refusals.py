"""A setting the run cannot use (a value out of range, a path that is not there) stops the command before any input
in one plain line naming it, exit status 2: never a traceback, never a model or an input blamed for it."""

import pytest
import torch

from deepclust.cli import main


def stopped_line(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    said = [line for line in err.splitlines() if line.startswith("deepclust ")]
    assert len(said) == 1, err
    return said[0]


@pytest.mark.parametrize(
    "flags, said",
    [
        (["--files-per-batch", "0"], "files_per_batch must be at least 1, got 0"),
        (["--speakers", "0"], "n_speakers must be at least 1, got 0"),  # was blamed on the network, exit 4
        (["--window-seconds", "-1"], "window_seconds must be > 0, got -1.0"),
        (["--retry-minutes", "-1"], "retry_seconds must be >= 0"),
    ],
)
def test_separate_refuses_a_value_out_of_range_before_any_input(flags, said, fsdd_dir, tmp_path, capsys):
    out = tmp_path / "out"
    line = stopped_line(["separate", "--input", str(fsdd_dir), "--out", str(out), *flags], capsys)
    assert line.startswith("deepclust separate: stopped: ") and said in line
    assert not out.exists()  # nothing started


@pytest.mark.parametrize(
    "flags, said",
    [
        (
            ["--speaker-counts", "2,3", "--speaker-count-weights", "1"],
            "speaker_count_weights [1.0] needs one weight per speaker count [2, 3]",
        ),
        (["--waveform-loss-weight", "2"], "waveform_loss_weight must be in [0, 1], got 2.0"),
    ],
)
def test_a_value_a_config_refuses_stops_training_in_one_plain_line_before_any_data(flags, said, tmp_path, capsys):
    out = tmp_path / "run"
    # Refused before the (missing) corpus is read: a missing corpus would say "no such folder".
    argv = ["train-dynamic", "--source", str(tmp_path / "no-such-corpus"), *flags, "--out", str(out)]
    assert stopped_line(argv, capsys) == f"deepclust train-dynamic: stopped: {said}"
    assert not out.exists()


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is usable here: --device cuda is no error")


@pytest.mark.parametrize(
    "device, said",
    [
        pytest.param("cuda", "device 'cuda': no CUDA GPU is usable here", marks=NO_CUDA),
        ("gpu", "device 'gpu' is not a device name torch knows"),
    ],
)
@pytest.mark.parametrize("command", ["separate", "train-dynamic", "reproduce"])
def test_a_device_this_machine_cannot_use_is_refused_before_any_input(
    command, device, said, fsdd_dir, tmp_path, capsys
):
    out = tmp_path / "out"
    given = {
        "separate": ["--input", str(fsdd_dir)],
        "train-dynamic": ["--source", str(fsdd_dir)],
        "reproduce": ["--corpus", "demo", "--quick", "--no-prefect"],
    }[command]
    line = stopped_line([command, *given, "--out", str(out), "--device", device], capsys)  # was a traceback
    assert line.startswith(f"deepclust {command}: ") and said in line
    assert not out.exists()


def test_a_path_that_is_not_there_is_named_in_one_line(tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    line = stopped_line(["separate", "--input", str(missing), "--out", str(tmp_path / "out")], capsys)
    assert line == f"deepclust separate: stopped: {missing}: no such file, folder or prefix"
    assert not (tmp_path / "out").exists()  # refused before the out folder's lock, which would create it
    line = stopped_line(["train-dynamic", "--source", str(missing), "--out", str(tmp_path / "run")], capsys)
    assert line == f"deepclust train-dynamic: stopped: {missing}: no such folder"
    manifest = tmp_path / "mixtures.parquet"
    for argv in (
        ["features", "--mixtures", str(manifest), "--out", str(tmp_path / "r")],
        ["train", "--features", str(manifest), "--out", str(tmp_path / "r")],
        ["mixtures", "--corpus-manifest", str(manifest), "--out", str(tmp_path / "r")],
    ):
        assert stopped_line(argv, capsys) == f"deepclust {argv[0]}: stopped: no such file or folder: {manifest}"


def test_a_manifest_of_another_stage_or_no_manifest_at_all_is_refused_naming_it(tmp_path, capsys):
    import pandas as pd

    from deepclust.storage.manifests import SCHEMAS

    corpus = tmp_path / "corpus" / "manifest.parquet"  # the corpus stage's manifest, given where others are wanted
    corpus.parent.mkdir()
    pd.DataFrame({name: ["x"] for name in SCHEMAS["corpus"].required}).to_parquet(corpus)
    line = stopped_line(["features", "--mixtures", str(corpus), "--out", str(tmp_path / "r")], capsys)
    assert line == (
        f"deepclust features: stopped: {corpus}: 'mixtures' manifest expected; this is a 'corpus' manifest "
        "(the corpus stage's)"
    )  # was a traceback listing 13 missing columns
    line = stopped_line(["train", "--features", str(corpus), "--out", str(tmp_path / "r")], capsys)
    assert line.endswith(
        "'features' manifest expected; this is a 'corpus' manifest (the corpus stage's)"
    )  # not stats.json
    notes = tmp_path / "notes.md"
    notes.write_text("not a manifest\n")
    line = stopped_line(["mixtures", "--corpus-manifest", str(notes), "--out", str(tmp_path / "r")], capsys)
    said = "'corpus' manifest expected; this file is not Parquet (or is damaged)"
    assert line == f"deepclust mixtures: stopped: {notes}: {said}"  # was pyarrow's traceback


@pytest.mark.parametrize(
    "flags, said",
    [
        (["sources"], "the sources corpus needs one or more speaker-labelled folders: --source"),  # was a TypeError
        (["folder"], "the folder corpus needs its root folder (--root)"),  # was "<cwd>/None: no such folder"
        (["wsj0"], "the wsj0 corpus needs its root folder (--root)"),
    ],
)
def test_the_corpus_stage_without_the_folders_its_kind_needs_is_refused_in_one_line(flags, said, tmp_path, capsys):
    line = stopped_line(["corpus", *flags, "--out", str(tmp_path / "r")], capsys)
    assert line.startswith(f"deepclust corpus: stopped: {said}")
    assert not (tmp_path / "r").exists()


def test_a_file_that_is_not_a_model_is_refused_naming_it(fsdd_dir, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model\n")
    line = stopped_line(
        ["separate", "--model", str(notes), "--input", str(fsdd_dir)] + ["--out", str(tmp_path / "out")],
        capsys,
    )
    assert line.startswith(f"deepclust separate: stopped: {notes}: not a deepclust model file (torch cannot read it")
    line = stopped_line(["export-model", "--model", str(notes), "--out", str(tmp_path / "x.pt")], capsys)
    assert line.startswith(f"deepclust export-model: stopped: {notes}: not a deepclust model file")


def test_listen_to_a_folder_that_is_no_evaluation_is_refused_naming_it(tmp_path, capsys):
    line = stopped_line(["listen", "--evaluation", str(tmp_path), "--out", str(tmp_path / "page")], capsys)
    assert (
        line == f"deepclust listen: stopped: {tmp_path}: not a committed evaluation stage (no _COMPLETE in {tmp_path})"
    )


def test_a_folder_with_no_audio_separates_nothing_and_says_why(tmp_path, capsys):
    from deepclust.cli import main

    empty = tmp_path / "drop"
    empty.mkdir()
    (empty / "readme.md").write_text("recordings go here\n")
    main(["separate", "--input", str(empty), "--out", str(tmp_path / "out")])  # returns: exit 0 for an empty drop
    captured = capsys.readouterr()
    assert f"nothing to separate: {empty} holds no audio file (.wav .flac" in captured.err
    assert "0 separated, 0 already done, 0 failed" in captured.out
