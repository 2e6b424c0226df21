"""English speech from libespeak-ng, the copy shipped in the PyPI wheel `espeakng-loader`.

Called through ctypes in synchronous mode: `espeak_Synth` returns once the whole utterance has
gone through the synth callback, which collects the 16-bit samples. The library keeps global
state, so it is initialized once per process and the callback lives as long as the module.
"""

import ctypes
import os
import threading

import numpy as np

AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_DONT_EXIT = 0x8000  # return an error instead of exit() when the data is missing
POS_CHARACTER = 1
CHARS_UTF8 = 1
RATE, PITCH, RANGE = 1, 3, 4  # espeak_PARAMETER values

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class EspeakError(RuntimeError):
    pass


class _Library:
    """The process-wide libespeak-ng, initialized on first use."""

    _instance = None
    _lock = threading.Lock()

    def __init__(self):
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                               ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self.libc = ctypes.CDLL(None)  # klatt voices draw their noise from libc's rand()
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        # espeak wants the folder that contains espeak-ng-data.
        data_parent = os.path.dirname(espeakng_loader.get_data_path())
        self.sample_rate = self.lib.espeak_Initialize(
            AUDIO_OUTPUT_SYNCHRONOUS, 0, data_parent.encode(), INITIALIZE_DONT_EXIT)
        if self.sample_rate <= 0:
            raise EspeakError(f"espeak_Initialize failed with data at {data_parent}")
        self.chunks = []
        self.callback = _SYNTH_CALLBACK(self._collect)  # referenced: C keeps only a pointer
        self.lib.espeak_SetSynthCallback(self.callback)

    def _collect(self, wav, n_samples, events):
        if n_samples > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        return 0

    @classmethod
    def get(cls):
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance


class EspeakSynthesizer:
    """`synth(text, voice, rate, pitch)` -> int16 samples at `sample_rate` (22050 Hz)."""

    def __init__(self):
        self._library = _Library.get()
        self.sample_rate = self._library.sample_rate

    def synth(self, text: str, voice: str = "en-us", rate: int = 175, pitch: int = 50,
              pitch_range: int = 50, noise_seed: int = 0) -> np.ndarray:
        """`voice` is an espeak voice name, optionally with a variant ("en-gb-x-rp+f3");
        `rate` in words per minute (80-450); `pitch` and `pitch_range` in 0-100.

        Voices with breath (the +f2 and +f3 variants) add noise from a generator that
        espeak_Initialize seeds with the clock: it is reseeded here with `noise_seed`, so
        that the same call in a fresh process gives the same samples."""
        library = self._library
        lib = library.lib
        with _Library._lock:
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise EspeakError(f"espeak has no voice {voice!r}")
            for parameter, value in ((RATE, rate), (PITCH, pitch), (RANGE, pitch_range)):
                lib.espeak_SetParameter(parameter, int(value), 0)
            lib.espeak_ng_SetRandSeed(int(noise_seed))
            library.libc.srand(ctypes.c_uint(int(noise_seed) & 0xFFFFFFFF))
            library.chunks = []
            data = text.encode("utf-8")
            error = lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8,
                                     None, None)
            if error != 0:
                raise EspeakError(f"espeak_Synth failed ({error}) on {text!r}")
            chunks, library.chunks = library.chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
