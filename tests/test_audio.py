"""Audio I/O: every format we promise reads, resampling is anti-aliased, every bad case names file and reason."""

import numpy as np
import pytest
import soundfile as sf

from deepclust.audio import check_waveform, read_audio, resample, write_audio
from deepclust.faults.errors import BadAudioError


def test_reads_wav_flac_ogg_and_nist_sphere(tmp_path, fsdd_dir, librispeech_dir):
    speech, sr = read_audio(fsdd_dir / "0_george_0.wav")
    assert sr == 8000 and speech.dtype == np.float32 and speech.ndim == 1 and len(speech) > 1000
    for suffix, fmt, subtype in ((".flac", "FLAC", "PCM_16"), (".sph", "NIST", "PCM_16"), (".wv1", "NIST", "PCM_16")):
        path = tmp_path / f"utt{suffix}"
        sf.write(path, speech, sr, format=fmt, subtype=subtype)
        again, again_sr = read_audio(path)
        assert again_sr == sr
        np.testing.assert_allclose(again, speech, atol=2 / 32768)
    ogg, ogg_sr = read_audio(librispeech_dir / "198-209-0000.ogg")
    assert ogg_sr == 22050 and len(ogg) > 22050


def test_stereo_is_downmixed_and_kept_on_request(tmp_path, fsdd_dir):
    left, sr = read_audio(fsdd_dir / "0_george_0.wav")
    stereo = np.stack([left, 0.5 * left], axis=1)
    sf.write(tmp_path / "st.wav", stereo, sr, subtype="FLOAT")
    mono, _ = read_audio(tmp_path / "st.wav")
    np.testing.assert_allclose(mono, 0.75 * left, atol=1e-6)
    both, _ = read_audio(tmp_path / "st.wav", mono=False)
    assert both.shape == (2, len(left))


def test_resampling_16k_to_8k_removes_content_above_the_new_nyquist():
    sr = 16000
    t = np.arange(sr) / sr
    in_band = np.sin(2 * np.pi * 1000 * t)
    alias_risk = np.sin(2 * np.pi * 5000 * t)  # above 4 kHz: must vanish, not fold down to 3 kHz
    out = resample(in_band + alias_risk, sr, 8000)
    assert out.shape == (8000,)
    spectrum = np.abs(np.fft.rfft(out[1000:-1000] * np.hanning(6000)))
    freqs = np.fft.rfftfreq(6000, 1 / 8000)
    kept = spectrum[np.argmin(np.abs(freqs - 1000))]
    folded = spectrum[np.argmin(np.abs(freqs - 3000))]
    assert 20 * np.log10(kept / folded) > 60


def test_resampling_round_trip_keeps_speech(fsdd_dir):
    speech, sr = read_audio(fsdd_dir / "3_jackson_7.wav")
    back = resample(resample(speech, 8000, 16000), 16000, 8000)
    error = back[200:-200] - speech[200:-200]
    assert 10 * np.log10(np.sum(speech**2) / np.sum(error**2)) > 30


def test_read_with_target_rate(librispeech_dir):
    x, sr = read_audio(librispeech_dir / "3436-172162-0000.ogg", target_sr=8000)
    assert sr == 8000
    raw, raw_sr = read_audio(librispeech_dir / "3436-172162-0000.ogg")
    assert abs(len(x) - len(raw) * 8000 / raw_sr) <= 1


@pytest.mark.parametrize("case", ["missing", "not_audio", "truncated", "empty", "nan", "inf"])
def test_bad_audio_raises_one_error_naming_file_and_reason(tmp_path, fsdd_dir, case):
    path = tmp_path / f"{case}.wav"
    if case == "not_audio":
        path.write_text("this is a text file, not audio\n")
    elif case == "truncated":
        path.write_bytes((fsdd_dir / "0_george_0.wav").read_bytes()[:30])
    elif case == "empty":
        sf.write(path, np.zeros(0, dtype=np.float32), 8000)
    elif case in ("nan", "inf"):
        data = np.zeros(800, dtype=np.float32)
        data[100] = np.nan if case == "nan" else np.inf
        sf.write(path, data, 8000, subtype="FLOAT")
    with pytest.raises(BadAudioError) as caught:
        read_audio(path)
    error = caught.value
    assert error.path == str(path) and str(error).startswith(str(path) + ": ")
    expected = {
        "missing": "no such file",
        "not_audio": "text file named .wav, not audio",
        "truncated": "truncated WAV: the file ends after 30 bytes, before its audio data begins",
        "empty": "0 samples",
        "nan": "non-finite",
        "inf": "non-finite",
    }[case]
    assert expected in error.reason


@pytest.mark.parametrize(
    "array, reason",
    [
        (np.zeros((2, 3, 4)), "wrong shape"),
        (np.zeros((0, 100)), "no channels"),
        (np.zeros(0), "0 samples"),
        (np.array(["a", "b"]), "not numeric"),
    ],
)
def test_wrong_shaped_arrays_are_bad_audio(array, reason):
    with pytest.raises(BadAudioError, match=reason):
        check_waveform(array, "in-memory")


def test_bad_audio_error_pickles_for_process_pools():
    import pickle

    error = pickle.loads(pickle.dumps(BadAudioError("a/b.flac", "0 samples")))
    assert (error.path, error.reason, str(error)) == ("a/b.flac", "0 samples", "a/b.flac: 0 samples")


def test_write_is_atomic_and_round_trips(tmp_path, fsdd_dir):
    speech, sr = read_audio(fsdd_dir / "0_george_0.wav")
    write_audio(tmp_path / "out" / "x.wav", speech, sr)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["x.wav"]  # no temporary left behind
    again, _ = read_audio(tmp_path / "out" / "x.wav")
    np.testing.assert_allclose(again, speech, atol=1.5 / 32768)
