"""A minimal ctypes binding to eSpeak NG (library and voice data shipped by the ``espeakng_loader`` wheel).

Only what the demo corpus needs: synchronous synthesis of one text into int16 samples.

Why private instances: eSpeak NG keeps its synthesiser state in C globals (pitch flutter index, wave
generator phase, echo buffer, noise generator) that neither ``espeak_Initialize`` nor
``espeak_Terminate`` resets, so the same text gives different samples depending on what was spoken
before in the process. ``EspeakEngine`` therefore dlopens its own copy of the library (a copy under a
new file name gets its own globals), initialises it once, and is closed with ``dlclose``. A fresh engine
per voice makes every voice's audio a function of its own texts only: reproducible across processes,
run order and other users of eSpeak in the process. Each engine is not thread-safe: calls hold its lock.
"""

from __future__ import annotations

import _ctypes
import ctypes
import os
import shutil
import tempfile
import threading

import numpy as np

# espeak_AUDIO_OUTPUT: SYNCHRONOUS returns when the text is done; samples arrive through the callback.
AUDIO_OUTPUT_SYNCHRONOUS = 2
# espeak_PARAMETER values (speak_lib.h).
ESPEAK_RATE = 1
ESPEAK_PITCH = 3
ESPEAK_RANGE = 4
POS_CHARACTER = 1
ESPEAK_CHARS_UTF8 = 1
# espeakINITIALIZE_DONT_EXIT: return an error instead of calling exit() when the data is missing.
INITIALIZE_DONT_EXIT = 0x8000
EE_OK = 0

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def _declare(lib) -> None:
    """Argument and return types of the calls we use (speak_lib.h, espeak_ng.h)."""
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Terminate.argtypes = []
    lib.espeak_Terminate.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ng_SetRandSeed.restype = None


def _load_private_copy():
    """dlopen a private copy of libespeak-ng (own C globals); the copy is unlinked once mapped."""
    import espeakng_loader

    folder = tempfile.mkdtemp(prefix="deepclust-espeak-")
    try:
        private = os.path.join(folder, "libespeak-ng-private.so")
        shutil.copyfile(espeakng_loader.get_library_path(), private)
        lib = ctypes.CDLL(private, mode=ctypes.RTLD_LOCAL)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    _declare(lib)
    return lib, espeakng_loader.get_data_path()


class EspeakEngine:
    """One private, initialised eSpeak NG instance. Use as a context manager (``close`` unloads it)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._lib, data_path = _load_private_copy()
        self.sample_rate = self._lib.espeak_Initialize(
            AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), INITIALIZE_DONT_EXIT
        )
        if self.sample_rate <= 0:
            self._unload()
            raise RuntimeError(f"eSpeak NG failed to initialise with its data at {data_path}")
        self._chunks: list[np.ndarray] = []
        # Kept on self: ctypes must not free the callback while the C library holds a pointer to it.
        self._callback = _SYNTH_CALLBACK(self._on_samples)
        self._lib.espeak_SetSynthCallback(self._callback)

    def _on_samples(self, wav, n_samples, events) -> int:
        if wav and n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        return 0  # 0 = continue synthesising

    def synthesise(
        self, text: str, voice: str, rate: int = 175, pitch: int = 50, pitch_range: int = 50, seed: int = 0
    ) -> np.ndarray:
        """Speak ``text`` with ``voice`` (e.g. ``"en-us+f3"``); returns int16 ``(samples,)`` at ``sample_rate``.

        ``rate`` is words per minute; ``pitch`` and ``pitch_range`` are 0-100 (50 = the voice's own).
        ``seed`` seeds eSpeak's noise generator (breathy variants use it).
        """
        with self._lock:
            if self._lib is None:
                raise RuntimeError("EspeakEngine is closed")
            lib = self._lib
            if lib.espeak_SetVoiceByName(voice.encode()) != EE_OK:
                raise ValueError(f"eSpeak NG has no voice {voice!r}")
            for parameter, value in ((ESPEAK_RATE, rate), (ESPEAK_PITCH, pitch), (ESPEAK_RANGE, pitch_range)):
                lib.espeak_SetParameter(parameter, int(value), 0)
            lib.espeak_ng_SetRandSeed(int(seed))
            self._chunks.clear()
            encoded = text.encode("utf-8") + b"\0"
            status = lib.espeak_Synth(
                ctypes.create_string_buffer(encoded), len(encoded), 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None, None
            )
            if status != EE_OK:
                raise RuntimeError(f"eSpeak NG synthesis failed (status {status}) for {text!r}")
            samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
            self._chunks.clear()
            return samples.astype(np.int16, copy=False)

    def _unload(self) -> None:
        handle = self._lib._handle
        self._lib = None
        _ctypes.dlclose(handle)

    def close(self) -> None:
        """Terminate eSpeak NG and unload this engine's copy of the library; closing again does nothing."""
        with self._lock:
            if self._lib is not None:
                self._lib.espeak_Terminate()
                self._unload()

    def __enter__(self) -> "EspeakEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def synthesise(text: str, voice: str, **kwargs) -> tuple[np.ndarray, int]:
    """One-off synthesis in a fresh engine: int16 ``(samples,)`` and the rate in Hz (22050)."""
    with EspeakEngine() as engine:
        return engine.synthesise(text, voice, **kwargs), engine.sample_rate
