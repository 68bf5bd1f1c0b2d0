"""The command line's runner seam: ``deepclust.cli.main(argv, runners)`` is the library's command line, and the
``deepclust`` console script (``deepclust.flows.cli.main``) hands it the Prefect paths. Fakes stand in for the runs."""

from __future__ import annotations

import pytest

from deepclust import cli
from deepclust.cli import Runners
from deepclust.recipe import reproduce as reproduce_module
from deepclust.recipe.config import ReproduceConfig

SUMMARY = {
    "failed_inputs": [],
    "message": "completed",
    "separated": 1,
    "already_done": 0,
    "failed": 0,
    "real_time_factor": 10.0,
    "manifest_url": "out/manifest.parquet",
}


def _unexpected(*args, **kwargs):
    raise AssertionError("this runner must not be called")


@pytest.mark.parametrize(
    "command, flag", [("separate", ["--prefect"]), ("separate-archive", ["--dask-address", "local"])]
)
def test_prefect_flags_without_runners_exit_2_naming_the_deepclust_command(command, flag, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(
            [
                command,
                "--model",
                str(tmp_path / "model.pt"),
                "--input",
                str(tmp_path),
                "--out",
                str(tmp_path / "out"),
                *flag,
            ]
        )
    assert stop.value.code == 2
    message = capsys.readouterr().err
    assert f"`deepclust {command}`" in message and flag[0] in message and "python -m deepclust" in message


def test_prefect_flags_go_to_the_separate_runner_as_one_job_config(tmp_path):
    from deepclust.archive.config import ArchiveJobConfig
    from deepclust.separation.windows import WindowConfig

    calls = []

    def separate_archive_flow(model_url, input_url, out_url, config, **options):
        calls.append((model_url, input_url, out_url, config, options))
        return SUMMARY

    cli.main(
        [
            "separate",
            "--model",
            "m.pt",
            "--input",
            str(tmp_path),  # (a folder that is there: an --input that is not is refused before the flow)
            "--out",
            "out",
            "--dask-address",
            "tcp://h:8786",
            "--kmeans",
            "torch",
            "--window-seconds",
            "7",
            "--batch-size",
            "3",
            "--retry-minutes",
            "2",
            "--workers",
            "2",
            "--splits",
            "all",
            "--channel",
            "1",
            "--break-lock",
            "--listen",
            "0",
        ],
        runners=Runners(reproduce=_unexpected, separate_archive_flow=separate_archive_flow),
    )
    ((model_url, input_url, out_url, config, options),) = calls
    assert (model_url, input_url, out_url) == ("m.pt", str(tmp_path), "out")
    assert options == {"dask_address": "tcp://h:8786", "max_workers": 2}
    assert config == ArchiveJobConfig(
        kmeans="torch",
        window=WindowConfig(window_seconds=7, windows_per_batch=3),
        retry_seconds=120,
        splits=None,
        channel=1,
        break_lock=True,
        listen=0,
    )


def test_a_channel_counted_from_0_is_refused_before_any_runner_with_exit_2(tmp_path, capsys):
    runners = Runners(reproduce=_unexpected, separate_archive_flow=_unexpected)
    for given in (None, runners):
        with pytest.raises(SystemExit) as stop:
            cli.main(
                [
                    "separate",
                    "--model",
                    "m.pt",
                    "--input",
                    "in",
                    "--out",
                    str(tmp_path / "out"),
                    "--channel",
                    "0",
                    *(["--prefect"] if given else []),
                ],
                runners=given,
            )
        assert stop.value.code == 2
        assert "channel counts channels from 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _fake_record(regression=None) -> dict:
    return {"history": {"regression": regression} if regression else {}, "report": "report.md", "run_json": "run.json"}


@pytest.fixture
def by_hand(monkeypatch):
    """The library's reproduce replaced by a recorder (no stage runs); returns the configs it was given."""
    configs = []
    monkeypatch.setattr(
        reproduce_module, "reproduce", lambda config, **options: configs.append(config) or _fake_record()
    )
    monkeypatch.setattr(reproduce_module, "print_summary", lambda record: None)
    return configs


def test_reproduce_without_runners_runs_the_stages_by_hand(by_hand, tmp_path):
    cli.main(["reproduce", "--quick", "--out", str(tmp_path / "run")])
    assert len(by_hand) == 1 and isinstance(by_hand[0], ReproduceConfig)
    assert by_hand[0].run_root == str(tmp_path / "run")


def test_reproduce_with_runners_goes_through_the_flow_unless_no_prefect(by_hand, tmp_path):
    flow_calls = []

    def reproduce(config, **options):
        flow_calls.append(options)
        return _fake_record()

    runners = Runners(reproduce=reproduce, separate_archive_flow=_unexpected)
    cli.main(["reproduce", "--quick", "--workers", "3", "--out", str(tmp_path / "run")], runners=runners)
    assert by_hand == [] and flow_calls[0]["max_workers"] == 3 and flow_calls[0]["regression_margin_db"] == 0.5
    cli.main(["reproduce", "--quick", "--no-prefect", "--out", str(tmp_path / "run")], runners=runners)
    assert len(by_hand) == 1 and len(flow_calls) == 1


def test_a_quality_regression_exits_1_on_either_path(monkeypatch, tmp_path):
    monkeypatch.setattr(reproduce_module, "print_summary", lambda record: None)
    monkeypatch.setattr(
        reproduce_module, "reproduce", lambda config, **options: _fake_record({"message": "2 dB below the best run"})
    )
    runners = Runners(
        reproduce=lambda config, **options: _fake_record({"message": "worse"}), separate_archive_flow=_unexpected
    )
    for given in (None, runners):
        with pytest.raises(SystemExit) as stop:
            cli.main(["reproduce", "--quick", "--out", str(tmp_path / "run")], runners=given)
        assert stop.value.code == 1


def test_the_console_script_hands_the_library_its_prefect_runners_when_prefect_is_installed(monkeypatch):
    from deepclust.flows import cli as flows_cli

    given = []
    monkeypatch.setattr(cli, "main", lambda argv=None, runners=None: given.append(runners))
    monkeypatch.setattr(flows_cli, "prefect_available", lambda: True)
    flows_cli.main(["compare", "a", "b"])
    monkeypatch.setattr(flows_cli, "prefect_available", lambda: False)
    flows_cli.main(["compare", "a", "b"])
    assert given == [flows_cli.RUNNERS, None]


def test_the_prefect_separate_runner_hands_the_flow_the_job_config_whole(monkeypatch):
    pytest.importorskip("prefect")

    from deepclust.flows import cli as flows_cli
    from deepclust.flows import separate_archive as flows_separate_archive

    from deepclust.archive.config import ArchiveJobConfig

    calls = []
    monkeypatch.setattr(
        flows_separate_archive,
        "separate_archive_flow",
        lambda *args, **options: calls.append((args, options)) or SUMMARY,
    )
    config = ArchiveJobConfig(kmeans="torch", retry_seconds=90)
    assert flows_cli.RUNNERS.separate_archive_flow("m.pt", "in", "out", config, dask_address="local") is SUMMARY
    ((args, options),) = calls
    assert args == ("m.pt", "in", "out", config)
    assert options == {"dask_address": "local", "max_workers": None}


@pytest.mark.parametrize(
    "flags, said",
    [
        (["--input", "no-such-folder"], "no-such-folder: no such file, folder or prefix"),
        (["--device", "gpu"], "device 'gpu' is not a device name torch knows"),
    ],
)
def test_what_stops_any_input_is_refused_before_the_prefect_flow_starts(flags, said, tmp_path, capsys):
    # The runner stands for the flow (a temporary Prefect server: a minute, and Prefect's traceback in its log).
    argv = ["separate", "--input", str(tmp_path), "--out", str(tmp_path / "out"), "--prefect", *flags]
    with pytest.raises(SystemExit) as stop:
        cli.main(argv, runners=Runners(reproduce=_unexpected, separate_archive_flow=_unexpected))
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.splitlines()[-1].startswith(f"deepclust separate: stopped: {said}")
