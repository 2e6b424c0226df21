"""fairseq_exporter.features: Kaldi fbank80 as fairseq's S2T prep computes it, without torchaudio."""

import numpy as np
import pytest
import soundfile as sf

from fairseq_exporter.features import (
    AudioReadError,
    features_from_audio_file,
    fbank80,
    read_audio,
    resample,
)


def kaldi_fbank_reference(wav, sample_rate=16000, n_bins=80):
    """torchaudio.compliance.kaldi.fbank defaults, written out in numpy (float64)."""
    x = np.asarray(wav, dtype=np.float64) * 32768
    length, shift, n_fft = 400, 160, 512
    n_frames = 1 + (len(x) - length) // shift
    frames = np.stack([x[i * shift:i * shift + length] for i in range(n_frames)])
    frames -= frames.mean(axis=1, keepdims=True)
    frames = np.concatenate([frames[:, :1] * (1 - 0.97), frames[:, 1:] - 0.97 * frames[:, :-1]], 1)
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / (length - 1))) ** 0.85
    power = np.abs(np.fft.rfft(frames * window, n_fft)) ** 2

    def mel(f):
        return 1127 * np.log(1 + f / 700)

    edges = np.linspace(mel(20), mel(sample_rate / 2), n_bins + 2)
    m = mel(np.arange(n_fft // 2) * sample_rate / n_fft)
    left, center, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    banks = np.maximum(0, np.minimum((m - left) / (center - left), (right - m) / (right - center)))
    return np.log(np.maximum(power[:, : n_fft // 2] @ banks.T, np.finfo(np.float32).eps))


def speech_like(seconds=1.0, sample_rate=16000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    tones = sum(0.1 * np.sin(2 * np.pi * f * t) for f in (220, 440, 1500, 3100))
    return (tones + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def test_fbank80_of_a_sine_has_kaldi_frames_and_80_bins():
    t = np.arange(16000) / 16000
    feats = fbank80((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    assert feats.shape == (1 + (16000 - 400) // 160, 80)  # 25 ms windows, 10 ms shift, snip edges
    assert feats.dtype == np.float32
    assert np.isfinite(feats).all()
    # The 440 Hz tone lands in a low mel bin, far above the top bins.
    assert feats[:, :20].max() > feats[:, 70:].max() + 10


def test_fbank80_matches_the_kaldi_recipe_fairseq_uses():
    wav = speech_like()
    np.testing.assert_allclose(fbank80(wav), kaldi_fbank_reference(wav), atol=2e-3)


def test_fbank80_scales_to_the_16_bit_range():
    # Scaling the waveform by 2 adds log(4) to every bin: the input is not normalized away.
    wav = speech_like()
    np.testing.assert_allclose(fbank80(2 * wav) - fbank80(wav), np.log(4), atol=1e-3)


def test_resample_keeps_a_tone_and_removes_what_would_alias():
    t = np.arange(22050) / 22050
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    out = resample(tone, 22050, 16000)
    assert len(out) == 16000 and out.dtype == np.float32
    expected = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    assert np.abs(out - expected)[100:-100].max() < 1e-3
    too_high = (0.5 * np.sin(2 * np.pi * 10000 * t)).astype(np.float32)  # above 8 kHz Nyquist
    assert np.abs(resample(too_high, 22050, 16000))[100:-100].max() < 0.01


def test_features_from_audio_file_equals_direct_fbank(tmp_path):
    wav = speech_like()
    path = tmp_path / "a.wav"
    sf.write(path, wav, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(features_from_audio_file(path), fbank80(wav))


def test_features_from_audio_file_resamples_to_16k(tmp_path):
    wav = speech_like(sample_rate=22050)
    path = tmp_path / "a.flac"
    sf.write(path, wav, 22050)
    read, sample_rate = read_audio(path)
    assert sample_rate == 22050
    np.testing.assert_array_equal(features_from_audio_file(path),
                                  fbank80(resample(read, 22050, 16000)))


def test_stereo_is_averaged_to_mono(tmp_path):
    wav = speech_like()
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([wav, np.zeros_like(wav)], 1), 16000, subtype="FLOAT")
    read, _ = read_audio(path)
    np.testing.assert_allclose(read, wav / 2)


@pytest.mark.parametrize("keep_bytes", [10, 44, 1000])
def test_truncated_wav_error_names_the_file(tmp_path, keep_bytes):
    full = tmp_path / "full.wav"
    sf.write(full, speech_like(), 16000, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[:keep_bytes])
    with pytest.raises(AudioReadError, match=str(cut)):
        features_from_audio_file(cut)


def test_non_audio_and_missing_files_error_names_the_file(tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    for path in (text, tmp_path / "missing.wav"):
        with pytest.raises(ValueError, match=str(path)):
            read_audio(path)
