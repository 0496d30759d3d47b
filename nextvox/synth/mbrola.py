"""MBROLA singers for the "train" library (installed by ``scripts/install-mbrola.sh``).

MBROLA takes phonemes with explicit durations and pitch targets, so it sings a score
directly: espeak-ng's ``mb-XX`` voice gives each syllable's phonemes, the vowel is given
the rest of the note, and every phoneme the note's pitch. MBROLA can only make whole-sample
pitch periods (f0 = 16000 / floor(16000 / f): sharp by up to ~36 cents near C5), so its
output is tuned afterwards: WORLD re-imposes the exact note contour (with the same glides
and vibrato as the other singers) on the frames MBROLA voiced.

Only the voices in :data:`PERMITTED_VOICES` are ever used; the list is an allow-list, and
the MBROLA voices the project holds out for evaluation must never be added to it. Of the
permitted voices, :data:`EVAL_VOICES` form the ``eval`` voice set (never trained on); the
rest form the ``train`` set. MBROLA voices are licensed for non-commercial use only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from nextvox.constants import SAMPLE_RATE_HZ
from nextvox.errors import NextvoxError
from nextvox.synth.singing import midi_to_hz, note_cents
from nextvox.synth.syllables import FFT_SIZE, FRAME_PERIOD_MS, FRAME_RATE_HZ, SYLLABLES, pyworld, syllable_text
from nextvox.synth.voices import MBROLA_VOICE_ROOT, METHOD_MBROLA, Singer, Voice
from nextvox.files import write_text_atomic

__all__ = ["PERMITTED_VOICES", "EVAL_VOICES", "installed_mbrola_singers", "build_phonemes", "render_vocal_mbrola"]

PERMITTED_VOICES = (
    "af1 br1 br3 ca1 ca2 de1 de2 de3 de4 de5 de6 de7 de8 ee1 en1 es1 es2 es3 es4 fr1 fr2 fr3 fr4 fr5 fr6 fr7 "
    "gr1 gr2 hu1 ic1 id1 ir1 la1 lt1 lt2 mx1 mx2 nl1 nl2 nl3 pl1 pt1 ro1 sw1 sw2 tr1 tr2 us1 us2 us3 vz1"
).split()
# The held-out singers of the quality benchmarks: both genders, six languages, chosen once
# (4 of the 14 female and 6 of the 36 male voices that sing) and never changed, so every
# shipped model can be compared on the same unseen voices.
EVAL_VOICES = ("de5", "fr2", "pt1", "tr2", "de4", "es2", "fr5", "nl2", "sw1", "us3")
LICENCE = "MBROLA licence (non-commercial use only)"
ESPEAK_VOICE_DIRS = (Path("/usr/lib/x86_64-linux-gnu/espeak-ng-data/voices/mb"), Path("/usr/share/espeak-ng-data/voices/mb"))
MAX_CONSONANT_MS = 120.0  # consonants keep their spoken length up to this
PHONEME_CACHE_VERSION = 1


def _espeak_voice_file(voice_id: str) -> Path | None:
    return next((d / f"mb-{voice_id}" for d in ESPEAK_VOICE_DIRS if (d / f"mb-{voice_id}").exists()), None)


def _speaks(voice_id: str) -> bool:
    """Whether espeak-ng's phonemes for ``mb-<voice_id>`` are ones the MBROLA database knows.

    Some databases use another phoneme alphabet than espeak-ng's table for them; MBROLA then
    falls silent, so such a voice is left out.
    """
    with tempfile.TemporaryDirectory() as tmp:
        pho = subprocess.run(["espeak-ng", "-v", f"mb-{voice_id}", "-q", "--pho", "la"], capture_output=True,
                             text=True, check=False).stdout  # fmt: skip
        (Path(tmp) / "probe.pho").write_text(pho, encoding="utf-8")
        done = subprocess.run(["mbrola", str(MBROLA_VOICE_ROOT / voice_id / voice_id), "probe.pho", "probe.wav"],
                              capture_output=True, check=False, cwd=tmp)  # fmt: skip
        return done.returncode == 0 and (Path(tmp) / "probe.wav").exists() and sf.info(Path(tmp) / "probe.wav").frames > 0


@cache
def installed_mbrola_singers() -> tuple[Singer, ...]:
    """One singer per permitted MBROLA voice installed here that sings (gender from espeak-ng's voice file).

    A singer belongs to the ``eval`` voice set when its voice is in :data:`EVAL_VOICES`, else to ``train``.
    """
    if shutil.which("mbrola") is None or shutil.which("espeak-ng") is None:
        return ()
    singers = []
    for voice_id in PERMITTED_VOICES:
        espeak_file = _espeak_voice_file(voice_id)
        if espeak_file is None or not (MBROLA_VOICE_ROOT / voice_id / voice_id).exists() or not _speaks(voice_id):
            continue
        description = espeak_file.read_text(encoding="utf-8", errors="replace")
        female = "gender female" in description
        language = next((line.split()[1] for line in description.splitlines() if line.startswith("language ")), "")
        voice = Voice(f"mbrola:{voice_id}", "mbrola", voice_id, language, LICENCE, f"mbrola-{voice_id}",
                      method=METHOD_MBROLA)  # fmt: skip
        low, high = (57, 76) if female else (45, 64)
        singers.append(Singer(f"mb-{voice_id}", f"MBROLA {voice_id}", "female" if female else "male",
                              f"mbrola {voice_id}", (voice,), low, high,
                              voice_sets=("eval",) if voice_id in EVAL_VOICES else ("train",)))  # fmt: skip
    return tuple(singers)


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
    rng = np.random.default_rng(seed)
    target = np.zeros(len(f0))
    previous_end, previous_midi = -1, None
    for onset, duration, midi, gain in zip(onset_s, duration_s, pitch_midi, gain_db):
        start = int(round(onset * FRAME_RATE_HZ))
        end = min(int(round((onset + duration) * FRAME_RATE_HZ)), len(f0))
        if end - start < 2:
            continue
        cents = note_cents(n_frames=end - start, midi=float(midi),
                           previous_midi=previous_midi if previous_end == start else None,
                           vibrato_rate_hz=vibrato_rate_hz, vibrato_depth_cents=vibrato_depth_cents,
                           vibrato_phase=float(rng.uniform(0, 2 * np.pi)))  # fmt: skip
        target[start:end] = midi_to_hz(cents / 100.0)
        sp[start:end] *= 10.0 ** (gain / 10.0)
        previous_end, previous_midi = end, float(midi)
    f0 = np.where((f0 > 0) & (target > 0), target, 0.0)
    out = pyworld.synthesize(f0, sp, ap, SAMPLE_RATE_HZ, FRAME_PERIOD_MS)
    n_samples = int(round(total_s * SAMPLE_RATE_HZ))
    return np.pad(out, (0, max(n_samples - len(out), 0)))[:n_samples].astype(np.float32)
