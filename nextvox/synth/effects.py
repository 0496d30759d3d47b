"""Audio effects of a studio production (:mod:`nextvox.synth.production`): small pure
functions on float arrays at an explicit sample rate.

* vocal effects: :func:`reverb`, :func:`feedback_delay`;
* bus processing: :func:`compress`, :func:`limit`, :func:`set_stereo_width`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, signal

__all__ = ["reverb", "feedback_delay", "compress", "limit", "set_stereo_width"]


# ---- vocal effects -----------------------------------------------------------------------------

def reverb(vocal: np.ndarray, *, sample_rate_hz: int, rt60_s: float, seed: int, pre_delay_ms: float = 20.0) -> np.ndarray:
    """Stereo reverb return of a mono signal: convolution with decaying, darkening noise.

    Each channel's impulse response is its own exponentially decaying Gaussian noise (60 dB
    down after ``rt60_s``), low-passed more as it decays (air and walls absorb the highs), after
    a pre-delay. The return is scaled to the input's power.

    Parameters
    ----------
    vocal : np.ndarray, shape (N,)
    sample_rate_hz : int
        Hz.
    rt60_s : float
        Reverberation time, seconds, > 0.
    seed : int
        Seeds the impulse responses.
    pre_delay_ms : float
        Gap before the first reflection, milliseconds.

    Returns
    -------
    np.ndarray, float32, shape (N, 2)

    >>> x = np.zeros(1600); x[0] = 1.0
    >>> wet = reverb(x, sample_rate_hz=16000, rt60_s=0.5, seed=0)
    >>> wet.shape, bool(np.abs(wet[:300]).max() < 1e-6), bool(np.abs(wet[330:]).max() > 1e-3)
    ((1600, 2), True, True)
    """
    rng = np.random.default_rng(seed)
    n_ir = int(rt60_s * sample_rate_hz)
    t = np.arange(n_ir) / sample_rate_hz
    envelope = np.exp(-6.91 * t / rt60_s)  # ln(1000): 60 dB of decay at rt60_s
    delay = np.zeros(int(pre_delay_ms * sample_rate_hz / 1000))
    out = np.empty((len(vocal), 2), dtype=np.float32)
    for channel in range(2):
        noise = rng.standard_normal(n_ir) * envelope
        # Darkening tail: blend the noise toward a low-passed copy of itself over time.
        b, a = signal.butter(2, 2500.0 / (sample_rate_hz / 2))
        dark = signal.lfilter(b, a, noise)
        blend = np.clip(t / rt60_s, 0, 1)
        ir = np.concatenate([delay, (1 - blend) * noise + blend * dark])
        out[:, channel] = signal.fftconvolve(vocal, ir)[: len(vocal)]
    scale = np.sqrt(np.mean(vocal**2) / (np.mean(out**2) + 1e-20))
    return (out * scale).astype(np.float32)


def feedback_delay(vocal: np.ndarray, *, sample_rate_hz: int, delay_ms: float, feedback: float) -> np.ndarray:
    """Echoes only (no dry signal): repeats every ``delay_ms``, each ``feedback`` times the last.

    >>> x = np.zeros(10); x[0] = 1.0
    >>> feedback_delay(x, sample_rate_hz=1000, delay_ms=3, feedback=0.5).round(3).tolist()
    [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.25]
    """
    d = max(1, int(round(delay_ms * sample_rate_hz / 1000)))
    a = np.zeros(d + 1)
    a[0], a[d] = 1.0, -feedback
    b = np.zeros(d + 1)
    b[d] = 1.0
    return signal.lfilter(b, a, vocal).astype(np.float32)


# ---- bus processing ----------------------------------------------------------------------------

def _envelope_db(mono: np.ndarray, *, sample_rate_hz: int, window_ms: float) -> np.ndarray:
    """Running RMS level over ``window_ms``, dB."""
    n = max(1, int(window_ms * sample_rate_hz / 1000))
    power = ndimage.uniform_filter1d(mono.astype(np.float64) ** 2, n, mode="nearest")
    return 10 * np.log10(power + 1e-12)


def compress(mix: np.ndarray, *, sample_rate_hz: int, threshold_below_rms_db: float, ratio: float = 4.0,
             window_ms: float = 30.0, release_ms: float = 150.0) -> np.ndarray:  # fmt: skip
    """Bus compression: the gain (linear, per sample) that turns the level above a threshold down.

    Parameters
    ----------
    mix : np.ndarray, shape (N, 2)
    sample_rate_hz : int
        Hz.
    threshold_below_rms_db : float
        Threshold, dB below the whole mix's RMS level (> 0: louder passages are turned down).
    ratio : float
        Compression ratio (4: 4 dB in, 1 dB out above the threshold).
    window_ms, release_ms : float
        Level detector window and gain smoothing, milliseconds.

    Returns
    -------
    np.ndarray, shape (N,)
        Gain in (0, 1]; multiply both channels by it.

    >>> t = np.arange(16000) / 16000; x = np.sin(2 * np.pi * 220 * t) * np.where(t < 0.5, 0.1, 1.0)
    >>> g = compress(np.stack([x, x], 1), sample_rate_hz=16000, threshold_below_rms_db=3)
    >>> bool(g[:4000].min() > 0.99 and g[-4000:].max() < 0.9)
    True
    """
    mono = 0.5 * (mix[:, 0] + mix[:, 1])
    level = _envelope_db(mono, sample_rate_hz=sample_rate_hz, window_ms=window_ms)
    threshold = 10 * np.log10(np.mean(mono.astype(np.float64) ** 2) + 1e-12) - threshold_below_rms_db
    reduction_db = np.maximum(level - threshold, 0.0) * (1 - 1 / ratio)
    # Gain changes are smoothed (release); the detector window already slows the attack.
    n = max(1, int(release_ms * sample_rate_hz / 1000))
    reduction_db = ndimage.uniform_filter1d(ndimage.maximum_filter1d(reduction_db, n), n)
    return 10 ** (-reduction_db / 20)


def limit(mix: np.ndarray, *, sample_rate_hz: int, drive_db: float, ceiling: float = 0.89, release_ms: float = 60.0) -> np.ndarray:
    """Peak limiting: the gain (per sample) that keeps ``mix`` driven by ``drive_db`` under ``ceiling``.

    The gain looks ahead (a running minimum over ``release_ms`` centred on each sample), so peaks
    are held down without clipping.

    Returns
    -------
    np.ndarray, shape (N,)
        Gain including the drive (multiply both channels by it).

    >>> x = np.ones((100, 2)) * 0.5; x[50] = 2.0
    >>> g = limit(x, sample_rate_hz=1000, drive_db=0.0, ceiling=1.0, release_ms=5)
    >>> float(np.abs(x[:, 0] * g).max()) <= 1.0 + 1e-9, float(g[0])
    (True, 1.0)
    """
    drive = 10 ** (drive_db / 20)
    peak = np.abs(mix).max(axis=1) * drive
    needed = np.minimum(1.0, ceiling / np.maximum(peak, 1e-12))
    n = max(1, int(release_ms * sample_rate_hz / 1000))
    smooth = ndimage.minimum_filter1d(needed, 2 * n + 1)
    smooth = np.minimum(ndimage.uniform_filter1d(smooth, n), needed)  # smoothing never lets a peak through
    return drive * smooth


def set_stereo_width(stereo: np.ndarray, *, width: float) -> np.ndarray:
    """Scale the side signal (L−R)/2 by ``width`` (0: mono, 1: unchanged).

    >>> set_stereo_width(np.array([[1.0, 0.0]]), width=0.0).tolist()
    [[0.5, 0.5]]
    """
    mid = 0.5 * (stereo[:, 0] + stereo[:, 1])
    side = 0.5 * (stereo[:, 0] - stereo[:, 1]) * width
    return np.stack([mid + side, mid - side], axis=1)
