"""The Python front door: one call from a recording to its separated voices, a model loader, and the batch class.

``deepclust.separate`` is ``deepclust separate`` for one input, returned as an array instead of written to a
folder: it runs the command's own step (``deepclust.separation.batch.separate_items``, the one place files are
separated) in a scratch folder and reads back the WAVs it wrote. So a file gives exactly the samples that
``deepclust separate --input FILE`` writes to ``s1.wav .. sK.wav``: the same downmix of several channels, the same
resampling to the model's rate, the same windows for recordings longer than 10 s, the same inference and
precision. On the embedded real example (two LibriSpeech readers the shipped model never heard, 5 s at 8 kHz):

    >>> import deepclust
    >>> from deepclust.evaluation.real_example import example_paths
    >>> mixture_path = example_paths()["mixture"]
    >>> voices = deepclust.separate(mixture_path)
    >>> voices.shape, voices.dtype
    ((2, 40000), dtype('float32'))

An array needs its rate; whatever the rate, the voices come back at the model's 8 kHz:

    >>> import soundfile
    >>> from deepclust.audio import resample
    >>> mixture, rate = soundfile.read(mixture_path, dtype="float32")
    >>> deepclust.separate(resample(mixture, rate, 16000), sample_rate=16000).shape
    (2, 40000)

For many waveforms already in memory, a ``Separator`` runs them through one network forward (the batch step
under ``deepclust separate``; whole inputs, at its ``sample_rate``, no resampling or downmix):

    >>> separator = deepclust.Separator(deepclust.load_model(), device="cpu")
    >>> separator.sample_rate
    8000
    >>> [each.shape for each in separator.separate_batch([mixture, mixture[:16000]], n_speakers=2)]
    [(2, 40000), (2, 16000)]

For a folder or an archive, ``deepclust separate`` (docs/usage.md) resumes, records a manifest and goes on past
bad files. ``python -m pytest --doctest-modules deepclust/api.py`` runs these examples; the test suite runs
them too (``tests/test_api.py``).
"""

from __future__ import annotations

import operator
import os
import tempfile

import numpy as np

from deepclust import pretrained, storage
from deepclust.audio import read_audio, write_audio
from deepclust.faults.errors import BadAudioError
from deepclust.faults.transient import call_with_retries
from deepclust.model.checkpoint import LoadedModel
from deepclust.model.checkpoint import load_model as load_model_file
from deepclust.separation.batch import separate_items
from deepclust.separation.inputs import inputs_from_files, resolve_outputs
from deepclust.separation.separator import Separator, cached_separator

__all__ = ["separate", "load_model", "Separator"]

# How an array is named in errors (it has no path of its own).
ARRAY_NAME = "<array>"


def load_model(path: str | os.PathLike | None = None, device: str = "cpu") -> LoadedModel:
    """A model file, or the shipped real-speech model (``deepclust/pretrained``, described in its MODEL_CARD.md).

    Args:
        path: a file written by ``deepclust train``, ``train-dynamic`` or ``export-model`` (local or ``s3://``);
            None: the shipped model (``deepclust.pretrained.load``).
        device: where the weights are loaded ("cpu", "cuda", ...); a ``Separator`` moves them to its own device.

    Returns:
        ``LoadedModel``: ``model`` (the network, in eval mode), ``model_config``, ``feature_stats``,
        ``feature_config`` (its STFT, at 8 kHz for every model the recipe trains) and ``extra`` (the lineage, the
        speakers it heard, and which inference ``"auto"`` uses for each number of speakers):

        >>> import deepclust
        >>> deepclust.load_model().extra["inference"]
        {'2': 'mask', '3': 'soft-kmeans'}
    """
    if path is None:
        return pretrained.load(device)
    return load_model_file(os.fspath(path), device)


