"""The registry of singers the generator may use, and the check that their voices are installed.

Every singer is one recorded speaker. Real speakers come from Debian's speech-synthesis
packages; a singer whose id starts with ``syn-`` is synthetic (an espeak-ng formant voice, or
a real speaker whose vocal tract was lengthened or shortened by warping the spectral
envelope) and carries ``synthetic=True`` into the labels.

The registry is an allow-list: only the voices named here are ever rendered. Voices of
other languages that Debian or MBROLA ship are kept out on purpose and must not be added.

Voice sets: ``demo`` (Debian main only: the README's demo and the tests), ``train`` (what
the shipped models are trained on) and ``eval`` (held out from training: the singers every
quality benchmark is measured on). ``train`` and ``eval`` share no speaker: ked, nsh and the
espeak-ng voice en+f5 sing in ``demo`` and ``eval`` only, and the MBROLA voices of
:data:`EVAL_VOICES` in ``eval`` only (docs/synth.md, "Held-out split").

A singer can own several engine voices of the same speaker (festival's ``kal_diphone`` and
flite's ``kal16`` are both Kal): songs alternate between them, like recording sessions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import soundfile as sf

from nextvox.errors import MissingDependencyError, NextvoxError

__all__ = [
    "Voice",
    "Singer",
    "SINGERS",
    "VOICE_SETS",
    "soundfont_path",
    "select_singers",
    "singers_in_set",
    "check_dependencies",
    "PERMITTED_VOICES",
    "EVAL_VOICES",
    "installed_mbrola_singers",
]

VOICE_SETS = ("demo", "train", "eval")

#: The General MIDI soundfont of Debian's fluid-soundfont-gm; NEXTVOX_SOUNDFONT overrides it.
DEFAULT_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
FESTIVAL_VOICE_ROOT = Path("/usr/share/festival/voices")
MBROLA_VOICE_ROOT = Path("/usr/share/mbrola")

# Singing methods, as named in labels.csv and docs/synth.md.
METHOD_WORLD = "syllables+world"  # engine speaks syllables; WORLD imposes the notes
METHOD_MBROLA = "mbrola-pho"  # engine sings the notes itself from a .pho score


@dataclass(frozen=True)
class Voice:
    """One engine voice of a recorded speaker.

    Attributes
    ----------
    voice_id : str
        Unique id, ``engine:name`` (e.g. ``festival:kal_diphone``).
    engine : str
        ``festival``, ``flite``, ``espeak-ng`` or ``mbrola``.
    name : str
        The name the engine knows the voice by.
    language : str
        Language of the syllable texts given to the engine (``en``, ``ca``, ``ru``, ...).
    licence : str
        Licence of the voice data.
    package : str
        Debian package that ships the voice.
    method : str
        How it sings: :data:`METHOD_WORLD` or :data:`METHOD_MBROLA`.
    """

    voice_id: str
    engine: str
    name: str
    language: str
    licence: str
    package: str
    method: str = METHOD_WORLD


@dataclass(frozen=True)
class Singer:
    """A singer: one speaker, its engine voices and its comfortable range.

    Attributes
    ----------
    singer_id : str
        Label used in labels.csv and in the library's folder names.
    display_name : str
        Written into the ``artist`` tag.
    gender : str
        ``female`` or ``male``.
    speaker : str
        The recorded speaker the voices come from.
    voices : tuple of Voice
        Engine voices of that speaker; songs alternate between them.
    low_midi, high_midi : int
        Comfortable singing range, MIDI note numbers (inclusive).
    synthetic : bool
        True for espeak-ng voices and warped speakers.
    warp : float
        Vocal-tract factor applied to the spectral envelope: formant frequencies are
        multiplied by it (above 1 a shorter tract). 1.0 leaves the speaker as recorded.
    voice_sets : tuple of str
        Library voice sets the singer belongs to.
    breathiness : float
        Breath noise added to the voice, 0…1 (:func:`nextvox.synth.syllables.breathy_aperiodicity`).
    vibrato_depth_cents : float or None
        The singer's own vibrato depth (peak deviation, cents); None draws 15–25 cents per library.
    vibrato_rate_hz : float or None
        The singer's own vibrato rate, Hz; None draws 5.0–6.2 Hz per library.
    age : str
        ``adult`` or ``child``: a child's voice (a real speaker's tract shortened to a child's,
        singing in a child's range) keeps its speaker's sex as ``gender`` (docs/gender.md, "Children").
    """

    singer_id: str
    display_name: str
    gender: str
    speaker: str
    voices: tuple[Voice, ...]
    low_midi: int
    high_midi: int
    synthetic: bool = False
    warp: float = 1.0
    voice_sets: tuple[str, ...] = ("demo", "train")
    breathiness: float = 0.0
    vibrato_depth_cents: float | None = None
    vibrato_rate_hz: float | None = None
    age: str = "adult"


_FESTVOX = "Festvox/CSTR free licence (BSD-like)"
_FLITE = "CMU Flite licence (BSD-like)"

FESTIVAL_KAL = Voice("festival:kal_diphone", "festival", "kal_diphone", "en", _FESTVOX, "festvox-kallpc16k")
FESTIVAL_KED = Voice("festival:ked_diphone", "festival", "ked_diphone", "en", _FESTVOX, "festvox-kdlpc16k")
FESTIVAL_SLT = Voice(
    "festival:cmu_us_slt_arctic_hts", "festival", "cmu_us_slt_arctic_hts", "en", "EST-2003/BSD-3-clause",
    "festvox-us-slt-hts",
)
FESTIVAL_ONA = Voice("festival:upc_ca_ona_hts", "festival", "upc_ca_ona_hts", "ca", "LGPL-2.1+", "festvox-ca-ona-hts")
FESTIVAL_NSH = Voice("festival:msu_ru_nsh_clunits", "festival", "msu_ru_nsh_clunits", "ru", "BSD-like", "festvox-ru")
FLITE_KAL = Voice("flite:kal16", "flite", "kal16", "en", _FLITE, "flite")
FLITE_SLT = Voice("flite:slt", "flite", "slt", "en", _FLITE, "flite")
FLITE_AWB = Voice("flite:awb", "flite", "awb", "en", _FLITE, "flite")
FLITE_RMS = Voice("flite:rms", "flite", "rms", "en", _FLITE, "flite")
# Variants whose glottal source WORLD tracks cleanly (f3 is breathy and halves in octave).
ESPEAK_F2 = Voice("espeak-ng:en+f2", "espeak-ng", "en+f2", "en", "GPL-3+", "espeak-ng")
ESPEAK_F5 = Voice("espeak-ng:en+f5", "espeak-ng", "en+f5", "en", "GPL-3+", "espeak-ng")
ESPEAK_M1 = Voice("espeak-ng:en+m1", "espeak-ng", "en+m1", "en", "GPL-3+", "espeak-ng")

# Ranges sit a fourth to an octave above each speaker's speaking pitch, where WORLD keeps
# the voice natural; every range spans at least 19 semitones so folk tunes fit untransposed
# in shape.
_MALE = (45, 64)  # A2..E4
_FEMALE = (57, 76)  # A3..E5

# Order matters: select_singers takes real speakers first, alternating genders.
SINGERS: tuple[Singer, ...] = (
    Singer("slt", "Slt", "female", "slt", (FESTIVAL_SLT, FLITE_SLT), *_FEMALE),
    Singer("kal", "Kal", "male", "kal", (FESTIVAL_KAL, FLITE_KAL), *_MALE),
    Singer("ona", "Ona", "female", "ona", (FESTIVAL_ONA,), 58, 77),
    Singer("awb", "Awb", "male", "awb", (FLITE_AWB,), *_MALE),
    Singer("rms", "Rms", "male", "rms", (FLITE_RMS,), 43, 62),
    Singer("ked", "Ked", "male", "ked", (FESTIVAL_KED,), *_MALE, voice_sets=("demo", "eval")),
    Singer("nsh", "Nsh", "male", "nsh", (FESTIVAL_NSH,), 43, 62, voice_sets=("demo", "eval")),
    Singer("syn-slt-short", "Slt (short tract)", "female", "slt", (FESTIVAL_SLT, FLITE_SLT), 59, 78,
           synthetic=True, warp=1.12),
    Singer("syn-espeak-f2", "eSpeak F2", "female", "espeak-ng en+f2", (ESPEAK_F2,), *_FEMALE, synthetic=True),
    Singer("syn-ona-long", "Ona (long tract)", "female", "ona", (FESTIVAL_ONA,), 55, 74, synthetic=True, warp=0.92),
    Singer("syn-espeak-f5", "eSpeak F5", "female", "espeak-ng en+f5", (ESPEAK_F5,), *_FEMALE, synthetic=True,
           voice_sets=("demo", "eval")),
    Singer("syn-kal-long", "Kal (long tract)", "male", "kal", (FESTIVAL_KAL, FLITE_KAL), 43, 62,
           synthetic=True, warp=0.9, voice_sets=("train",)),
    Singer("syn-espeak-m1", "eSpeak M1", "male", "espeak-ng en+m1", (ESPEAK_M1,), *_MALE,
           synthetic=True, voice_sets=("train",)),
    # Speaker variants (training only): more tract lengths, breathy voices, wide and fast
    # vibrato, registers outside the usual ones, and children's range. Each is a real
    # speaker of the list above, altered; each counts as a singer of its own.
    Singer("syn-awb-short", "Awb (short tract)", "male", "awb", (FLITE_AWB,), 47, 66, synthetic=True, warp=1.08,
           voice_sets=("train",)),
    Singer("syn-slt-long", "Slt (long tract)", "female", "slt", (FESTIVAL_SLT, FLITE_SLT), 55, 74, synthetic=True,
           warp=0.9, voice_sets=("train",)),
    Singer("syn-slt-breathy", "Slt (breathy)", "female", "slt", (FESTIVAL_SLT, FLITE_SLT), *_FEMALE, synthetic=True,
           breathiness=0.45, voice_sets=("train",)),
    Singer("syn-rms-breathy", "Rms (breathy)", "male", "rms", (FLITE_RMS,), 43, 62, synthetic=True, breathiness=0.45,
           voice_sets=("train",)),
    Singer("syn-ona-vibrato", "Ona (wide vibrato)", "female", "ona", (FESTIVAL_ONA,), 58, 77, synthetic=True,
           vibrato_depth_cents=45.0, vibrato_rate_hz=6.4, voice_sets=("train",)),
    Singer("syn-awb-vibrato", "Awb (slow wide vibrato)", "male", "awb", (FLITE_AWB,), *_MALE, synthetic=True,
           vibrato_depth_cents=40.0, vibrato_rate_hz=4.6, voice_sets=("train",)),
    Singer("syn-kal-tenor", "Kal (tenor register)", "male", "kal", (FESTIVAL_KAL, FLITE_KAL), 52, 71, synthetic=True,
           voice_sets=("train",)),
    Singer("syn-ona-alto", "Ona (alto register)", "female", "ona", (FESTIVAL_ONA,), 50, 69, synthetic=True,
           warp=0.96, voice_sets=("train",)),
    Singer("syn-slt-child", "Slt (child)", "female", "slt", (FESTIVAL_SLT, FLITE_SLT), 60, 79, synthetic=True,
           warp=1.25, voice_sets=("train",), age="child"),
    Singer("syn-kal-child", "Kal (child)", "male", "kal", (FESTIVAL_KAL, FLITE_KAL), 60, 79, synthetic=True,
           warp=1.35, voice_sets=("train",), age="child"),
)


def soundfont_path() -> Path:
    """The General MIDI soundfont used for accompaniments (``NEXTVOX_SOUNDFONT`` overrides)."""
    return Path(os.environ.get("NEXTVOX_SOUNDFONT", str(DEFAULT_SOUNDFONT)))


def singers_in_set(voice_set: str) -> tuple[Singer, ...]:
    """Singers of a voice set, in registry order (MBROLA singers appended when installed).

    Examples
    --------
    >>> train, held_out = singers_in_set("train"), singers_in_set("eval")
    >>> {s.speaker for s in train} & {s.speaker for s in held_out}
    set()
    """
    if voice_set not in VOICE_SETS:
        raise NextvoxError(f"unknown voice set {voice_set!r}; choose one of: {', '.join(VOICE_SETS)}")
    singers = [s for s in SINGERS if voice_set in s.voice_sets]
    if voice_set != "demo":
        singers += [s for s in installed_mbrola_singers() if voice_set in s.voice_sets]
    return tuple(singers)


def select_singers(*, n_singers: int, voice_set: str) -> tuple[Singer, ...]:
    """Pick ``n_singers`` singers, alternating genders, real speakers before synthetic ones.

    Examples
    --------
    >>> [s.singer_id for s in select_singers(n_singers=4, voice_set="demo")]
    ['slt', 'kal', 'ona', 'awb']
    """
    pool = singers_in_set(voice_set)
    if n_singers < 1 or n_singers > len(pool):
        raise NextvoxError(f"the {voice_set!r} voice set has {len(pool)} singers; asked for {n_singers}")
    by_gender = {g: [s for s in pool if s.gender == g] for g in ("female", "male")}
    for g in by_gender:  # real speakers first within each gender
        by_gender[g].sort(key=lambda s: s.synthetic)
    chosen: list[Singer] = []
    turn = 0
    while len(chosen) < n_singers:
        queue = by_gender[("female", "male")[turn % 2]]
        if queue:
            chosen.append(queue.pop(0))
        turn += 1
    return tuple(chosen)


@cache
def _flite_voices(flite: str) -> frozenset[str]:
    out = subprocess.run([flite, "-lv"], capture_output=True, text=True, check=False).stdout
    return frozenset(out.replace("Voices available:", "").split())


def _voice_missing(voice: Voice) -> str | None:
    """The Debian package to install if ``voice`` cannot run here, else None."""
    if voice.engine == "festival":
        if shutil.which("festival") is None:
            return "festival"
        if not any(FESTIVAL_VOICE_ROOT.glob(f"*/{voice.name}")):
            return voice.package
    elif voice.engine == "flite":
        flite = shutil.which("flite")
        if flite is None or voice.name not in _flite_voices(flite):
            return "flite"
    elif voice.engine == "espeak-ng":
        if shutil.which("espeak-ng") is None:
            return "espeak-ng"
    elif voice.engine == "mbrola":  # listed only when installed; espeak-ng gives their phonemes
        if shutil.which("espeak-ng") is None:
            return "espeak-ng"
    return None


def check_dependencies(singers: tuple[Singer, ...]) -> None:
    """Raise one clear :class:`MissingDependencyError` if anything the singers need is missing.

    Checks the synthesis engines and voices, fluidsynth, the soundfont and ffmpeg.
    """
    packages: list[str] = []
    for singer in singers:
        for voice in singer.voices:
            missing = _voice_missing(voice)
            if missing and missing not in packages:
                packages.append(missing)
    for program, package in (("fluidsynth", "fluidsynth"), ("ffmpeg", "ffmpeg")):
        if shutil.which(program) is None:
            packages.append(package)
    if not soundfont_path().is_file():
        packages.append("fluid-soundfont-gm")
    if packages:
        raise MissingDependencyError(
            f"the singing-library generator needs programs or voices that are not installed "
            f"(soundfont looked for at {soundfont_path()}); install with: apt-get install {' '.join(packages)}"
        )


# ---- MBROLA singers (installed by scripts/install-mbrola.sh) ----------------------------------

# Only these MBROLA voices are ever used: an allow-list, to which the voices the project holds
# out for evaluation must never be added.
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
