"""MBROLA singers for the "train" library (installed by ``scripts/install-mbrola.sh``).

MBROLA takes phonemes with explicit durations and pitch targets, so it sings a score
directly: espeak-ng's ``mb-XX`` voice gives each syllable's phonemes, the vowel is given
the rest of the note, and every phoneme the note's pitch. MBROLA can only make whole-sample
pitch periods (f0 = 16000 / floor(16000 / f): sharp by up to ~36 cents near C5), so its
output is tuned afterwards: WORLD re-imposes the exact note contour (with the same glides
and vibrato as the other singers) on the frames MBROLA voiced.

Which MBROLA voices may sing, and which of them are held out, is the registry's
(:mod:`nextvox.synth.voices`: ``PERMITTED_VOICES``, ``EVAL_VOICES``,
``installed_mbrola_singers``, importable from here too). MBROLA voices are licensed for
non-commercial use only.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from nextvox.constants import SAMPLE_RATE_HZ
from nextvox.errors import NextvoxError
from nextvox.synth.syllables import SYLLABLES, syllable_text
from nextvox.synth.voices import EVAL_VOICES, MBROLA_VOICE_ROOT, PERMITTED_VOICES, Voice, installed_mbrola_singers
from nextvox.synth.world import FFT_SIZE, FRAME_PERIOD_MS, midi_to_hz, pyworld, sung_notes, synthesize
from nextvox.files import write_text_atomic

__all__ = ["PERMITTED_VOICES", "EVAL_VOICES", "installed_mbrola_singers", "build_phonemes", "render_vocal_mbrola"]

MAX_CONSONANT_MS = 120.0  # consonants keep their spoken length up to this
PHONEME_CACHE_VERSION = 1


def _parse_pho(text: str) -> list[tuple[str, float]]:
    """(phoneme, duration ms) of a .pho text, silences left out."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and not line.startswith(";") and fields[0] != "_":
            out.append((fields[0], float(fields[1])))
    return out


def build_phonemes(*, voice: Voice, cache_dir: Path) -> Path:
    """espeak-ng's phonemes for every syllable of :data:`SYLLABLES`, cached as JSON."""
    path = cache_dir / f"mbrola_{voice.name}.v{PHONEME_CACHE_VERSION}.json"
    if path.exists():
        return path
    phonemes = {}
    for syllable in SYLLABLES:
        text = syllable_text(syllable=syllable, language=voice.language.split("-")[0])
        done = subprocess.run(["espeak-ng", "-v", f"mb-{voice.name}", "-q", "--pho", text], capture_output=True,
                              text=True, check=False)  # fmt: skip
        parsed = _parse_pho(done.stdout)
        if done.returncode != 0 or not parsed:
            raise NextvoxError(f"espeak-ng gave no phonemes for {voice.voice_id}: {done.stderr.strip()[:200]}")
        phonemes[syllable] = parsed
    return write_text_atomic(path, json.dumps(phonemes))


def _score_pho(*, onset_s: np.ndarray, duration_s: np.ndarray, pitch_midi: np.ndarray, syllable_index: np.ndarray,
               phonemes: dict[str, list], total_s: float) -> str:  # fmt: skip
    """The .pho of a song: each note's syllable, its longest phoneme (the vowel) filling the note."""
    lines, now_ms = [], 0.0
    for onset, duration, midi, syllable in zip(onset_s * 1000, duration_s * 1000, pitch_midi, syllable_index):
        if onset > now_ms + 1:
            lines.append(f"_ {onset - now_ms:.0f}")
        parts = phonemes[SYLLABLES[syllable]]
        nucleus = int(np.argmax([d for _, d in parts]))
        others = [min(d, MAX_CONSONANT_MS, duration / (2 * len(parts))) for _, d in parts]
        others[nucleus] = duration - (sum(others) - others[nucleus])
        hz = float(midi_to_hz(midi))
        lines += [f"{name} {length:.0f} 0 {hz:.1f} 100 {hz:.1f}" for (name, _), length in zip(parts, others)]
        now_ms = onset + duration
    lines.append(f"_ {max(total_s * 1000 - now_ms, 10):.0f}")
    return "\n".join(lines) + "\n"


def render_vocal_mbrola(
    *, onset_s: np.ndarray, duration_s: np.ndarray, pitch_midi: np.ndarray, syllable_index: np.ndarray,
    voice: Voice, phoneme_path: Path, total_s: float, vibrato_rate_hz: float, vibrato_depth_cents: float,
    gain_db: np.ndarray, seed: int,
) -> np.ndarray:  # fmt: skip
    """Sing notes with an MBROLA voice; arguments as :func:`nextvox.synth.singing.render_vocal`.

    Returns
    -------
    np.ndarray, float32, shape (round(total_s * SAMPLE_RATE_HZ),)
    """
    phonemes = json.loads(phoneme_path.read_text(encoding="utf-8"))
    pho = _score_pho(onset_s=onset_s, duration_s=duration_s, pitch_midi=pitch_midi, syllable_index=syllable_index,
                     phonemes=phonemes, total_s=total_s)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "song.pho").write_text(pho, encoding="utf-8")
        done = subprocess.run(["mbrola", "-e", str(MBROLA_VOICE_ROOT / voice.name / voice.name), "song.pho", "song.wav"],
                              capture_output=True, text=True, check=False, cwd=tmp)  # fmt: skip
        if done.returncode != 0:
            raise NextvoxError(f"mbrola failed for {voice.voice_id}: {done.stderr.strip()[:200]}")
        wave, rate = sf.read(Path(tmp) / "song.wav", dtype="float64")
    if rate != SAMPLE_RATE_HZ:
        wave = soxr.resample(wave, rate, SAMPLE_RATE_HZ)
    # Retune with WORLD: MBROLA's whole-sample periods are sharp; impose the exact contour.
    f0, t = pyworld.dio(wave, SAMPLE_RATE_HZ, f0_floor=60.0, f0_ceil=900.0, frame_period=FRAME_PERIOD_MS)
    sp = pyworld.cheaptrick(wave, f0, t, SAMPLE_RATE_HZ, fft_size=FFT_SIZE)
    ap = pyworld.d4c(wave, f0, t, SAMPLE_RATE_HZ, fft_size=FFT_SIZE)
    target = np.zeros(len(f0))
    notes = sung_notes(onset_s=onset_s, duration_s=duration_s, pitch_midi=pitch_midi, n_frames=len(f0),
                       vibrato_rate_hz=vibrato_rate_hz, vibrato_depth_cents=vibrato_depth_cents, seed=seed)  # fmt: skip
    for note, start, end, contour_hz in notes:
        target[start:end] = contour_hz
        sp[start:end] *= 10.0 ** (gain_db[note] / 10.0)
    f0 = np.where((f0 > 0) & (target > 0), target, 0.0)
    return synthesize(f0, sp, ap, total_s=total_s)
