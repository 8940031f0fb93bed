"""Speech synthesis with the espeak-ng library shipped by the `espeakng-loader` package.

espeak-ng keeps global state, so one process synthesises one utterance at a time (a lock guards
it); parallel synthesis uses several processes.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAMS = {"rate": 1, "volume": 2, "pitch": 3, "range": 4, "wordgap": 7}

_lock = threading.Lock()
_state: dict = {}


class EspeakError(RuntimeError):
    """espeak-ng is missing or refused a request."""


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.c_void_p)


def _library():
    if "lib" in _state:
        return _state["lib"]
    try:
        import espeakng_loader
    except ImportError as exc:
        raise EspeakError("speech synthesis needs the 'espeakng-loader' package "
                          "(pip install espeakng-loader)") from exc
    import os

    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                 ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    data_parent = os.path.dirname(espeakng_loader.get_data_path())
    sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_parent.encode(), 0)
    if sample_rate <= 0:
        raise EspeakError(f"espeak_Initialize failed (returned {sample_rate})")
    chunks: list[np.ndarray] = []

    def collect(wav, n, _events):
        if n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    callback = _Callback(collect)
    lib.espeak_SetSynthCallback(callback)
    _state.update(lib=lib, sample_rate=sample_rate, chunks=chunks, callback=callback)
    return lib


def synthesize(text: str, voice: str = "en-us", *, rate: int | None = None,
               pitch: int | None = None, pitch_range: int | None = None,
               volume: int | None = None) -> tuple[np.ndarray, int]:
    """Synthesise `text`; returns (float32 waveform in [-1, 1], sample rate of espeak-ng).

    rate: words per minute (80-450, espeak default 175); pitch and pitch_range: 0-100 (defaults
    50); volume: 0-200 (default 100). `voice` is an espeak-ng voice name such as "en-us", "en-gb",
    "en-us+f3" (a variant) or "fr".
    """
    if not text or not text.strip():
        raise ValueError("text must be a non-empty string")
    with _lock:
        lib = _library()
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise EspeakError(f"espeak-ng has no voice {voice!r}")
        settings = {"rate": 175 if rate is None else rate, "pitch": 50 if pitch is None else pitch,
                    "range": 50 if pitch_range is None else pitch_range,
                    "volume": 100 if volume is None else volume}
        for name, value in settings.items():
            lib.espeak_SetParameter(_PARAMS[name], int(value), 0)
        chunks = _state["chunks"]
        chunks.clear()
        data = text.encode("utf-8")
        err = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        if err != 0 or not chunks:
            raise EspeakError(f"espeak-ng could not synthesise {text!r} (error {err})")
        y = np.concatenate(chunks).astype(np.float32) / 32768.0
        chunks.clear()
        return y, _state["sample_rate"]
