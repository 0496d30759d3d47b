"""Vocal separation: remove the accompaniment before listening to the voice.

One interface, :func:`separate`, over 16 kHz mono float32 excerpts, and these methods
(measured side by side in ``bench/results/separation.md``):

``none``
    the mix unchanged.
``classical``
    harmonic/percussive median-filter soft masking (FitzGerald 2010) with librosa: the
    harmonic part above the bass (REPET-SIM ran at only 8.5x real time here).
``mask``
    the project's own mask network (:mod:`nextvox.models.separator`), trained on its own
    synthetic mixtures (``nextvox train separator``); shipped weights in ``nextvox/weights``.
``demucs``
    a pretrained Demucs model that the user has on disk (``weights=``); never downloaded.

The name that enters cache keys and analysis versions is :func:`separator_version`: it
carries a hash of the weights, so new weights analyse every track again.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from nextvox.constants import SAMPLE_RATE_HZ
from nextvox.errors import MissingDependencyError, NextvoxError

__all__ = [
    "SEPARATORS",
    "DEFAULT_SEPARATOR",
    "SHIPPED_MASK_WEIGHTS",
    "check_separator",
    "separator_version",
    "separate",
    "hpss_vocals",
    "mask_vocals",
    "demucs_vocals",
    "si_sdr",
]

SEPARATORS = ("none", "classical", "mask", "demucs")
# The best singer mAP on held-out mixes at >= 200x real time per core (bench/results/separation.md).
DEFAULT_SEPARATOR = "mask"
SHIPPED_MASK_WEIGHTS = Path(__file__).parent / "weights" / "separator.pt"
CLASSICAL_VERSION = "hpss-1"  # bump when hpss_vocals' parameters change
DEMUCS_HINT = (
    "demucs needs its package and a pretrained model file: `pip install demucs` and, on a machine "
    "with internet, download a checkpoint (e.g. https://dl.fbaipublicfiles.com/demucs/hybrid_transformer/"
    "955717e8-8726e21a.th, htdemucs), then pass --separator-weights PATH"
)


def check_separator(method: str, *, weights: Path | None = None) -> None:
    """Refuse an unknown method, weights it cannot use, or a demucs without its package or weights.

    Raises
    ------
    NextvoxError
        Unknown method, weights given to a method that has none, or a mask weights file that
        does not load and run (checked once per process and file version).
    MissingDependencyError
        ``demucs`` without the package or the weights file; ``mask`` without its weights file.
    """
    if method not in SEPARATORS:
        raise NextvoxError(f"unknown separator {method!r}; choose one of: {', '.join(SEPARATORS)}")
    if weights is not None and method in ("none", "classical"):
        raise NextvoxError(f"the {method} separator takes no weights (--separator-weights is for mask and demucs)")
    if method == "demucs":
        try:
            import demucs  # noqa: F401
        except ImportError:
            raise MissingDependencyError(f"the demucs package is not installed; {DEMUCS_HINT}") from None
        if weights is None or not Path(weights).is_file():
            missing = "no weights given" if weights is None else f"no weights file at {weights}"
            raise MissingDependencyError(f"{missing}; {DEMUCS_HINT}")
    if method == "mask":
        path = Path(weights) if weights is not None else SHIPPED_MASK_WEIGHTS
        if not path.is_file():
            raise MissingDependencyError(
                f"no mask separator weights at {path}: reinstall nextvox, or train them with "
                "`nextvox train separator LIBRARY` and pass --separator-weights OUT/separator.pt"
            )
        _mask_model(str(path), path.stat().st_mtime_ns)


def separator_version(method: str, *, weights: Path | None = None) -> str:
    """The separator's name with the version of what it runs, e.g. ``mask-1a2b3c4d``.

    >>> separator_version("none")
    'none'
    """
    check_separator(method, weights=weights)
    if method == "none":
        return "none"
    if method == "classical":
        return f"classical-{CLASSICAL_VERSION}"
    from nextvox.models.separator import weights_version

    return f"{method}-{weights_version(Path(weights) if weights is not None else SHIPPED_MASK_WEIGHTS)}"


def separate(samples: np.ndarray, *, method: str, weights: Path | None = None) -> np.ndarray:
    """The vocal part of a mono excerpt.

    Parameters
    ----------
    samples : np.ndarray, shape (n,), float32
        Mono mixture at ``SAMPLE_RATE_HZ``.
    method : str
        One of ``SEPARATORS``; ``"none"`` returns the mixture unchanged.
    weights : Path, optional
        Model file of ``mask`` (default: the shipped one) or ``demucs`` (required).

    Returns
    -------
    np.ndarray, shape (n,), float32

    Raises
    ------
    NextvoxError
        See :func:`check_separator`.

    >>> separate(np.ones(4, dtype=np.float32), method="none")
    array([1., 1., 1., 1.], dtype=float32)
    """
    check_separator(method, weights=weights)
    if method == "none":
        return samples
    if method == "classical":
        return hpss_vocals(samples, sample_rate_hz=SAMPLE_RATE_HZ)
    if method == "mask":
        return mask_vocals(samples, weights=Path(weights) if weights is not None else SHIPPED_MASK_WEIGHTS)
    return demucs_vocals(samples, sample_rate_hz=SAMPLE_RATE_HZ, weights=Path(weights))


# ---- classical: HPSS --------------------------------------------------------------------------


def hpss_vocals(samples: np.ndarray, *, sample_rate_hz: int, window_s: float = 0.032, kernel_frames: int = 17,
                kernel_bins: int = 17, highpass_hz: float = 150.0) -> np.ndarray:  # fmt: skip
    """Singing voice as the harmonic part of a median-filter HPSS, above the bass.

    The harmonic soft mask (power 2) removes drums and note onsets; bins under
    ``highpass_hz`` (bass, kick) are dropped. Measured on held-out mixes, this beat
    FitzGerald's two-stage variant (whose long-window pass lost our steady singers) and
    longer windows (``bench/results/separation.md``).

    Parameters
    ----------
    samples : np.ndarray, shape (n,), float32
        Mono mix.
    sample_rate_hz : int
        Sample rate of ``samples``, Hz.
    window_s : float
        STFT window, seconds (rounded to a power-of-two number of samples; hop a quarter).
    kernel_frames, kernel_bins : int
        Median-filter lengths along time (frames) and frequency (bins).
    highpass_hz : float
        Bins below this frequency are removed, Hz.

    Returns
    -------
    np.ndarray, shape (n,), float32
    """
    import librosa

    n_fft = 1 << int(round(np.log2(window_s * sample_rate_hz)))
    spectrum = librosa.stft(samples, n_fft=n_fft, hop_length=n_fft // 4)  # (n_fft // 2 + 1, T)
    harmonic_mask, _ = librosa.decompose.hpss(np.abs(spectrum), kernel_size=(kernel_frames, kernel_bins), mask=True)
    harmonic_mask[: int(highpass_hz * n_fft / sample_rate_hz)] = 0.0
    return librosa.istft(spectrum * harmonic_mask, hop_length=n_fft // 4, length=len(samples)).astype(np.float32)


# ---- mask network ------------------------------------------------------------------------------


@lru_cache(maxsize=2)
def _mask_model(path: str, mtime_ns: int):
    """The mask network of a weights file, loaded and run once on silence, or a NextvoxError saying why not.

    A file of another kind (the timbre encoder's, a damaged copy) fails here, as one
    configuration error, and not later as a failure of every track.
    """
    import torch

    from nextvox.models.separator import load_weights, separate_batch

    del mtime_ns  # part of the cache key only: a rewritten file is loaded again
    try:
        model = load_weights(Path(path))
        with torch.inference_mode():
            separate_batch(model, torch.zeros(1, SAMPLE_RATE_HZ))
    except Exception as error:
        reason = (str(error).strip().splitlines() or [""])[0][:200]
        raise NextvoxError(f"cannot use {path} as mask separator weights ({type(error).__name__}: {reason}); "
                           "give a file written by `nextvox train separator`") from None
    return model


def mask_vocals(samples: np.ndarray, *, weights: Path, bf16: bool = True) -> np.ndarray:
    """Vocal estimate by the mask network in ``weights`` (loaded once per process).

    Parameters
    ----------
    samples : np.ndarray, shape (n,), float32
        Mono mix at 16 kHz (the rate the network was trained at).
    weights : Path
        File written by :func:`nextvox.models.separator.save_weights`.
    bf16 : bool
        bfloat16 autocast for the network (faster on CPUs with bf16 instructions).

    Returns
    -------
    np.ndarray, shape (n,), float32
    """
    import torch

    from nextvox.models.separator import separate_batch

    model = _mask_model(str(weights), Path(weights).stat().st_mtime_ns)
    with torch.inference_mode():
        audio = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))[None]  # (1, n)
        return separate_batch(model, audio, bf16=bf16)[0].numpy()


# ---- demucs (user-supplied weights) ------------------------------------------------------------


@lru_cache(maxsize=1)
def _demucs_model(path: str):
    from fractions import Fraction

    from demucs.demucs import Demucs
    from demucs.hdemucs import HDemucs
    from demucs.htdemucs import HTDemucs
    from demucs.states import load_model

    from nextvox.models.weights_file import load_tensors

    # Demucs's own format stores the model's class by reference and its segment length as a
    # Fraction beside tensors and plain settings: exactly those classes may be unpickled.
    stored = load_tensors(Path(path), allowed=(Demucs, HDemucs, HTDemucs, Fraction), what="a Demucs checkpoint",
                          advice="give a checkpoint (*.th) as Demucs's own downloader stores it")  # fmt: skip
    return load_model(stored).eval()


def demucs_vocals(samples: np.ndarray, *, sample_rate_hz: int, weights: Path) -> np.ndarray:
    """The ``vocals`` source of a pretrained Demucs model (a checkpoint file on disk).

    Parameters
    ----------
    samples : np.ndarray, shape (n,), float32
        Mono mix.
    sample_rate_hz : int
        Rate of ``samples``, Hz; resampled to the model's rate and back.
    weights : Path
        A Demucs checkpoint (``*.th``) as its own downloader stores it.

    Returns
    -------
    np.ndarray, shape (n,), float32
    """
    import soxr
    import torch
    from demucs.apply import apply_model

    model = _demucs_model(str(weights))
    rate = int(model.samplerate)
    resampled = soxr.resample(samples, sample_rate_hz, rate).astype(np.float32)
    stereo = torch.from_numpy(np.stack([resampled, resampled]))[None]  # (1, 2, n')
    with torch.inference_mode():
        sources = apply_model(model, stereo, device="cpu", progress=False)[0]  # (S, 2, n')
    vocals = sources[model.sources.index("vocals")].mean(dim=0).numpy()
    return soxr.resample(vocals, rate, sample_rate_hz)[: len(samples)].astype(np.float32)


# ---- measurement -------------------------------------------------------------------------------


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio, dB (Le Roux et al. 2019).

    Parameters
    ----------
    estimate, reference : np.ndarray, shape (n,)
        Same length; the reference is projected onto the estimate's direction.

    >>> x = np.sin(np.arange(1000) / 7.0)
    >>> round(si_sdr(2 * x, x), 1) > 100
    True
    """
    estimate = np.asarray(estimate, dtype=np.float64) - np.mean(estimate)
    reference = np.asarray(reference, dtype=np.float64) - np.mean(reference)
    target = reference * (np.dot(estimate, reference) / (np.dot(reference, reference) + 1e-12))
    noise = estimate - target
    return float(10 * np.log10((np.dot(target, target) + 1e-12) / (np.dot(noise, noise) + 1e-12)))
