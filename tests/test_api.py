"""The Python front door (``deepclust.separate``, ``load_model``, ``Separator``) on the embedded real example: cheap to
import, the command's own samples, any rate in and 8 kHz out, bad audio named, and its docstring examples run."""

import doctest
import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import deepclust
from deepclust import api, pretrained
from deepclust.audio import read_audio, resample
from deepclust.evaluation import evaluate_mixture
from deepclust.evaluation.real_example import example_paths
from deepclust.faults.errors import BadAudioError
from deepclust.separation.separator import Separator

REPO = Path(__file__).resolve().parents[1]
MIXTURE = example_paths()["mixture"]  # two held-out LibriSpeech readers, 5 s at 8 kHz
# The shipped model separates this example far above an untrained model's ~0 dB (tests/test_pretrained.py).
MIN_EXAMPLE_SDRI_DB = 4.0


def fresh_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_import_deepclust_loads_neither_torch_nor_prefect():
    probe = "import sys, deepclust; print(deepclust.__version__, [m for m in ('torch', 'prefect') if m in sys.modules])"
    result = fresh_python(probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [deepclust.__version__, "[]"]


def test_separate_works_in_a_fresh_interpreter():
    result = fresh_python(f"import deepclust; print(deepclust.separate({MIXTURE!r}).shape)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(2, 40000)"


def test_separate_returns_the_samples_deepclust_separate_writes(tmp_path):
    # Both in fresh interpreters, so both run with the same default thread count.
    saved = tmp_path / "voices.npy"
    by_python = fresh_python(f"import deepclust, numpy; numpy.save({str(saved)!r}, deepclust.separate({MIXTURE!r}))")
    assert by_python.returncode == 0, by_python.stderr
    by_command = subprocess.run(
        [sys.executable, "-m", "deepclust", "separate", "--input", MIXTURE, "--out", str(tmp_path / "out")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert by_command.returncode == 0, by_command.stderr
    written = np.stack([read_audio(tmp_path / "out" / "mixture" / f"s{k}.wav")[0] for k in (1, 2)])
    voices = np.load(saved)
    assert voices.dtype == np.float32 and voices.shape == written.shape == (2, 40000)
    np.testing.assert_array_equal(voices, written)


def test_an_array_at_16_khz_comes_back_separated_at_8_khz():
    mixture, rate = sf.read(MIXTURE, dtype="float32")
    voices = deepclust.separate(resample(mixture, rate, 16000), sample_rate=16000)
    assert voices.shape == (2, mixture.shape[0]) and voices.dtype == np.float32
    sources = np.stack([read_audio(example_paths()[name])[0] for name in ("s1", "s2")])
    scores = evaluate_mixture(mixture, sources, voices)
    assert np.mean(scores["sdri"]) > MIN_EXAMPLE_SDRI_DB, scores


def test_an_array_gives_what_its_file_gives_and_two_equal_channels_what_one_gives():
    mixture, rate = sf.read(MIXTURE, dtype="float32")
    from_file = deepclust.separate(MIXTURE)
    np.testing.assert_array_equal(deepclust.separate(mixture, sample_rate=rate), from_file)
    np.testing.assert_array_equal(deepclust.separate(np.stack([mixture, mixture]), sample_rate=rate), from_file)


@pytest.mark.parametrize(
    "audio, sample_rate, error, words",
    [
        (np.zeros(8000, np.float32), None, ValueError, "needs its sample_rate"),
        (np.zeros(8000, np.int16), 8000, TypeError, "float samples"),
        (np.zeros((8000, 2), np.float32), 8000, ValueError, "(samples, channels)"),
        (MIXTURE, 8000, ValueError, "a file's rate"),
        (np.zeros(8000, np.float32), "8k", ValueError, "sample_rate must be a positive number of Hz, got '8k'"),
        (np.zeros(8000, np.float32), 0, ValueError, "sample_rate must be a positive number of Hz, got 0"),
    ],
)
def test_arguments_that_do_not_fit_are_refused_saying_why(audio, sample_rate, error, words):
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        deepclust.separate(audio, sample_rate=sample_rate)


@pytest.mark.parametrize("speakers", [0, 2.5, "two"])
def test_a_speaker_count_that_is_no_whole_number_above_zero_is_refused_naming_it(speakers):
    with pytest.raises(ValueError, match=f"speakers must be 1 or more, got {speakers!r}"):
        deepclust.separate(MIXTURE, speakers=speakers)


def test_an_empty_array_is_bad_audio_named_as_the_array_not_a_file_header():
    with pytest.raises(BadAudioError) as raised:
        deepclust.separate(np.zeros(0, np.float32), sample_rate=8000)
    assert raised.value.path == "<array>" and raised.value.reason == "0 samples: the array is empty"


def test_silent_audio_raises_bad_audio_error_naming_the_array():
    with pytest.raises(BadAudioError) as raised:
        deepclust.separate(np.zeros(16000, np.float32), sample_rate=16000)
    assert raised.value.path == "<array>" and "silent" in raised.value.reason
    assert "deepclust-separate-" not in str(raised.value)  # never the scratch file's name


def test_a_file_that_is_not_audio_raises_bad_audio_error_naming_it(tmp_path):
    fake = tmp_path / "notes.wav"
    fake.write_text("minutes of the meeting, not audio")
    with pytest.raises(BadAudioError) as raised:
        deepclust.separate(fake)
    assert raised.value.path == str(fake) and str(raised.value).startswith(f"{fake}: ")


def test_a_folder_is_refused_naming_the_command_for_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="deepclust separate --input FOLDER"):
        deepclust.separate(tmp_path)


def test_speakers_and_a_given_separator_decide_what_comes_back():
    assert deepclust.separate(MIXTURE, speakers=3).shape == (3, 40000)
    by_kmeans = deepclust.Separator(deepclust.load_model(), device="cpu", inference="kmeans")
    assert by_kmeans.inference_for(2) == "kmeans"
    # The shipped model's default for two talkers is its mask head (soft masks); k-means gives binary ones.
    assert not np.allclose(deepclust.separate(MIXTURE, model=by_kmeans), deepclust.separate(MIXTURE), atol=1e-3)


@pytest.mark.parametrize(
    "waveforms, error, words",
    [
        ([np.zeros((2, 8000), np.float32)], ValueError, "waveform 0 has shape (2, 8000): a Separator takes mono"),
        ("meeting.wav", TypeError, "not a file name ('meeting.wav'): deepclust.separate(path)"),
        (Path("meeting.wav"), TypeError, "not a file name"),
        (np.zeros(8000, np.float32), ValueError, "this is one waveform of 8000 samples: give [waveform]"),
    ],
    ids=["channels", "file name", "path", "one waveform"],
)
def test_a_separator_batch_that_is_not_mono_waveforms_is_refused_not_flattened(waveforms, error, words):
    separator = deepclust.Separator(deepclust.load_model(), device="cpu")
    with pytest.raises(error) as raised:
        separator.separate_batch(waveforms, n_speakers=2)
    assert words in str(raised.value)


def test_a_separator_batch_takes_lists_of_mono_waveforms_in_any_singleton_shape_and_batch_arrays():
    mixture, _ = read_audio(MIXTURE, target_sr=8000)
    separator = deepclust.Separator(deepclust.load_model(), device="cpu")
    plain = separator.separate_batch([mixture], n_speakers=2)[0]
    for shaped in (mixture[None, :], mixture[:, None], torch.from_numpy(mixture)):
        assert np.array_equal(separator.separate_batch([shaped], n_speakers=2)[0], plain)
    both = separator.separate_batch(np.stack([mixture, mixture]), n_speakers=2)  # (batch, samples): two items
    assert len(both) == 2 and np.allclose(both[1], plain, atol=1e-3)  # bf16 kernels may differ with batch size


def test_load_model_defaults_to_the_shipped_model_and_reads_a_given_file():
    shipped = deepclust.load_model()
    given = deepclust.load_model(Path(pretrained.path()))
    assert shipped.extra == given.extra and shipped.extra["inference"]["2"] == "mask"
    assert all(
        torch.equal(a, b) for a, b in zip(shipped.model.state_dict().values(), given.model.state_dict().values())
    )
    assert deepclust.Separator is Separator


def test_speakers_default_is_the_commands():
    from deepclust.archive.config import ArchiveJobConfig

    assert inspect.signature(api.separate).parameters["speakers"].default == ArchiveJobConfig.n_speakers


EXAMPLES = [test for test in doctest.DocTestFinder().find(api) if test.examples]


def test_the_module_and_each_api_call_show_an_example():
    assert {test.name for test in EXAMPLES} == {"deepclust.api", "deepclust.api.separate", "deepclust.api.load_model"}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda test: test.name)
def test_docstring_examples_run_as_shown(example):
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    result = runner.run(example, out=report.append)
    assert result.attempted > 0 and result.failed == 0, "".join(report)
