"""Fast checks of the Prefect layer's pieces (no server): retry policy, cache keys, result storage."""

from __future__ import annotations

import pytest

pytest.importorskip("prefect")

from deepclust.tasks.caching import StageCache, StageUnitCache, result_storage_for, stage_cache_key  # noqa: E402
from deepclust.tasks.retry import is_transient  # noqa: E402
from deepclust.tasks.stage_tasks import finish_stage, run_stage_unit  # noqa: E402

from deepclust.faults.errors import BadAudioError  # noqa: E402


class _ThrottledError(Exception):
    """Stands in for botocore's ClientError, which carries the S3 answer in ``.response``."""

    def __init__(self, code):
        super().__init__(code)
        self.response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": 503}}


class ReadTimeoutError(Exception):
    """Same name as botocore's, which is not an OSError."""


@pytest.mark.parametrize(
    "error",
    [
        OSError(5, "Input/output error"),
        TimeoutError("read timed out"),
        ConnectionResetError("reset by peer"),
        _ThrottledError("SlowDown"),
        ReadTimeoutError("s3"),
        RuntimeError("wrapped"),
    ],
)
def test_transient_faults_are_retried(error):
    if isinstance(error, RuntimeError):
        error.__cause__ = ConnectionError("dropped")
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        BadAudioError("a/b.wav", "0 samples"),
        ValueError("bad parameter"),
        FileNotFoundError("gone"),
        PermissionError("denied"),
        KeyError("column"),
        RuntimeError("a bug"),
    ],
)
def test_bad_inputs_and_bugs_are_not_retried(error):
    assert not is_transient(error)


def test_transient_cause_makes_a_bad_read_transient_and_a_full_disk_is_not():
    """A bad read caused by a timeout is transient (retried), not the file's fault: recorded as the file's fault,
    it would fail the file and its stage would be reused for ever. A full disk is not transient."""
    import errno

    wrapped = BadAudioError("s3://b/a.wav", "cannot open (read timed out)")
    wrapped.__cause__ = TimeoutError("read timed out")
    assert is_transient(wrapped)
    assert not is_transient(OSError(errno.ENOSPC, "No space left on device"))


def test_unit_task_retries_with_exponential_backoff_and_jitter():
    from deepclust.faults.transient import RETRY_BUDGET_SECONDS, retry_delays

    delays = run_stage_unit.retry_delay_seconds
    assert delays[:4] == [1, 2, 4, 8] and max(delays) <= 60  # doubling, capped at a minute
    assert run_stage_unit.retries == len(delays) == len(retry_delays())
    assert 0.5 * RETRY_BUDGET_SECONDS <= sum(delays) <= RETRY_BUDGET_SECONDS  # minutes, not seconds, of retries
    assert run_stage_unit.retry_jitter_factor == 0.5
    assert run_stage_unit.retry_condition_fn is not None
    assert run_stage_unit.persist_result is True


def test_cache_keys_follow_the_stage_content_key_and_unit():
    stage = {"run_root": "/tmp/run-a", "name": "features", "key": "0123456789abcdef", "params": {}}
    plan = {"stage": stage, "units": [], "context": {}}
    unit_key = StageUnitCache().compute_key(None, {"plan": plan, "unit": {"id": "tr-00001"}}, {})
    assert unit_key == stage_cache_key(stage, "tr-00001")
    assert "features" in unit_key and "0123456789abcdef" in unit_key and unit_key.endswith("tr-00001")
    assert StageUnitCache().compute_key(None, {"plan": plan, "unit": {"id": "tr-00002"}}, {}) != unit_key
    other_key = {**stage, "key": "fedcba9876543210"}
    assert stage_cache_key(other_key, "tr-00001") != unit_key
    other_root = {**stage, "run_root": "/tmp/run-b"}
    assert stage_cache_key(other_root, "tr-00001") != unit_key  # two run roots never share results
    assert StageCache().compute_key(None, {"plan": plan, "unit_results": []}, {}) == stage_cache_key(stage)
    assert isinstance(finish_stage.cache_policy, StageCache)


def test_results_persist_under_the_run_root(tmp_path):
    assert result_storage_for(str(tmp_path)) == tmp_path / ".prefect-results"
    assert result_storage_for("s3://bucket/run") is None  # Prefect's default storage


def test_report_figures_are_inlined_for_the_ui(tmp_path):
    """The UI cannot open the run folder: the summary artifact carries its PNGs as data URIs."""
    import base64

    from deepclust.tasks.artifacts import inline_images

    (tmp_path / "figures").mkdir()
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(200))
    (tmp_path / "figures" / "masks.png").write_bytes(png)
    report = "# r\n\n![Masks](figures/masks.png)\n\n![Missing](figures/none.png)\n"
    inlined = inline_images(report, str(tmp_path))
    encoded = inlined.split("![Masks](data:image/png;base64,", 1)[1].split(")", 1)[0]
    assert base64.b64decode(encoded) == png
    assert "![Missing](figures/none.png)" in inlined
