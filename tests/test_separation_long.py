"""Long recordings in overlapping windows: block reading, speaker alignment, crossfade, bounded outputs."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from archive_fixtures import FSDD_SPEAKERS

from deepclust.audio import read_audio
from deepclust.audio.blocks import BlockReader
from deepclust.features.stft import stft
from deepclust.metrics.bss_eval import sdr_improvement
from deepclust.model.checkpoint import load_model
from deepclust.separation.long import separate_long
from deepclust.separation.separator import Separator
from deepclust.separation.stitching import align_permutation
from deepclust.separation.windows import WindowConfig, plan_windows

RATE = 8000


class IbmEmbeddingSeparator(Separator):
    """A stand-in for a *trained* network: training one is far too slow for CI, so the embeddings come
    from the true sources' ideal binary mask (one-hot of the dominant source per bin).

    Everything after the embeddings is the real code under test: batching, k-means, masks, inverse STFT,
    and the stitching of ``separate_long``. Each window's embeddings are turned by a different random
    rotation, so k-means centroids mean nothing across windows and the speaker order of every window
    must be recovered from the overlap, as with a network whose embedding space drifts.
    """

    def __init__(self, model, mixture: np.ndarray, sources: np.ndarray, seed: int = 0):
        super().__init__(model, device="cpu", kmeans="sklearn")
        self.mixture, self.sources = mixture, sources
        self.rng = np.random.default_rng(seed)

    def _offset(self, window: np.ndarray) -> int:
        """Where an (8 kHz, unresampled, hence bit-exact) window sits in the mixture."""
        first = int(np.flatnonzero(window)[0])
        for candidate in np.flatnonzero(self.mixture == window[first]) - first:
            if 0 <= candidate and np.array_equal(self.mixture[candidate : candidate + len(window)], window):
                return int(candidate)
        raise AssertionError("window not found in the mixture")

    def _ibm_embeddings(self, window: np.ndarray, frames: int) -> torch.Tensor:
        offset = self._offset(window)
        sources = torch.from_numpy(np.ascontiguousarray(self.sources[:, offset : offset + len(window)]))
        dominant = stft(sources, self.stft_config).abs().argmax(0)  # (frames, freq)
        k = self.sources.shape[0]
        rotation, _ = np.linalg.qr(self.rng.normal(size=(k + 2, k + 2)))
        one_hot = torch.nn.functional.one_hot(dominant, k + 2).float()
        embedded = one_hot @ torch.from_numpy(rotation.astype(np.float32))  # (frames, freq, k + 2)
        return torch.nn.functional.pad(embedded, (0, 0, 0, 0, 0, frames - embedded.shape[0]))

    def embed_batch(self, waveforms, embeddings: bool = True, **heads) -> dict:
        batch = super().embed_batch(waveforms, embeddings, **heads)
        frames = batch["embeddings"].shape[1]
        batch["embeddings"] = torch.stack(
            [self._ibm_embeddings(np.asarray(w, dtype=np.float32), frames) for w in waveforms]
        )
        return batch


def speaker_track(fsdd_dir, speaker: str, seconds: float, seed: int) -> np.ndarray:
    """One FSDD speaker's digits back to back with short pauses, ``seconds`` long."""
    rng = np.random.default_rng(seed)
    pieces, total = [], 0
    while total < seconds * RATE:
        clip = read_audio(fsdd_dir / f"{rng.integers(10)}_{speaker}_{rng.integers(50)}.wav")[0]
        clip = clip / (np.sqrt(np.mean(clip**2)) + 1e-9) * 0.05
        pause = np.zeros(int(rng.uniform(0.02, 0.15) * RATE), dtype=np.float32)
        pieces += [clip, pause]
        total += len(clip) + len(pause)
    return np.concatenate(pieces)[: int(seconds * RATE)].astype(np.float32)


