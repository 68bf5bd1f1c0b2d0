"""Feature shards: exact round trips in both formats, streaming reads, shuffled shard order."""

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from deepclust.features import compute_features, iter_features, iter_shard, write_shard

FSDD_NAMES = [
    "0_jackson_0",
    "1_theo_3",
    "2_nicolas_5",
    "3_yweweler_7",
    "4_george_9",
    "5_lucas_11",
    "6_jackson_13",
]


@pytest.fixture(scope="module")
def items(fsdd_dir):
    """Real features of FSDD two-speaker mixtures (utterances of different lengths)."""
    result = []
    for a, b in zip(FSDD_NAMES, FSDD_NAMES[1:]):
        s1, _ = sf.read(fsdd_dir / f"{a}.wav", dtype="float32")
        s2, _ = sf.read(fsdd_dir / f"{b}.wav", dtype="float32")
        n = min(len(s1), len(s2))
        sources = np.stack([s1[:n], s2[:n]])
        result.append({"mixture_id": f"{a}+{b}", **compute_features(sources.sum(0), sources)})
    return result


def _assert_same(read, written):
    assert [i["mixture_id"] for i in read] == [i["mixture_id"] for i in written]
    for r, w in zip(read, written):
        assert r["log_mag"].dtype == np.float32
        assert r["target"].dtype == np.uint8
        assert r["weight"].dtype == np.float32
        np.testing.assert_array_equal(r["log_mag"], w["log_mag"])
        np.testing.assert_array_equal(r["target"], w["target"])
        np.testing.assert_array_equal(r["weight"], w["weight"])


@pytest.mark.parametrize("fmt", ["parquet", "npz"])
def test_shard_round_trips_exactly(items, tmp_path, fmt):
    url = str(tmp_path / f"tr-00000.{fmt}")
    info = write_shard(items, url, fmt)
    assert info["num_utterances"] == len(items)
    assert len(info["sha256"]) == 64
    read = list(iter_shard(url))
    _assert_same(read, items)
    # Returned arrays are the caller's: writable, so in-place normalisation works.
    read[0]["log_mag"] -= 1.0


@pytest.mark.parametrize("fmt", ["parquet", "npz"])
def test_empty_shard_round_trips(tmp_path, fmt):
    url = str(tmp_path / f"empty.{fmt}")
    write_shard([], url, fmt)
    assert list(iter_shard(url)) == []


def test_write_is_atomic_and_leaves_no_temporary_files(items, tmp_path):
    url = tmp_path / "tr-00000.parquet"
    write_shard(items[:2], str(url), "parquet")
    write_shard(items, str(url), "parquet")  # overwrite replaces the whole file at once
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tr-00000.parquet"]
    assert len(list(iter_shard(str(url)))) == len(items)


def test_parquet_shard_streams_one_row_group_at_a_time(items, tmp_path, monkeypatch):
    url = str(tmp_path / "tr-00000.parquet")
    write_shard(items, url, "parquet", rows_per_group=2)
    assert pq.ParquetFile(url).num_row_groups == 3  # 6 utterances, 2 per group

    groups_read = []
    original = pq.ParquetFile.read_row_group

    def spy(self, index, *args, **kwargs):
        groups_read.append(index)
        return original(self, index, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", spy)
    monkeypatch.setattr(pq, "read_table", lambda *a, **k: pytest.fail("read the whole shard"))
    stream = iter_shard(url)
    assert groups_read == []  # nothing read before the first item is asked for
    first = next(stream)
    assert groups_read == [0] and first["mixture_id"] == items[0]["mixture_id"]
    next(stream)
    assert groups_read == [0]
    next(stream)
    assert groups_read == [0, 1]
    rest = list(stream)
    assert groups_read == [0, 1, 2] and len(rest) == len(items) - 3


def test_write_shard_rejects_mismatched_shapes(items, tmp_path):
    bad = dict(items[0], target=items[0]["target"][:-1])
    with pytest.raises(ValueError, match="shape"):
        write_shard([bad], str(tmp_path / "bad.parquet"), "parquet")
    with pytest.raises(ValueError, match="format"):
        write_shard(items, str(tmp_path / "bad.h5"), "hdf5")


def test_iter_features_reads_one_split_and_shuffles_shard_order(items, tmp_path):
    rows = []
    for index in range(3):
        chunk = items[2 * index : 2 * index + 2]
        url = str(tmp_path / f"tr-{index:05d}.parquet")
        write_shard(chunk, url, "parquet")
        rows += [
            {
                "mixture_id": i["mixture_id"],
                "split": "tr",
                "shard_url": url,
                "num_frames": len(i["log_mag"]),
                "num_speakers": 2,
                "status": "done",
                "error": "",
                "shard_sha256": "",
            }
            for i in chunk
        ]
    cv_url = str(tmp_path / "cv-00000.npz")
    write_shard(items[:1], cv_url, "npz")
    rows.append(
        {
            "mixture_id": "cv-only",
            "split": "cv",
            "shard_url": cv_url,
            "num_frames": 1,
            "num_speakers": 2,
            "status": "done",
            "error": "",
            "shard_sha256": "",
        }
    )
    rows.append(
        {
            "mixture_id": "broken",
            "split": "tr",
            "shard_url": None,
            "num_frames": 0,
            "num_speakers": 2,
            "status": "failed",
            "error": "x.wav: 0 samples",
            "shard_sha256": None,
        }
    )
    manifest_url = str(tmp_path / "manifest.parquet")
    pd.DataFrame(rows).to_parquet(manifest_url)

    in_order = [i["mixture_id"] for i in iter_features(manifest_url, "tr")]
    assert in_order == [i["mixture_id"] for i in items]
    assert [i["mixture_id"] for i in iter_features(manifest_url, "cv")] == [items[0]["mixture_id"]]

    orders = {
        tuple(i["mixture_id"] for i in iter_features(manifest_url, "tr", shuffle=True, seed=seed)) for seed in range(8)
    }
    assert len(orders) > 1  # different seeds visit shards in different orders
    for order in orders:
        assert sorted(order) == sorted(in_order)
        # Shards are shuffled whole: each shard's pair stays adjacent and in order.
        pairs = {order[k : k + 2] for k in range(0, 6, 2)}
        assert pairs == {tuple(in_order[k : k + 2]) for k in range(0, 6, 2)}
    same_seed = [i["mixture_id"] for i in iter_features(manifest_url, "tr", shuffle=True, seed=3)]
    assert tuple(same_seed) in orders
    assert same_seed == [i["mixture_id"] for i in iter_features(manifest_url, "tr", shuffle=True, seed=3)]
