"""Log-mel spectrograms and the MFCC-statistics vector, over 16 kHz mono float32 audio.

The log-mel is the input of every learned model: 48 mel bands, a 512-sample window and a
256-sample hop, as in the seed, so a 120 s excerpt gives 48 x 7501 frames. It is computed
with ``torch.stft`` and librosa's Slaney mel filters (about 20x faster than ``librosa``'s own
path on one core) and cached on disk by content hash and parameters (see ``MelCache``), so
that retraining never decodes a song twice. The filters are built here, in numpy, to the
same numbers as ``librosa.filters.mel``: importing librosa (and numba) cost every analysis
worker about a second.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from nextvox.constants import EXCERPT_S, FRAMES_PER_EXCERPT, HOP_LENGTH, N_FFT, N_MELS, SAMPLE_RATE_HZ
from nextvox.files import atomic_path

__all__ = [
    "MEL_PARAMS",
    "LOG_FLOOR",
    "hz_to_mel",
    "mel_to_hz",
    "mel_frequencies_hz",
    "mel_basis",
    "log_mel",
    "n_frames",
    "mfcc_from_log_mel",
    "mfcc_statistics",
    "MelCache",
    "pad_frames",
    "recording_fingerprint",
]

MEL_PARAMS = {
    "sample_rate_hz": SAMPLE_RATE_HZ,
    "n_fft": N_FFT,
    "hop_length": HOP_LENGTH,
    "n_mels": N_MELS,
    "fmin_hz": 0.0,
    "fmax_hz": SAMPLE_RATE_HZ / 2,
}
LOG_FLOOR = 1e-6  # power floor before the log: -60 dB under a full-scale sine's band power
N_MFCC = 20


# Slaney's mel scale (Auditory Toolbox, librosa's default): linear below 1 kHz, logarithmic above.
MEL_LINEAR_HZ = 200.0 / 3  # Hz per mel below MEL_LOG_START_HZ
MEL_LOG_START_HZ = 1000.0
MEL_LOG_STEP = float(np.log(6.4) / 27.0)  # natural log of frequency per mel above MEL_LOG_START_HZ


def hz_to_mel(frequencies_hz: np.ndarray | float) -> np.ndarray:
    """Slaney mels of frequencies in Hz, same shape, float64.

    >>> hz_to_mel(np.array([0.0, 1000.0])).round(9).tolist()
    [0.0, 15.0]
    """
    hz = np.asarray(frequencies_hz, dtype=np.float64)
    log_start_mel = MEL_LOG_START_HZ / MEL_LINEAR_HZ
    above = np.maximum(hz, MEL_LOG_START_HZ) / MEL_LOG_START_HZ  # 1 below the log region: no log of 0
    return np.where(hz >= MEL_LOG_START_HZ, log_start_mel + np.log(above) / MEL_LOG_STEP, hz / MEL_LINEAR_HZ)


def mel_to_hz(mels: np.ndarray | float) -> np.ndarray:
    """Frequencies in Hz of Slaney mels, same shape, float64 (the inverse of :func:`hz_to_mel`)."""
    mels = np.asarray(mels, dtype=np.float64)
    log_start_mel = MEL_LOG_START_HZ / MEL_LINEAR_HZ
    return np.where(mels >= log_start_mel, MEL_LOG_START_HZ * np.exp(MEL_LOG_STEP * (mels - log_start_mel)), MEL_LINEAR_HZ * mels)


def mel_frequencies_hz(n: int, *, fmin_hz: float, fmax_hz: float) -> np.ndarray:
    """``n`` frequencies (Hz) evenly spaced on the mel scale from ``fmin_hz`` to ``fmax_hz``, shape (n,), float64.

    >>> mel_frequencies_hz(3, fmin_hz=0.0, fmax_hz=2000.0).round(1).tolist()
    [0.0, 836.1, 2000.0]
    """
    return mel_to_hz(np.linspace(hz_to_mel(fmin_hz), hz_to_mel(fmax_hz), n))


@lru_cache(maxsize=1)
def mel_basis() -> torch.Tensor:
    """The mel filter bank of :func:`log_mel`, shape (N_MELS, N_FFT // 2 + 1), float32, built once per process.

    Triangles between neighbouring band edges on the mel scale, each scaled to unit area in
    Hz (Slaney's normalisation): ``librosa.filters.mel(sr=16000, n_fft=512, n_mels=48)``.
    """
    bin_hz = np.fft.rfftfreq(N_FFT, d=1.0 / SAMPLE_RATE_HZ)  # (n_fft // 2 + 1,)
    edges_hz = mel_frequencies_hz(N_MELS + 2, fmin_hz=MEL_PARAMS["fmin_hz"], fmax_hz=MEL_PARAMS["fmax_hz"])  # (n_mels + 2,)
    ramps = edges_hz[:, None] - bin_hz[None, :]  # (n_mels + 2, n_bins)
    widths_hz = np.diff(edges_hz)  # (n_mels + 1,)
    rising = -ramps[:-2] / widths_hz[:-1, None]  # (n_mels, n_bins)
    falling = ramps[2:] / widths_hz[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]  # in float32, as librosa does: the same numbers
    return torch.from_numpy(weights)  # (n_mels, n_fft // 2 + 1)


@lru_cache(maxsize=1)
def _window() -> torch.Tensor:
    return torch.hann_window(N_FFT)


def n_frames(n_samples: int) -> int:
    """Frames of a centred STFT over ``n_samples`` samples.

    >>> n_frames(120 * 16000)
    7501
    """
    return n_samples // HOP_LENGTH + 1


def log_mel(samples: np.ndarray) -> np.ndarray:
    """Natural-log mel power spectrogram.

    Parameters
    ----------
    samples : np.ndarray, shape (n,), float32
        Mono audio at ``SAMPLE_RATE_HZ``.

    Returns
    -------
    np.ndarray, shape (N_MELS, n_frames(n)), float32
        ``log(mel power + LOG_FLOOR)``.

    >>> log_mel(np.zeros(16000, dtype=np.float32)).shape
    (48, 63)
    """
    with torch.inference_mode():
        audio = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
        spectrum = torch.stft(audio, N_FFT, HOP_LENGTH, window=_window(), center=True, return_complex=True)
        power = spectrum.real.square() + spectrum.imag.square()  # (n_fft // 2 + 1, T)
        mel = mel_basis() @ power  # (n_mels, T)
        return torch.log(mel + LOG_FLOOR).numpy()


def mfcc_from_log_mel(log_mel_spectrogram: np.ndarray, *, n_mfcc: int = N_MFCC) -> np.ndarray:
    """MFCCs as the orthonormal DCT-II of a log-mel spectrogram over its bands.

    Parameters
    ----------
    log_mel_spectrogram : np.ndarray, shape (n_mels, T)
    n_mfcc : int
        Coefficients kept, c0 included.

    Returns
    -------
    np.ndarray, shape (n_mfcc, T)
    """
    import scipy.fft  # here, not at the top: the analysis never needs it, and it costs every worker's start 0.2 s

    return scipy.fft.dct(log_mel_spectrogram, type=2, axis=0, norm="ortho")[:n_mfcc]


def mfcc_statistics(log_mel_spectrogram: np.ndarray, *, n_valid_frames: int | None = None) -> np.ndarray:
    """Mean and standard deviation over time of MFCC 1..19 (c0, the loudness, left out), shape
    (2 * (N_MFCC - 1),) float32, of a (n_mels, T) log-mel spectrogram whose first
    ``n_valid_frames`` frames (all when None) come before the padding."""
    frames = log_mel_spectrogram[:, : n_valid_frames or log_mel_spectrogram.shape[1]]
    mfcc = mfcc_from_log_mel(frames)[1:]  # (N_MFCC - 1, T)
    return np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)]).astype(np.float32)


FINGERPRINT_BANDS = 8  # groups of 4 mel bands over the lowest 32 (0 - 3.6 kHz), which every lossy codec keeps
FINGERPRINT_MELS = 32
FINGERPRINT_BIN_S = 0.5
FINGERPRINT_BINS = int(EXCERPT_S / FINGERPRINT_BIN_S)


def recording_fingerprint(log_mel_spectrogram: np.ndarray, *, n_valid_frames: int | None = None) -> np.ndarray:
    """A coarse spectrogram thumbnail that tells one recording from another.

    Two encodings of the same recording (an mp3 and a flac of one master) give nearly the
    same thumbnail (cosine > 0.97 measured, even at 32 kbit/s mp3); two different songs, even
    by one singer, do not (< 0.6).

    Parameters
    ----------
    log_mel_spectrogram : np.ndarray, shape (n_mels, T)
    n_valid_frames : int, optional
        Frames before the padding; all ``T`` when None.

    Returns
    -------
    np.ndarray, shape (FINGERPRINT_BANDS * FINGERPRINT_BINS,), float32
        Mean log-mel power per band group and ``FINGERPRINT_BIN_S`` bin, each band's mean
        removed, unit norm; zero after the audio ends.
    """
    frames = log_mel_spectrogram[:FINGERPRINT_MELS, : n_valid_frames or log_mel_spectrogram.shape[1]]
    frames_per_bin = int(FINGERPRINT_BIN_S * SAMPLE_RATE_HZ / HOP_LENGTH)
    n_bins = min(FINGERPRINT_BINS, max(1, frames.shape[1] // frames_per_bin))
    frames = frames[:, : n_bins * frames_per_bin]
    pooled = frames.reshape(FINGERPRINT_MELS, n_bins, -1).mean(axis=2)  # (32, n_bins)
    pooled = pooled.reshape(FINGERPRINT_BANDS, FINGERPRINT_MELS // FINGERPRINT_BANDS, n_bins).mean(axis=1)  # (8, n_bins)
    pooled -= pooled.mean(axis=1, keepdims=True)
    thumbnail = np.zeros((FINGERPRINT_BANDS, FINGERPRINT_BINS), dtype=np.float32)
    thumbnail[:, :n_bins] = pooled
    norm = np.linalg.norm(thumbnail)
    return (thumbnail / norm if norm > 0 else thumbnail).ravel()


class MelCache:
    """Log-mel spectrograms on disk, one ``.npz`` per song and parameter set.

    The key is the song's content hash plus a digest of everything that shaped the
    spectrogram (mel parameters, the excerpt rule's version, the separator), so a change of
    any of them misses the cache instead of returning a stale spectrogram. Only the valid
    frames are stored (float16), with the excerpt's place in the song beside them.
    """

    def __init__(self, root: Path, *, separator: str, excerpt_version: int):
        params = dict(MEL_PARAMS, separator=separator, excerpt_version=excerpt_version)
        digest = hashlib.blake2b(json.dumps(params, sort_keys=True).encode(), digest_size=6).hexdigest()
        self.directory = Path(root) / f"mel-{digest}"

    def path(self, content_hash: str) -> Path:
        return self.directory / content_hash[:2] / f"{content_hash}.npz"

    def load(self, content_hash: str) -> tuple[np.ndarray, float, float] | None:
        """(spectrogram (N_MELS, T_valid) float32, excerpt start s, song duration s), or None when absent or unreadable."""
        try:
            with np.load(self.path(content_hash)) as stored:
                return stored["log_mel"].astype(np.float32), float(stored["start_s"]), float(stored["duration_s"])
        except (OSError, ValueError, EOFError, KeyError):
            return None

    def store(self, content_hash: str, spectrogram: np.ndarray, *, start_s: float, duration_s: float) -> bool:
        """Write atomically; returns False (and leaves nothing) when the disk refuses.

        A full disk must not fail the analysis: the cache only saves time.
        """
        try:
            with atomic_path(self.path(content_hash)) as part, open(part, "wb") as f:
                np.savez(f, log_mel=spectrogram.astype(np.float16), start_s=start_s, duration_s=duration_s)
            return True
        except OSError:
            return False


def pad_frames(spectrogram: np.ndarray, *, n_frames_total: int = FRAMES_PER_EXCERPT) -> np.ndarray:
    """Pad (N_MELS, T_valid) to (N_MELS, n_frames_total) with the log floor (silence)."""
    padded = np.full((spectrogram.shape[0], n_frames_total), np.log(LOG_FLOOR), dtype=np.float32)
    t = min(spectrogram.shape[1], n_frames_total)
    padded[:, :t] = spectrogram[:, :t]
    return padded
