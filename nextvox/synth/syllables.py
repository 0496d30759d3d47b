"""Syllable banks: each voice speaks a small syllable set once; WORLD analyses it for singing.

Speaking engines (festival, flite, espeak-ng) ignore a musical score, and starting one per
note would cost more than the rest of a song. So a voice says each of :data:`SYLLABLES`
once, in one engine run, and the WORLD analysis of every syllable (spectral envelope,
aperiodicity, voicing, where its vowel is) is cached in one ``.npz`` file per voice.
:mod:`nextvox.synth.singing` then stretches those frames to each note's length.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from nextvox.constants import SAMPLE_RATE_HZ
from nextvox.errors import NextvoxError
from nextvox.synth.voices import Voice
from nextvox.synth.world import FFT_SIZE, FRAME_PERIOD_MS, pyworld
from nextvox.files import atomic_path

__all__ = ["SYLLABLES", "SyllableBank", "build_bank", "load_bank", "analyse_syllable", "breathy_aperiodicity"]

BANK_VERSION = 1  # bump when the analysis changes, so old caches are rebuilt

# Voiced consonants (l, n, m) keep the pitch going through the syllable; d gives attacks.
SYLLABLES = tuple(c + v for c in "lnmd" for v in "aiou")

# The text each language's letter-to-sound rules turn into the syllable.
_ENGLISH = {
    "la": "lah", "li": "lee", "lo": "low", "lu": "loo",
    "na": "nah", "ni": "knee", "no": "no", "nu": "noo",
    "ma": "mah", "mi": "me", "mo": "mow", "mu": "moo",
    "da": "dah", "di": "dee", "do": "doe", "du": "do",
}  # fmt: skip
_CYRILLIC = str.maketrans({"l": "л", "n": "н", "m": "м", "d": "д", "a": "а", "i": "и", "o": "о", "u": "у"})


def syllable_text(*, syllable: str, language: str) -> str:
    """The text to give an engine of ``language`` so that it says ``syllable``.

    Examples
    --------
    >>> syllable_text(syllable="mi", language="en"), syllable_text(syllable="mi", language="ru")
    ('me', 'ми')
    """
    if language == "en":
        return _ENGLISH[syllable]
    if language == "ru":
        return syllable.translate(_CYRILLIC)
    return syllable  # Catalan and MBROLA's languages read the Latin spelling as written


@dataclass(frozen=True)
class SyllableBank:
    """WORLD frames of every syllable of one voice, concatenated.

    Attributes
    ----------
    sp : np.ndarray, shape (F, FFT_SIZE // 2 + 1)
        Spectral envelope (power), each syllable scaled so its vowel has unit mean power.
    ap : np.ndarray, shape (F, FFT_SIZE // 2 + 1)
        Aperiodicity, 0..1.
    voiced : np.ndarray of bool, shape (F,)
        Frames WORLD found voiced.
    starts : np.ndarray of int, shape (S + 1,)
        Frame where syllable ``s`` begins (``starts[s]``) and ends (``starts[s + 1]``).
    core : np.ndarray of int, shape (S, 2)
        Start and end frame of each syllable's vowel, relative to the syllable's start.
    """

    sp: np.ndarray
    ap: np.ndarray
    voiced: np.ndarray
    starts: np.ndarray
    core: np.ndarray


def analyse_syllable(*, wave: np.ndarray, sample_rate_hz: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """WORLD analysis of one spoken syllable.

    Parameters
    ----------
    wave : np.ndarray, shape (N,)
        The syllable, mono float, at ``sample_rate_hz``.
    sample_rate_hz : int
        Must be :data:`nextvox.constants.SAMPLE_RATE_HZ`.

    Returns
    -------
    sp, ap : np.ndarray, shape (F, FFT_SIZE // 2 + 1)
        Envelope scaled to unit mean vowel power, and aperiodicity (5 ms frames).
    voiced : np.ndarray of bool, shape (F,)
    core_start, core_end : int
        Frames of the vowel: the voiced frames within 6 dB of the loudest.
    """
    if sample_rate_hz != SAMPLE_RATE_HZ:
        raise NextvoxError(f"syllables are analysed at {SAMPLE_RATE_HZ} Hz, got {sample_rate_hz}")
    # Analyse the whole utterance and cut its silence afterwards: dio misses the voicing of
    # a short syllable cut out tightly.
    x = wave.astype(np.float64)
    f0, t = pyworld.dio(x, sample_rate_hz, f0_floor=60.0, f0_ceil=600.0, frame_period=FRAME_PERIOD_MS)
    f0 = pyworld.stonemask(x, f0, t, sample_rate_hz)
    if np.count_nonzero(f0) < 0.2 * len(f0):  # dio lost the voicing: harvest is slower but sturdier
        f0, t = pyworld.harvest(x, sample_rate_hz, f0_floor=60.0, f0_ceil=600.0, frame_period=FRAME_PERIOD_MS)
    sp = pyworld.cheaptrick(x, f0, t, sample_rate_hz, fft_size=FFT_SIZE)
    ap = pyworld.d4c(x, f0, t, sample_rate_hz, fft_size=FFT_SIZE)
    power_db = 10 * np.log10(sp.mean(axis=1) + 1e-20)
    sounding = np.flatnonzero(power_db > power_db.max() - 35.0)
    keep = slice(sounding[0], sounding[-1] + 1)
    sp, ap, power_db, voiced = sp[keep], ap[keep], power_db[keep], f0[keep] > 0
    loud = np.flatnonzero(voiced & (power_db >= power_db[voiced].max() - 6.0)) if voiced.any() else []
    if len(loud) < 2:
        raise NextvoxError("a speech engine returned a syllable without a voiced vowel")
    core_start, core_end = int(loud[0]), int(loud[-1]) + 1
    sp = sp / sp[core_start:core_end].mean()
    return sp.astype(np.float32), ap.astype(np.float32), voiced, core_start, core_end


def _speak(*, voice: Voice, work_dir: Path) -> list[tuple[np.ndarray, int]]:
    """Have the engine say every syllable; returns (wave, sample rate) per syllable."""
    texts = [syllable_text(syllable=s, language=voice.language) for s in SYLLABLES]
    paths = [work_dir / f"{i:02d}.wav" for i in range(len(texts))]
    if voice.engine == "festival":
        # One festival process for all syllables: its start-up dominates a single syllable.
        lines = [f"(voice_{voice.name})"] + [
            f'(utt.save.wave (utt.synth (Utterance Text "{text}")) "{path}" \'riff)' for text, path in zip(texts, paths)
        ]
        script = work_dir / "syllables.scm"
        script.write_text("\n".join(lines) + "\n", encoding="utf-8")
        commands = [["festival", "-b", str(script)]]
    elif voice.engine == "flite":
        commands = [["flite", "-voice", voice.name, "-t", text, "-o", str(p)] for text, p in zip(texts, paths)]
    elif voice.engine == "espeak-ng":
        commands = [["espeak-ng", "-v", voice.name, "-w", str(p), text] for text, p in zip(texts, paths)]
    else:
        raise NextvoxError(f"engine {voice.engine!r} does not speak syllables")
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=work_dir)
        if done.returncode != 0:
            raise NextvoxError(f"{command[0]} failed for voice {voice.voice_id}: {done.stderr.strip()[:200]}")
    waves = []
    for path in paths:
        if not path.exists():
            raise NextvoxError(f"{voice.engine} wrote no audio for voice {voice.voice_id}")
        wave, rate = sf.read(path, dtype="float64", always_2d=True)
        waves.append((wave[:, 0], rate))
    return waves


def build_bank(*, voice: Voice, cache_dir: Path) -> Path:
    """Speak and analyse every syllable of ``voice`` once; return the cached ``.npz`` path.

    An existing, current cache file is reused. The file is written under a temporary name
    and renamed, so concurrent or interrupted runs never read half a bank.
    """
    path = cache_dir / f"{voice.voice_id.replace(':', '_').replace('+', '_')}.v{BANK_VERSION}.npz"
    if path.exists():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        spoken = _speak(voice=voice, work_dir=Path(tmp))
        parts = []
        for wave, rate in spoken:
            if rate != SAMPLE_RATE_HZ:
                wave = soxr.resample(wave, rate, SAMPLE_RATE_HZ)
            parts.append(analyse_syllable(wave=wave, sample_rate_hz=SAMPLE_RATE_HZ))
    lengths = [len(p[2]) for p in parts]
    with atomic_path(path) as part:
        np.savez(
            part,
            sp=np.concatenate([p[0] for p in parts]),
            ap=np.concatenate([p[1] for p in parts]),
            voiced=np.concatenate([p[2] for p in parts]),
            starts=np.concatenate([[0], np.cumsum(lengths)]),
            core=np.array([[p[3], p[4]] for p in parts]),
        )
    return path


def warp_envelope(*, frames: np.ndarray, factor: float) -> np.ndarray:
    """Move formants by ``factor`` (vocal-tract length change): out(f) = frames(f / factor).

    Parameters
    ----------
    frames : np.ndarray, shape (F, K)
        Spectral envelope or aperiodicity on K linear frequency bins.
    factor : float
        Above 1 raises formants (a shorter tract); 1.0 returns ``frames`` unchanged.

    Examples
    --------
    >>> warp_envelope(frames=np.array([[0.0, 1.0, 2.0, 3.0, 4.0]]), factor=2.0).tolist()
    [[0.0, 0.5, 1.0, 1.5, 2.0]]
    """
    if factor == 1.0:
        return frames
    k = frames.shape[1]
    source = np.arange(k) / factor
    lo = np.clip(np.floor(source).astype(int), 0, k - 1)
    hi = np.clip(lo + 1, 0, k - 1)
    w = (source - lo).astype(frames.dtype)
    return frames[:, lo] * (1 - w) + frames[:, hi] * w


def breathy_aperiodicity(*, ap: np.ndarray, amount: float) -> np.ndarray:
    """Add breath noise: move aperiodicity toward 1, more so at high frequencies.

    ``ap + (1 - ap) * amount * sqrt(f / f_max)``: a breathy voice leaks air through a glottis
    that never quite closes, and the leak is heard as noise above the low harmonics.

    Parameters
    ----------
    ap : np.ndarray, shape (F, K)
        WORLD aperiodicity in [0, 1] on K linear frequency bins (0 Hz … Nyquist).
    amount : float
        0 leaves ``ap`` unchanged, 1 makes the top bin pure noise.

    Examples
    --------
    >>> breathy_aperiodicity(ap=np.array([[0.0, 0.0, 0.5]]), amount=0.5).round(3).tolist()
    [[0.0, 0.354, 0.75]]
    """
    if amount == 0.0:
        return ap
    ramp = np.sqrt(np.linspace(0.0, 1.0, ap.shape[1])).astype(ap.dtype)
    return ap + (1 - ap) * amount * ramp


def load_bank(*, path: Path, warp: float, breathiness: float = 0.0) -> SyllableBank:
    """Read a cached bank and apply a singer's vocal-tract ``warp`` and ``breathiness`` (0…1)."""
    with np.load(path) as data:
        return SyllableBank(
            sp=warp_envelope(frames=data["sp"], factor=warp),
            ap=breathy_aperiodicity(ap=warp_envelope(frames=data["ap"], factor=warp), amount=breathiness),
            voiced=data["voiced"],
            starts=data["starts"],
            core=data["core"],
        )