@pytest.fixture(scope="module")
def long_mixture(tmp_path_factory, fsdd_dir):
    """90 s of two FSDD speakers talking at once; the true sources are known."""
    sources = np.stack([speaker_track(fsdd_dir, "jackson", 90, 1), speaker_track(fsdd_dir, "theo", 90, 2)])
    path = tmp_path_factory.mktemp("long") / "mixture.wav"
    sf.write(path, sources.sum(0), RATE, subtype="FLOAT")
    mixture = sf.read(path, dtype="float32")[0]
    return path, mixture, sources


def test_stitched_output_matches_one_piece_and_keeps_each_speaker_on_one_track(long_mixture, tiny_model_url, tmp_path):
    path, mixture, sources = long_mixture
    separator = IbmEmbeddingSeparator(load_model(tiny_model_url), mixture, sources)
    config = WindowConfig(window_seconds=10.0, overlap_seconds=2.0, windows_per_batch=4)
    outputs = [str(tmp_path / f"s{k}.wav") for k in (1, 2)]
    info = separate_long(separator, str(path), outputs, 2, config)
    stitched = np.stack([sf.read(p, dtype="float32")[0] for p in outputs])
    assert stitched.shape == sources.shape and info["windows"] == 11
    # The test exercises alignment: k-means numbered the speakers differently in some windows.
    assert info["reordered_windows"] > 0 and info["aligned_by_centroids"] == 0

    one_piece = separator.separate(mixture, 2)
    sdri_stitched = sdr_improvement(sources, stitched, mixture)["sdri"].mean()
    sdri_one_piece = sdr_improvement(sources, one_piece, mixture)["sdri"].mean()
    assert sdri_one_piece > 10  # the stand-in separates well, so a flip would cost many dB
    print(f"SDRi stitched {sdri_stitched:.2f} dB, one piece {sdri_one_piece:.2f} dB")
    assert sdri_stitched > sdri_one_piece - 1.0, (sdri_stitched, sdri_one_piece)

    # Track identity: in every window, each output correlates best with the same true source.
    window, hop = config.samples(RATE)
    for w in plan_windows(len(mixture), window, hop):
        span = slice(w.start, w.end)
        correlation = stitched[:, span] @ sources[:, span].T  # (outputs, sources)
        assert list(correlation.argmax(1)) == [0, 1] or list(correlation.argmax(1)) == [1, 0]
        assert list(correlation.argmax(1)) == list((stitched @ sources.T).argmax(1)), w


def test_block_reader_equals_whole_file_resampling(tmp_path, librispeech_dir):
    """22.05 kHz stereo read in blocks at 8 kHz equals downmixing and resampling the whole file."""
    stereo, sr = read_audio(sorted(librispeech_dir.glob("*.ogg"))[0], mono=False)
    stereo = np.concatenate([stereo, 0.5 * stereo[:, ::-1]])[:, : 5 * sr]
    path = tmp_path / "stereo.flac"
    sf.write(path, stereo.T, sr, subtype="PCM_24")
    whole, _ = read_audio(path, target_sr=RATE)
    reader = BlockReader(str(path), RATE, context_seconds=0.05)
    assert reader.n_samples == len(whole) and reader.channels == 2
    for start, end in [(0, 1000), (12345, 20000), (31000, len(whole))]:
        np.testing.assert_allclose(reader.read(start, end), whole[start:end], atol=1e-5)
    reader.close()


def test_one_window_equals_the_separator(tmp_path, tiny_model_url, fsdd_dir):
    mixture = 0.5 * np.concatenate([read_audio(fsdd_dir / f"{d}_{FSDD_SPEAKERS[d % 6]}_3.wav")[0] for d in range(4)])
    path = tmp_path / "short.wav"
    sf.write(path, mixture, RATE, subtype="FLOAT")
    separator = Separator(tiny_model_url, device="cpu")
    outputs = [str(tmp_path / f"s{k}.wav") for k in (1, 2, 3)]
    info = separate_long(separator, str(path), outputs, 3, WindowConfig(window_seconds=30.0, overlap_seconds=2.0))
    assert info["windows"] == 1
    written = np.stack([sf.read(p, dtype="float32")[0] for p in outputs])
    np.testing.assert_allclose(written, separator.separate(mixture.astype(np.float32), 3), atol=1.5 / 32768)