def separate(audio, sample_rate: int | None = None, speakers: int = 2, model=None) -> np.ndarray:
    """Separate one recording into ``speakers`` voices, as ``deepclust separate`` does.

    Args:
        audio: a path (local or ``s3://``; WAV, FLAC, OGG or NIST SPHERE, any rate, any number of channels), or
            an array of float samples in [-1, 1], ``(samples,)`` or ``(channels, samples)``. Several channels
            are averaged, or the loudest one is taken when the average cancels (``deepclust.audio.downmix``), as for
            a file; pick one yourself with ``audio[channel]``.
        sample_rate: the array's rate in Hz (required for an array; a file's comes from its header, so it must
            be None). The array is resampled to the model's rate as a file would be.
        speakers: K, the number of voices to return.
        model: None (the shipped model), a model file's path, a ``LoadedModel`` (``load_model``) or a
            ``Separator`` (to choose the device, inference or precision). A path or None uses the settings
            ``deepclust separate`` uses by default (device, inference and precision "auto"), loaded once per
            process and reused by later calls.

    Returns:
        float32 array ``(speakers, samples)`` at the **model's rate, 8 kHz** (every model the recipe trains, the
        shipped one included), whatever the input's rate: ``samples`` is the input's duration times 8,000. These
        are the samples ``deepclust separate`` writes to ``s1.wav .. sK.wav`` (16-bit WAV), in the same order.

    Raises:
        BadAudioError: the input cannot be used (unreadable, empty, silent, non-finite); its ``path`` is the
            path as given, or ``"<array>"``, and ``reason`` says what is wrong.
        deepclust.faults.errors.RunFaultError: the model, the device or the disk fails, not this input.
        ValueError, TypeError: arguments that do not fit (an array without its rate, integer samples, ...).
        FileNotFoundError: no such file, or a folder (``deepclust separate`` takes folders).

    >>> import deepclust
    >>> from deepclust.evaluation.real_example import example_paths
    >>> deepclust.separate(example_paths()["mixture"], speakers=3).shape
    (3, 40000)
    """
    speakers = _whole_number(speakers, "speakers", "1 or more")
    separator = _separator_for(model)
    with tempfile.TemporaryDirectory(prefix="deepclust-separate-") as scratch:
        if isinstance(audio, (str, os.PathLike)):
            if sample_rate is not None:
                raise ValueError("sample_rate is for arrays: a file's rate is read from its header")
            name = input_url = os.fspath(audio)
        else:
            if sample_rate is None:
                raise ValueError(
                    "an array needs its sample_rate (in Hz), e.g. deepclust.separate(samples, sample_rate=16000)"
                )
            name, input_url = ARRAY_NAME, _array_as_file(audio, sample_rate, scratch)
        out = os.path.join(scratch, "separated")
        item = _input_row(input_url, speakers)
        # Retried like a batch of the command (a restarting object store); anything else is raised at once.
        [row] = call_with_retries(lambda: separate_items(separator, [item], out), what=f"separating {name}")
        if row["status"] != "done":
            raise _bad_audio(row, name)
        return np.stack([read_audio(url)[0] for url in resolve_outputs(out, row["outputs"])])


def _separator_for(model) -> Separator:
    """The ``Separator`` of ``separate``'s ``model`` argument (None: the shipped model)."""
    if isinstance(model, Separator):
        return model
    if isinstance(model, LoadedModel):
        return Separator(model)
    url = pretrained.path() if model is None else os.fspath(model)
    # Keyed by the file's checksum too: a model file replaced in place is loaded anew.
    return cached_separator(url, model_sha256=storage.sha256_of(url))


def _array_as_file(audio, sample_rate: int, folder: str) -> str:
    """Write an array as a 32-bit float WAV at its own rate (lossless), so that it is read, downmixed and
    resampled by the command's own reader; returns its path."""
    waveform = np.asarray(audio)
    if not np.issubdtype(waveform.dtype, np.floating):
        raise TypeError(
            f"audio: float samples in [-1, 1] please, got {waveform.dtype} "
            "(soundfile.read(path, dtype='float32') gives them)"
        )
    if waveform.ndim not in (1, 2):
        raise ValueError(f"audio: an array (samples,) or (channels, samples), got shape {waveform.shape}")
    if waveform.ndim == 2 and waveform.shape[0] > waveform.shape[1]:
        raise ValueError(
            f"audio: shape {waveform.shape} looks like (samples, channels); pass audio.T, (channels, samples)"
        )
    sample_rate = _whole_number(sample_rate, "sample_rate", "a positive number of Hz")
    if waveform.size == 0:  # said here: the file it would become would be blamed on its header
        raise BadAudioError(ARRAY_NAME, "0 samples: the array is empty")
    path = os.path.join(folder, "input.wav")
    write_audio(path, waveform, sample_rate, subtype="FLOAT")
    return path


def _whole_number(value, name: str, wanted: str) -> int:
    """``value`` (an int, or a float with no fraction: 44100.0) as an int >= 1, else a ValueError naming it."""
    try:
        number = operator.index(value)
    except TypeError:
        number = int(value) if isinstance(value, float) and value.is_integer() else None
    if number is None or number < 1:
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return number


def _input_row(url: str, speakers: int) -> dict:
    """The input-manifest row of one file (``deepclust.separation.inputs``), as the command makes it."""
    fs, path = storage.filesystem(url)
    if not fs.isfile(path):
        kind = "a folder: deepclust separate --input FOLDER takes folders" if fs.isdir(path) else "no such file"
        raise FileNotFoundError(f"{url}: {kind}")
    return inputs_from_files(url, speakers).iloc[0].to_dict()


def _bad_audio(row: dict, name: str) -> BadAudioError:
    """The ``BadAudioError`` of a ``failed`` row, naming the input as the caller gave it."""
    prefix = f"{row['input']}: "
    reason = row["error"][len(prefix) :] if row["error"].startswith(prefix) else row["error"]
    return BadAudioError(name, reason.replace(row["input"], name), row["error_detail"].replace(row["input"], name))
