"""Seeded augmentations of log-mel spectrograms for contrastive training, one small module each.

Every transform works on a batch of natural-log mel power spectrograms, shape
``(B, N_MELS, T)``, and draws its random numbers from the ``torch.Generator`` it is given,
so a run is reproduced by its seed. They act on the spectrogram, not on the audio: a real
pitch shifter or time stretcher per crop costs more than the encoder's whole training step
on 2 cores. Each spectrogram transform stands for an audio transform:

=================  ==========================================================================
``TimeStretch``    resampling the frame axis: a crop of ``round(T * rate)`` frames is read
                   and linearly resampled to ``T`` frames, as a phase vocoder keeps each
                   frame's spectrum and changes how fast frames pass (tempo x rate, pitch
                   kept).
``PitchShift``     warping the mel axis: the band centred at f takes the (interpolated) value
                   found at f / 2^(s/12). This is a resampling pitch shift: harmonics *and*
                   formants move by s semitones, as ``librosa.effects.pitch_shift`` (stretch
                   then resample) moves them. Measured against that audio transform in
                   tests/test_timbre.py: the spectral peak of a tone lands within one mel band
                   of where the audio pitch shift puts it.
``RegisterShift``  a pitch shift that keeps the formants: the log-mel's smooth spectral
                   envelope (its first ``ENVELOPE_COEFFICIENTS`` cepstral coefficients) stays
                   put while the rest, the harmonics, is warped as ``PitchShift`` warps it, as
                   a formant-preserving pitch shifter (PSOLA, a vocoder) sings the same voice
                   higher or lower.
``Gain``           adding log(g) to the power above the log floor (exact: the log floor
                   stays).
``Equalizer``      adding a smooth curve over the bands (a tilt and one bell, dB), as a
                   linear filter's per-band power gain.
``Noise``          adding white-noise power to every band (each band's response to white
                   noise, from the mel matrix), at a random SNR.
``BackgroundMix``  adding another excerpt's power under the crop at a random level below it
                   (log-mixup-exp, Niizumi et al., "BYOL for Audio", IJCNN 2021): the voice
                   stays, what is behind it changes, as in a song's mix.
``Reverb``         adding the crop's power smeared forward in time by an exponentially decaying
                   tail (power falls 60 dB in RT60 seconds), as a room's diffuse tail adds the
                   voice's past to every frame: power-domain convolution with the tail's
                   envelope, exact for a diffuse tail and ignoring its early reflections.
``Harmony``        adding the crop's own register-shifted copy (a third to a fifth away,
                   formants kept) under it, as a backing harmony or a double-tracked take by
                   the same singer sits under the lead in a produced song.
=================  ==========================================================================

Ranges (the "why" of each default is beside it) are those of the transforms' ``__init__``.
The *role* of pitch shift and time stretch (``positive``, ``negative`` or ``off``, after
Yakura et al. 2022) is decided by the training loop (:mod:`nextvox.training`), which calls
:meth:`PitchShift.negative` / :meth:`TimeStretch.negative` for the extra negatives: those
draw from ranges that clearly change the voice or the singing, not from the positive range.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nextvox.constants import FRAME_RATE_HZ, N_MELS
from nextvox.features import LOG_FLOOR, MEL_PARAMS, mel_frequencies_hz

__all__ = [
    "ROLES",
    "mel_band_hz",
    "random_crops",
    "TimeStretch",
    "PitchShift",
    "RegisterShift",
    "envelope",
    "Gain",
    "Equalizer",
    "Noise",
    "BackgroundMix",
    "Reverb",
    "Harmony",
    "ViewAugment",
]

ROLES = ("positive", "negative", "off")
LOG_FLOOR_NAT = math.log(LOG_FLOOR)
DB_TO_NAT = math.log(10.0) / 10.0  # power dB -> natural log of power


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _random_sign(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)


@lru_cache(maxsize=1)
def mel_band_hz() -> np.ndarray:
    """Centre frequency of each of the N_MELS bands, Hz, shape (N_MELS,) (librosa's Slaney mel scale)."""
    edges = mel_frequencies_hz(N_MELS + 2, fmin_hz=MEL_PARAMS["fmin_hz"], fmax_hz=MEL_PARAMS["fmax_hz"])
    return edges[1:-1]


@lru_cache(maxsize=1)
def _white_noise_band_power() -> torch.Tensor:
    """Each band's power for white noise of unit power per STFT bin, shape (N_MELS, 1)."""
    from nextvox.features import mel_basis

    return mel_basis().sum(dim=1, keepdim=True)


def random_crops(
    spectrograms: list[torch.Tensor], indices: torch.Tensor, *, source_frames: torch.Tensor, generator: torch.Generator
) -> list[torch.Tensor]:
    """A crop of ``source_frames[i]`` frames at a random start of ``spectrograms[indices[i]]``.

    Parameters
    ----------
    spectrograms : list of torch.Tensor, each (N_MELS, T_j)
    indices : torch.Tensor, shape (B,), int
    source_frames : torch.Tensor, shape (B,), int
        Frames to read; a spectrogram shorter than that is read whole.
    generator : torch.Generator

    Returns
    -------
    list of B tensors, (N_MELS, min(source_frames[i], T))
    """
    crops = []
    for index, frames in zip(indices.tolist(), source_frames.tolist()):
        source = spectrograms[index]
        room = max(source.shape[1] - frames, 0)
        start = int(torch.randint(room + 1, (1,), generator=generator))
        crops.append(source[:, start : start + frames].float())
    return crops


class TimeStretch(nn.Module):
    """Tempo x ``rate`` with the pitch kept, on the frame axis.

    Parameters
    ----------
    max_rate : float
        Positive role: rate log-uniform in [1/max_rate, max_rate]. 1.25: a singer's tempo
        varies this much between performances of one song.
    negative_rates : (float, float)
        Negative role: rate magnitude log-uniform in this range, up or down. 1.4-1.8: well
        beyond any natural rendition, so the copy sings differently.
    """

    def __init__(self, *, max_rate: float = 1.25, negative_rates: tuple[float, float] = (1.4, 1.8)):
        super().__init__()
        self.max_rate = max_rate
        self.negative_rates = negative_rates

    def rates(self, n: int, *, generator: torch.Generator, negative: bool = False) -> torch.Tensor:
        """(n,) tempo factors for the positive (default) or negative role."""
        if negative:
            low, high = (math.log(r) for r in self.negative_rates)
            return torch.exp(_random_sign(n, generator) * _uniform(n, low, high, generator))
        return torch.exp(_uniform(n, -math.log(self.max_rate), math.log(self.max_rate), generator))

    @staticmethod
    def source_frames(rates: torch.Tensor, crop_frames: int) -> torch.Tensor:
        """Frames to read so that ``rate`` x faster playback fills ``crop_frames``: (B,) int."""
        return torch.round(rates * crop_frames).long()

    @staticmethod
    def forward(crops: list[torch.Tensor], crop_frames: int) -> torch.Tensor:
        """Resample every crop (N_MELS, T_i) to ``crop_frames`` frames: (B, N_MELS, crop_frames)."""
        out = [
            c if c.shape[1] == crop_frames else F.interpolate(c[None], size=crop_frames, mode="linear", align_corners=True)[0]
            for c in crops
        ]
        return torch.stack(out)  # (B, F, crop_frames)


class PitchShift(nn.Module):
    """Shift by ``s`` semitones (harmonics and formants together) by warping the mel axis.

    Parameters
    ----------
    max_semitones : float
        Positive role: s uniform in [-max, max]. 2: a key change that keeps a voice
        recognisably itself (formants move 12 %).
    negative_semitones : (float, float)
        Negative role: |s| uniform in this range, up or down. 3-5: formants move 19-33 %,
        the distance between typical female and male vocal tracts: another voice.
    """

    def __init__(self, *, max_semitones: float = 2.0, negative_semitones: tuple[float, float] = (3.0, 5.0)):
        super().__init__()
        self.max_semitones = max_semitones
        self.negative_semitones = negative_semitones
        self.register_buffer("band_hz", torch.from_numpy(mel_band_hz().astype(np.float32)), persistent=False)

    def semitones(self, n: int, *, generator: torch.Generator, negative: bool = False) -> torch.Tensor:
        """(n,) shifts for the positive (default) or negative role."""
        if negative:
            return _random_sign(n, generator) * _uniform(n, *self.negative_semitones, generator)
        return _uniform(n, -self.max_semitones, self.max_semitones, generator)

    def forward(self, x: torch.Tensor, semitones: torch.Tensor) -> torch.Tensor:
        """Shift (B, N_MELS, T) by ``semitones`` (B,); bands fed from outside the range take the edge band."""
        source_hz = self.band_hz[None, :] / torch.pow(2.0, semitones[:, None] / 12.0)  # (B, F)
        # Fractional band index of each source frequency (the band centres are increasing).
        position = torch.searchsorted(self.band_hz, source_hz.contiguous()).clamp(1, N_MELS - 1)  # (B, F)
        low_hz, high_hz = self.band_hz[position - 1], self.band_hz[position]
        weight = ((source_hz - low_hz) / (high_hz - low_hz)).clamp(0.0, 1.0)[..., None]  # (B, F, 1)
        below = torch.gather(x, 1, (position - 1)[..., None].expand(-1, -1, x.shape[2]))  # (B, F, T)
        above = torch.gather(x, 1, position[..., None].expand(-1, -1, x.shape[2]))
        return below + weight * (above - below)


ENVELOPE_COEFFICIENTS = 12  # cepstral coefficients kept as the envelope: detail of about 4 of the 48 bands, smoother than the harmonics


@lru_cache(maxsize=1)
def _envelope_projection() -> torch.Tensor:
    """(N_MELS, N_MELS) matrix that keeps a log-mel frame's lowest ENVELOPE_COEFFICIENTS cepstral coefficients."""
    from scipy.fft import dct

    basis = dct(np.eye(N_MELS), type=2, norm="ortho", axis=0)  # (coefficient, band), orthonormal
    kept = basis[:ENVELOPE_COEFFICIENTS]
    return torch.from_numpy((kept.T @ kept).astype(np.float32))


def envelope(x: torch.Tensor) -> torch.Tensor:
    """The smooth spectral envelope of (B, N_MELS, T) log-mel frames (cepstral liftering), same shape."""
    return torch.einsum("gf,bft->bgt", _envelope_projection(), x)


class RegisterShift(nn.Module):
    """Shift by ``s`` semitones with the spectral envelope (the formants, the voice) kept in place.

    Parameters
    ----------
    max_semitones : float
        s uniform in [-max, max].
    """

    def __init__(self, *, max_semitones: float = 4.0):
        super().__init__()
        self.max_semitones = max_semitones
        self.shift = PitchShift()

    def semitones(self, n: int, *, generator: torch.Generator) -> torch.Tensor:
        return _uniform(n, -self.max_semitones, self.max_semitones, generator)

    def forward(self, x: torch.Tensor, semitones: torch.Tensor) -> torch.Tensor:
        """Shift (B, N_MELS, T) by ``semitones`` (B,)."""
        smooth = envelope(x)  # (B, F, T)
        return smooth + self.shift(x - smooth, semitones)


class Gain(nn.Module):
    """Level change of ``±max_db`` (uniform), applied to the power above the log floor."""

    def __init__(self, *, max_db: float = 6.0):
        super().__init__()
        self.max_db = max_db

    def forward(self, x: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        gain = torch.exp(_uniform(x.shape[0], -self.max_db, self.max_db, generator) * DB_TO_NAT)[:, None, None]
        return torch.log((torch.exp(x) - LOG_FLOOR).clamp_min(0.0) * gain + LOG_FLOOR)


class Equalizer(nn.Module):
    """A random tilt (±``max_tilt_db`` from lowest to highest band) and one bell (±``max_bell_db``, 3 bands wide)."""

    def __init__(self, *, max_tilt_db: float = 6.0, max_bell_db: float = 4.0):
        super().__init__()
        self.max_tilt_db = max_tilt_db
        self.max_bell_db = max_bell_db

    def forward(self, x: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        b = x.shape[0]
        bands = torch.linspace(-0.5, 0.5, N_MELS)[None, :]  # (1, F)
        tilt = _uniform(b, -self.max_tilt_db, self.max_tilt_db, generator)[:, None] * bands
        centre = _uniform(b, 0, N_MELS - 1, generator)[:, None]
        bell = _uniform(b, -self.max_bell_db, self.max_bell_db, generator)[:, None]
        curve_db = tilt + bell * torch.exp(-0.5 * ((torch.arange(N_MELS)[None, :] - centre) / 3.0) ** 2)  # (B, F)
        return x + curve_db[:, :, None] * DB_TO_NAT


class Noise(nn.Module):
    """White noise at an SNR uniform in [``min_snr_db``, ``max_snr_db``] against the crop's mean power.

    40 dB: inaudible under a voice; 20 dB: a quiet hiss, as in a home recording.
    """

    def __init__(self, *, min_snr_db: float = 20.0, max_snr_db: float = 40.0):
        super().__init__()
        self.min_snr_db, self.max_snr_db = min_snr_db, max_snr_db

    def forward(self, x: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        power = torch.exp(x)  # (B, F, T)
        snr = torch.exp(_uniform(x.shape[0], self.min_snr_db, self.max_snr_db, generator) * DB_TO_NAT)[:, None, None]
        shape = _white_noise_band_power()  # (F, 1)
        noise = power.mean(dim=(1, 2), keepdim=True) / snr * shape / shape.mean()
        return torch.log(power + noise)


class BackgroundMix(nn.Module):
    """Another excerpt's power added under the crop, ``min_db``-``max_db`` below its mean power.

    0-12 dB below: a song's accompaniment sits about there under its voice; below 0 dB the
    other sound could take over and the view would no longer be of this voice.
    """

    def __init__(self, *, min_db: float = 0.0, max_db: float = 12.0):
        super().__init__()
        self.min_db, self.max_db = min_db, max_db

    def forward(self, x: torch.Tensor, background: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        """Mix (B, F, T) ``background`` under (B, F, T) ``x``."""
        power, under = torch.exp(x), torch.exp(background)
        below = torch.exp(-_uniform(x.shape[0], self.min_db, self.max_db, generator) * DB_TO_NAT)[:, None, None]
        scale = below * power.mean(dim=(1, 2), keepdim=True) / under.mean(dim=(1, 2), keepdim=True).clamp_min(1e-12)
        return torch.log(power + scale * under)


class Reverb(nn.Module):
    """A diffuse reverb tail on each crop with probability ``probability``, RT60 and wet level drawn per crop.

    Parameters
    ----------
    probability : float
        Share of the crops that get a tail; the others pass unchanged.
    rt60_s : (float, float)
        RT60 uniform in this range, seconds. 0.3-2.5 s: a small room to a long plate, the
        range the generator's studio production draws (docs/synth.md).
    wet_db : (float, float)
        The tail's total power relative to the dry crop's, dB, uniform in this range.
    """

    def __init__(self, *, probability: float = 0.5, rt60_s: tuple[float, float] = (0.3, 2.5),
                 wet_db: tuple[float, float] = (-12.0, 0.0)):  # fmt: skip
        super().__init__()
        self.probability, self.rt60_s, self.wet_db = probability, rt60_s, wet_db

    @staticmethod
    def tail(rt60_s: torch.Tensor, frames: int) -> torch.Tensor:
        """Power envelope of each tail over frames 1 ... ``frames``, summing to 1: (B, frames)."""
        lag_s = torch.arange(1, frames + 1, dtype=torch.float32)[None, :] / FRAME_RATE_HZ  # (1, K)
        decay = torch.exp(-6.0 * math.log(10.0) * lag_s / rt60_s[:, None])  # 60 dB of power in RT60
        return decay / decay.sum(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        """(B, F, T) log-mel with the tail's power added, same shape."""
        b, _, t = x.shape
        rt60 = _uniform(b, *self.rt60_s, generator)
        wet = torch.exp(_uniform(b, *self.wet_db, generator) * DB_TO_NAT)
        on = (torch.rand(b, generator=generator) < self.probability).float()
        kernel = torch.cat([torch.zeros(b, 1), self.tail(rt60, t - 1)], dim=1) * (wet * on)[:, None]  # (B, T), lag 0 first
        power = torch.exp(x.double())  # float64: float32 FFT round-off (1e-7 of the peak) would lift quiet frames
        n = 2 * t  # zero-padded: a linear, causal convolution along time
        smeared = torch.fft.irfft(torch.fft.rfft(power, n=n) * torch.fft.rfft(kernel.double(), n=n)[:, None, :], n=n)[..., :t]
        return torch.log(power + smeared.clamp_min(0.0)).to(x.dtype)


class Harmony(nn.Module):
    """The crop's own register-shifted copy under it with probability ``probability``.

    Parameters
    ----------
    probability : float
        Share of the crops that get a harmony.
    intervals : tuple of float
        Semitones the harmony sits away from the lead, one drawn per crop: thirds, fourths and
        fifths above and below, the intervals of the generator's backing harmonies.
    level_db : (float, float)
        The copy's level under the lead, dB below, uniform in this range: 3-12 dB, a backing
        vocal under its lead.
    """

    def __init__(self, *, probability: float = 0.3, intervals: tuple[float, ...] = (-7.0, -5.0, -4.0, -3.0, 3.0, 4.0, 5.0, 7.0),
                 level_db: tuple[float, float] = (3.0, 12.0)):  # fmt: skip
        super().__init__()
        self.probability, self.level_db = probability, level_db
        self.register_buffer("intervals", torch.tensor(intervals), persistent=False)
        self.shift = RegisterShift()

    def forward(self, x: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        """(B, F, T) log-mel with the copy's power added, same shape."""
        b = x.shape[0]
        semitones = self.intervals[torch.randint(len(self.intervals), (b,), generator=generator)]
        below = torch.exp(-_uniform(b, *self.level_db, generator) * DB_TO_NAT)
        on = (torch.rand(b, generator=generator) < self.probability).float()
        copy = torch.exp(self.shift(x, semitones)) * (below * on)[:, None, None]
        return torch.log(torch.exp(x) + copy)


class ViewAugment(nn.Module):
    """The ordinary augmentations every view gets, after its crop (and stretch, shift): background, EQ, noise, gain.

    Parameters
    ----------
    background_max_db : float
        How far below the view another excerpt may be mixed (:class:`BackgroundMix`'s ``max_db``).
    production : bool
        Also a backing harmony (:class:`Harmony`) and a reverb tail (:class:`Reverb`) on some
        views, before the background: what a studio production does to the voice itself.
    """

    def __init__(self, *, background_max_db: float = 12.0, production: bool = False):
        super().__init__()
        self.production = production
        self.harmony, self.reverb = Harmony(), Reverb()
        self.background = BackgroundMix(max_db=background_max_db)
        self.equalizer = Equalizer()
        self.noise = Noise()
        self.gain = Gain()

    def forward(self, x: torch.Tensor, background: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        if self.production:
            x = self.reverb(self.harmony(x, generator=generator), generator=generator)
        x = self.background(x, background, generator=generator)
        x = self.equalizer(x, generator=generator)
        x = self.noise(x, generator=generator)
        return self.gain(x, generator=generator)