def test_windows_cover_the_recording_and_overlap_only_neighbours():
    for n in (1, 79, 80, 81, 150, 1000, 1001):
        windows = plan_windows(n, 80, 60)
        assert windows[0].start == 0 and windows[-1].end == n
        for previous, current in zip(windows, windows[1:]):
            assert current.start == previous.start + 60 and previous.end - current.start >= 20
        for before, after in zip(windows, windows[2:]):
            assert after.start >= before.end
        assert all(w.end - w.context_start == min(n, 80) for w in windows)


def test_alignment_uses_the_overlap_and_falls_back_to_centroids_in_silence():
    rng = np.random.default_rng(0)
    previous = rng.normal(size=(3, 400))
    current = previous[[2, 0, 1]] + 0.1 * rng.normal(size=(3, 400))
    assert align_permutation(previous, current) == ((1, 2, 0), "overlap")
    silent = np.zeros((3, 400))
    centroids = np.eye(3)
    assert align_permutation(silent, silent, centroids, centroids[[1, 2, 0]]) == ((2, 0, 1), "centroids")


def test_bad_input_leaves_no_output(tmp_path, tiny_model_url):
    path = tmp_path / "silent.wav"
    sf.write(path, np.zeros(3 * RATE, dtype=np.float32), RATE)
    outputs = [str(tmp_path / "out" / f"s{k}.wav") for k in (1, 2)]
    with pytest.raises(ValueError, match="all-silent"):
        separate_long(
            Separator(tiny_model_url, device="cpu"),
            str(path),
            outputs,
            2,
            WindowConfig(window_seconds=1.0, overlap_seconds=0.25),
        )
    assert not any(p.is_file() for p in (tmp_path / "out").rglob("*"))


def test_window_config_rejects_overlaps_that_reach_past_a_neighbour():
    with pytest.raises(ValueError, match="overlap_seconds"):
        WindowConfig(window_seconds=4.0, overlap_seconds=3.0)


def test_a_short_file_is_decoded_once_and_reads_the_same(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "short.flac"
    sf.write(path, rng.uniform(-0.5, 0.5, size=(3 * 16000, 2)).astype(np.float32), 16000)
    fresh = BlockReader(str(path), RATE)
    expected = fresh.read(0, fresh.n_samples)
    fresh.close()
    reader = BlockReader(str(path), RATE)

    def no_second_decode(*args, **kwargs):
        raise AssertionError("the file was decoded a second time")

    reader.file.read = no_second_decode  # the first look kept the whole (one-block) file
    np.testing.assert_array_equal(reader.read(0, reader.n_samples), expected)
    reader.close()


def test_an_open_reader_goes_on_to_the_long_path_with_its_channel(tmp_path, tiny_model_url):
    rng = np.random.default_rng(4)
    take = rng.uniform(-0.3, 0.3, size=6 * RATE).astype(np.float32)
    path = tmp_path / "two-channel.wav"
    sf.write(path, np.stack([take, 0.2 * take[::-1]], axis=1), RATE)
    config = WindowConfig(window_seconds=2.0, overlap_seconds=0.5)
    separator = Separator(tiny_model_url, device="cpu")
    by_path = [str(tmp_path / "a" / f"s{k}.wav") for k in (1, 2)]
    by_reader = [str(tmp_path / "b" / f"s{k}.wav") for k in (1, 2)]
    info = separate_long(separator, str(path), by_path, 2, config, channel=2)
    reader = BlockReader(str(path), separator.sample_rate, config.context_seconds, channel=2)
    again = separate_long(separator, reader, by_reader, 2, config)
    assert info["downmix"] == again["downmix"] and "channel 2" in info["downmix"]
    assert info["windows"] == again["windows"] > 1
    for a, b in zip(by_path, by_reader):
        np.testing.assert_array_equal(sf.read(a)[0], sf.read(b)[0])
