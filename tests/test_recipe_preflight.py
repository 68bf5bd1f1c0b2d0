"""Bad input stops a run before its first stage: a WSJ0 root that lacks files the mix lists name is refused with
the first missing files and their count, a list in the wrong format with its line, a missing list by its name."""

from __future__ import annotations

import pytest
from wsj0_fixtures import LISTS, write_lists

from deepclust import cli
from deepclust.recipe.preflight import SHOWN_MISSING, RecipeInputError, check_inputs
from deepclust.recipe.resolve import resolve_recipe
from deepclust.stages.corpus import CorpusConfig


def wsj0_config(root, lists, run_root="runs/x"):
    return resolve_recipe("paper", str(run_root), CorpusConfig(name="wsj0", root=str(root)), mix_lists=str(lists))


def test_complete_lists_on_a_complete_tree_pass(wsj0_tree, tmp_path):
    check_inputs(wsj0_config(wsj0_tree, write_lists(tmp_path / "lists")))


def test_files_the_tree_lacks_stop_the_command_before_any_stage(wsj0_tree, tmp_path, capsys):
    lists = dict(LISTS)
    lists["mix_2_spk_tr"] = LISTS["mix_2_spk_tr"] + [
        "wsj0/si_tr_s/01t/01to0399.wv1 1.0 wsj0/si_tr_s/02c/02co0398.wv1 -1.0",
        "wsj0/si_tr_s/01t/01to0399.wv1 0.2 wsj0/si_tr_s/40a/40ao0300.wv1 -0.2",
    ]  # listed twice, counted once
    folder = write_lists(tmp_path / "lists", lists)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stop:
        cli.main(
            [
                "reproduce",
                "--corpus",
                "wsj0",
                "--wsj0-root",
                str(wsj0_tree),
                "--mix-lists",
                str(folder),
                "--out",
                str(out),
                "--no-prefect",
            ]
        )
    said = capsys.readouterr().err
    assert stop.value.code == 2
    assert "2 of the 21 files the mix lists name are not under --wsj0-root" in said, said
    assert "wsj0/si_tr_s/01t/01to0399.wv1\n  wsj0/si_tr_s/02c/02co0398.wv1" in said
    assert not out.exists()  # no stage ran


def test_many_missing_files_are_named_up_to_a_limit_and_counted(tmp_path):
    (tmp_path / "wsj0" / "si_tr_s").mkdir(parents=True)  # a tree without a single utterance
    lists = write_lists(tmp_path / "lists")
    with pytest.raises(RecipeInputError) as error:
        check_inputs(wsj0_config(tmp_path, lists))
    message = str(error.value)
    assert message.startswith("19 of the 19 files") and f"... and {19 - SHOWN_MISSING} more" in message
    assert message.count("wsj0/si_") == SHOWN_MISSING


def test_a_list_in_the_wrong_format_is_named_with_its_line(wsj0_tree, tmp_path):
    broken = dict(LISTS, mix_2_spk_cv=[LISTS["mix_2_spk_cv"][0], "wsj0/si_tr_s/01t/01to0300.wv1,1.0,x.wv1,-1.0"])
    with pytest.raises(RecipeInputError, match=r"mix_2_spk_cv\.txt:2: expected 'path snr path snr"):
        check_inputs(wsj0_config(wsj0_tree, write_lists(tmp_path / "a", broken)))
    mixed = dict(LISTS, mix_2_spk_tt=[*LISTS["mix_2_spk_tt"], LISTS["mix_3_spk_tt"][0]])
    with pytest.raises(RecipeInputError, match=r"mix_2_spk_tt\.txt:3: 3 sources, but line 1 has 2"):
        check_inputs(wsj0_config(wsj0_tree, write_lists(tmp_path / "b", mixed)))


def test_a_missing_three_speaker_list_says_how_to_leave_that_test_out(wsj0_tree, tmp_path):
    folder = write_lists(tmp_path / "lists", {k: v for k, v in LISTS.items() if k != "mix_3_spk_tt"})
    with pytest.raises(RecipeInputError) as error:
        check_inputs(wsj0_config(wsj0_tree, folder))
    assert "mix_3_spk_tt.txt" in str(error.value) and "--set mixtures.test_speaker_counts=2" in str(error.value)
    two_only = resolve_recipe(
        "paper",
        "runs/x",
        CorpusConfig(name="wsj0", root=str(wsj0_tree)),
        mix_lists=str(folder),
        overrides=["mixtures.test_speaker_counts=2"],
    )
    check_inputs(two_only)


def test_a_wsj0_run_without_its_root_is_refused(tmp_path):
    with pytest.raises(RecipeInputError, match="--wsj0-root"):
        check_inputs(resolve_recipe("paper", "runs/x", CorpusConfig(name="wsj0")))
    with pytest.raises(RecipeInputError, match="no such folder"):
        check_inputs(resolve_recipe("paper", "runs/x", CorpusConfig(name="wsj0", root=str(tmp_path / "nowhere"))))


def test_a_sources_run_without_its_folders_is_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    for flags, said in (
        ([], "the sources corpus needs one or more speaker-labelled folders: --source"),  # was a TypeError traceback
        (["--source", str(tmp_path / "nowhere")], f"{tmp_path / 'nowhere'}: no such folder (a --source"),
    ):
        with pytest.raises(SystemExit) as stop:
            cli.main(["reproduce", "--corpus", "sources", *flags, "--quick", "--no-prefect", "--out", str(out)])
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.strip().startswith(f"deepclust reproduce: {said}")
        assert not out.exists()
