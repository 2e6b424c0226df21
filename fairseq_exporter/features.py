"""Audio -> 80-dim log-mel filterbank features, as fairseq's S2T data preparation makes them.

fairseq's `examples/speech_to_text/data_utils.extract_fbank_features` scales the waveform to the
16-bit range and calls Kaldi's fbank (through torchaudio.compliance.kaldi) with its defaults:
25 ms windows every 10 ms, povey window, pre-emphasis 0.97, no dither, 80 bins from 20 Hz to
Nyquist. kaldi-native-fbank computes the same thing without torchaudio.
"""

import re
from functools import lru_cache
from math import gcd

import kaldi_native_fbank as knf
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
import soundfile as sf

SAMPLE_RATE = 16000
N_MEL_BINS = 80
_BLOCK = 1 << 16  # resampling output samples per step


class AudioReadError(ValueError):
    """An audio file that is missing, truncated or not audio."""


def read_audio(path):
    """Mono float32 samples in [-1, 1] and the sample rate of an audio file."""
    try:
        with sf.SoundFile(str(path)) as f:
            # libsndfile reads a WAV cut short without complaint; its header log tells.
            cut = re.search(r"^data : (\d+) \(should be (\d+)\)", f.extra_info, re.MULTILINE)
            if cut and int(cut.group(1)) > int(cut.group(2)):
                raise AudioReadError(
                    f"audio file {path} is truncated: its header announces {cut.group(1)} "
                    f"bytes of samples, the file holds {cut.group(2)}")
            wav, sample_rate = f.read(dtype="float32", always_2d=True), f.samplerate
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioReadError(f"cannot read audio file {path}: {e}") from e
    if wav.shape[0] == 0:
        raise AudioReadError(f"audio file {path} has no samples (empty or truncated)")
    return wav.mean(axis=1), sample_rate


@lru_cache(maxsize=8)
def _polyphase_filters(up: int, down: int, zero_crossings: int = 6, rolloff: float = 0.99):
    """Hann-windowed sinc filters, one per output phase (the filter torchaudio's
    `resample` uses by default); lowpass at `rolloff` times the lower Nyquist rate."""
    cutoff = rolloff * min(1.0, up / down)  # in units of the input Nyquist rate
    half_width = int(np.ceil(zero_crossings / cutoff))
    taps = np.arange(-half_width + 1, half_width + 1)  # input offsets around floor(position)
    fraction = (np.arange(up) * down % up) / up  # position - floor(position) for each phase
    t = taps[None, :] - fraction[:, None]
    window = np.cos(np.pi * np.clip(t * cutoff / (2 * zero_crossings), -0.5, 0.5)) ** 2
    return (cutoff * np.sinc(cutoff * t) * window).astype(np.float32), taps


def resample(wav, orig_sr: int, new_sr: int):
    """Band-limited (windowed-sinc) resampling of a 1-D float waveform."""
    wav = np.asarray(wav, dtype=np.float32)
    if orig_sr == new_sr:
        return wav
    g = gcd(int(orig_sr), int(new_sr))
    up, down = int(new_sr) // g, int(orig_sr) // g
    filters, taps = _polyphase_filters(up, down)
    padded = np.pad(wav, (len(taps), len(taps)))
    windows = sliding_window_view(padded, len(taps))  # windows[i] = padded[i:i + len(taps)]
    first = taps[0] + len(taps)  # window start for input position 0
    n_out = int(np.ceil(len(wav) * up / down))
    out = np.empty(n_out, dtype=np.float32)
    for start in range(0, n_out, _BLOCK):  # blocks bound the (outputs x taps) gather
        n = np.arange(start, min(start + _BLOCK, n_out))
        out[n] = np.einsum("ij,ij->i", windows[n * down // up + first], filters[n % up])
    return out


def fbank80(wav, sample_rate: int = SAMPLE_RATE):
    """Kaldi log-mel filterbank (frames, 80) float32 of a float waveform in [-1, 1]."""
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = sample_rate
    opts.frame_opts.dither = 0.0
    opts.mel_opts.num_bins = N_MEL_BINS
    fbank = knf.OnlineFbank(opts)
    # Kaldi compliance, as in fairseq's extract_fbank_features: 16-bit signed integer range.
    fbank.accept_waveform(sample_rate, np.asarray(wav, dtype=np.float32) * 32768)
    fbank.input_finished()
    if fbank.num_frames_ready == 0:
        return np.zeros((0, N_MEL_BINS), dtype=np.float32)
    return np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])


def features_from_audio_file(path):
    """fbank80 features of an audio file, resampled to 16 kHz first when needed."""
    wav, sample_rate = read_audio(path)
    if sample_rate != SAMPLE_RATE:
        wav = resample(wav, sample_rate, SAMPLE_RATE)
    return fbank80(wav, SAMPLE_RATE)
