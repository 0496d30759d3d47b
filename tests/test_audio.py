"""Decoding every common format to 16 kHz mono, the excerpt window, and the log-mel."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from factories import voice, write_audio
from nextvox.audio import load_excerpt, read_window
from nextvox.constants import EXCERPT_SAMPLES, FRAMES_PER_EXCERPT, SAMPLE_RATE_HZ
from nextvox.errors import AudioError
from nextvox.features import log_mel, recording_fingerprint


def _dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / SAMPLE_RATE_HZ)[np.argmax(spectrum)])


@pytest.mark.parametrize("extension", ["wav", "flac", "ogg", "mp3", "opus", "m4a"])
def test_every_format_decodes_to_16k_mono_with_pitch_and_length_kept(tmp_path: Path, extension: str) -> None:
    rate_hz, seconds = 44_100, 3.0
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    tone = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    path = write_audio(tmp_path / f"tone.{extension}", tone, rate_hz=rate_hz)

    excerpt = load_excerpt(path)

    assert excerpt.samples.dtype == np.float32 and excerpt.samples.shape == (EXCERPT_SAMPLES,)
    assert abs(excerpt.n_valid / SAMPLE_RATE_HZ - seconds) < 0.1  # codec padding is a few ms
    assert abs(_dominant_hz(excerpt.valid_samples[4000:40000]) - 440.0) < 3.0
    assert not excerpt.samples[excerpt.n_valid :].any()  # padded with zeros, masked by n_valid


def test_short_song_is_padded_not_dropped(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "short.wav", voice(seconds=2.0, formants_hz=(500, 1500)))
    excerpt = load_excerpt(path)
    assert excerpt.n_valid == pytest.approx(2.0 * SAMPLE_RATE_HZ, abs=2)
    assert log_mel(excerpt.samples).shape == (48, FRAMES_PER_EXCERPT)


def test_long_song_excerpt_is_120_s_where_the_voice_is(tmp_path: Path) -> None:
    rate_hz = 16_000
    quiet = 0.002 * np.random.default_rng(0).standard_normal(60 * rate_hz).astype(np.float32)
    sung = voice(seconds=120.0, formants_hz=(700, 1800), rate_hz=rate_hz)
    path = tmp_path / "long.flac"
    sf.write(path, np.concatenate([quiet, sung, quiet]), rate_hz)

    excerpt = load_excerpt(path)

    assert excerpt.duration_s == pytest.approx(240.0, abs=0.01)
    assert excerpt.n_valid == EXCERPT_SAMPLES
    # The window covers the sung middle (60-180 s), not the quiet intro or outro.
    assert 45.0 <= excerpt.start_s <= 75.0


def test_read_window_seeks_in_compressed_files(tmp_path: Path) -> None:
    rate_hz = 16_000
    t = np.arange(20 * rate_hz) / rate_hz
    # 200 Hz for 10 s then 600 Hz: a window after 10 s must hear only 600 Hz.
    tone = np.where(t < 10, np.sin(2 * np.pi * 200 * t), np.sin(2 * np.pi * 600 * t)).astype(np.float32) * 0.3
    for extension in ("mp3", "m4a", "opus"):
        path = write_audio(tmp_path / f"two.{extension}", tone, rate_hz=rate_hz)
        window = read_window(path, start_s=12.0, length_s=2.0)
        assert abs(window.size - 2 * SAMPLE_RATE_HZ) <= 1
        assert abs(_dominant_hz(window) - 600.0) < 5.0, extension


def test_silent_file_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(3 * 16_000, dtype=np.float32), 16_000)
    with pytest.raises(AudioError, match="silent"):
        load_excerpt(path)


def test_fingerprint_matches_one_recording_across_codecs_only(tmp_path: Path) -> None:
    song = voice(seconds=8.0, formants_hz=(500, 1000, 2400), seed=1)
    other = voice(seconds=8.0, formants_hz=(500, 1000, 2400), seed=2)  # same "singer", another song
    prints = {}
    for name, samples, extension in [("a", song, "wav"), ("a_mp3", song, "mp3"), ("b", other, "wav")]:
        excerpt = load_excerpt(write_audio(tmp_path / f"{name}.{extension}", samples))
        prints[name] = recording_fingerprint(log_mel(excerpt.valid_samples))
    assert prints["a"] @ prints["a_mp3"] > 0.9
    assert prints["a"] @ prints["b"] < 0.8


def test_mel_filters_are_librosas() -> None:
    import librosa

    from nextvox.constants import N_FFT, N_MELS
    from nextvox.features import MEL_PARAMS, mel_basis, mel_frequencies_hz

    assert np.array_equal(mel_basis().numpy(), librosa.filters.mel(sr=SAMPLE_RATE_HZ, n_fft=N_FFT, n_mels=N_MELS))
    assert np.array_equal(mel_frequencies_hz(N_MELS + 2, fmin_hz=MEL_PARAMS["fmin_hz"], fmax_hz=MEL_PARAMS["fmax_hz"]),
                          librosa.mel_frequencies(n_mels=N_MELS + 2, fmin=MEL_PARAMS["fmin_hz"], fmax=MEL_PARAMS["fmax_hz"]))
