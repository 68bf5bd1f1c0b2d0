"""The output folder's lock on a local disk: a free lock is created exclusively (no pause, exactly one of
several racing processes wins), and an unreadable leftover lock file is taken over."""

import multiprocessing as mp
import time

from deepclust import storage
from deepclust.storage.lock import LOCK_NAME, FolderLock, LockBusyError


def test_create_exclusive_creates_once_and_refuses_an_existing_file(tmp_path):
    url = str(tmp_path / "sub" / "file.json")
    assert storage.create_exclusive(url, b"first") is True
    assert storage.create_exclusive(url, b"second") is False
    assert (tmp_path / "sub" / "file.json").read_bytes() == b"first"
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["file.json"]  # no temporary file left
    assert storage.create_exclusive("s3://bucket/file.json", b"x") is None  # no promise on object stores


def _race(out, start, results):
    start.wait()
    try:
        lock = FolderLock(out, settle_seconds=0.0).acquire()
        results.put("won")
        time.sleep(1.0)  # hold it while the others try
        lock.release()
    except LockBusyError:
        results.put("busy")


def test_of_four_processes_racing_for_a_free_local_lock_exactly_one_wins(tmp_path):
    ctx = mp.get_context("spawn")
    start, results = ctx.Barrier(4), ctx.Queue()
    processes = [ctx.Process(target=_race, args=(str(tmp_path), start, results)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    outcomes = sorted(results.get(timeout=5) for _ in processes)
    assert outcomes == ["busy", "busy", "busy", "won"]


def test_a_free_local_lock_is_taken_without_the_object_store_pause(tmp_path):
    began = time.monotonic()
    lock = FolderLock(str(tmp_path), settle_seconds=30.0).acquire()
    try:
        assert time.monotonic() - began < 10, "a free local lock waited for the settle pause"
        assert lock.owns()
    finally:
        lock.release()
    assert not (tmp_path / LOCK_NAME).exists()


def test_an_unreadable_leftover_lock_file_is_taken_over(tmp_path):
    (tmp_path / LOCK_NAME).write_bytes(b"\x00 not json")
    lock = FolderLock(str(tmp_path), settle_seconds=0.01).acquire()
    try:
        assert lock.owns()
    finally:
        lock.release()
