"""The singing-library generator: outputs, labels, determinism, resume, pitch, missing tools."""

import csv
import filecmp
import json
import shutil
from dataclasses import replace
from pathlib import Path

import av
import mutagen
import numpy as np
import pytest
import soundfile as sf

from nextvox.constants import SAMPLE_RATE_HZ
from nextvox.errors import MissingDependencyError, NextvoxError
from nextvox.synth import render_library
from nextvox.synth.accompaniment import accompaniment_midi, choose_chords, render_midi
from nextvox.synth.library import CACHE_DIR_NAME, LABEL_COLUMNS, label_row, render_song_audio
from nextvox.synth.plan import FORMATS, plan_library, song_notes
from nextvox.synth.production import GROOVES, LEAD_PARTS, PRODUCTION_COLUMNS, drum_events, lead_events, produce_mix
from nextvox.synth.singing import pitch_accuracy
from nextvox.synth.voices import SINGERS, select_singers, singers_in_set

REQUIRED_COLUMNS = ("path", "singer", "gender", "melody", "genre", "vocal_path", "ratio_db", "transposition", "tempo_bpm")


def _labels(library: Path) -> list[dict[str, str]]:
    with (library / "labels.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _plans(library: Path):
    settings = json.loads((library / CACHE_DIR_NAME / "settings.json").read_text())
    return plan_library(cache_dir=library / CACHE_DIR_NAME, **settings)


def _decode_mono(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE_HZ)
        chunks = [r.to_ndarray().ravel() for frame in container.decode(audio=0) for r in resampler.resample(frame)]
    return np.concatenate(chunks)


def test_labels_have_columns_and_relative_paths(fixture_library):
    rows = _labels(fixture_library)
    assert tuple(rows[0].keys()) == LABEL_COLUMNS
    assert set(REQUIRED_COLUMNS) <= set(LABEL_COLUMNS)
    assert len(rows) == 8
    for row in rows:
        assert not Path(row["path"]).is_absolute()
        assert row["path"].startswith("songs/") and row["vocal_path"].startswith("vocals/")
        assert (fixture_library / row["path"]).is_file() and (fixture_library / row["vocal_path"]).is_file()
        assert row["gender"] in ("female", "male")
        assert row["synthetic"] == "false"  # the four first singers are real speakers
    assert {r["gender"] for r in rows} == {"female", "male"}
    assert {r["format"] for r in rows} == set(FORMATS)
    melodies = [r["melody"] for r in rows]
    assert any(melodies.count(m) > 1 for m in melodies), "tunes are shared between singers"


def test_songs_decode_and_vocals_are_kept_apart(fixture_library):
    for row in _labels(fixture_library):
        mix = _decode_mono(fixture_library / row["path"])
        assert abs(len(mix) / SAMPLE_RATE_HZ - float(row["duration_s"])) < 0.1, row["path"]
        assert np.sqrt(np.mean(mix**2)) > 0.01
        vocal, rate = sf.read(fixture_library / row["vocal_path"])
        assert rate == SAMPLE_RATE_HZ and vocal.ndim == 1
        assert np.abs(vocal).max() > 0.05
    assert not any((fixture_library / "songs").rglob("*.flac.part"))
    assert not list((fixture_library / "songs").rglob("vocals"))
    assert (fixture_library / "vocals" / ".nomedia").exists(), "scanners skip the isolated vocals"


def test_songs_carry_tags(fixture_library):
    for row in _labels(fixture_library):
        audio = mutagen.File(fixture_library / row["path"], easy=row["format"] != "wav")
        tags = audio.tags
        if row["format"] == "wav":
            artist, title, genre = str(tags["TPE1"]), str(tags["TIT2"]), str(tags["TCON"])
        else:
            artist, title, genre = tags["artist"][0], tags["title"][0], tags["genre"][0]
        assert artist == row["singer"].title()
        assert title == row["title"]
        assert genre.lower() == row["genre"]


def test_plan_is_deterministic_for_a_seed(fixture_library):
    settings = json.loads((fixture_library / CACHE_DIR_NAME / "settings.json").read_text())
    cache_dir = fixture_library / CACHE_DIR_NAME
    first = plan_library(cache_dir=cache_dir, **settings)
    again = plan_library(cache_dir=cache_dir, **settings)
    other = plan_library(cache_dir=cache_dir, **{**settings, "seed": 1})
    assert first == again
    assert [p.ratio_db for p in first] != [p.ratio_db for p in other]


def test_planned_notes_fit_the_singers_range(fixture_library):
    for plan in _plans(fixture_library):
        _, _, pitch_midi, _ = song_notes(plan=plan)
        assert plan.singer.low_midi <= pitch_midi.min() and pitch_midi.max() <= plan.singer.high_midi


def test_rerun_skips_existing_and_resumes_identically(fixture_library, tmp_path):
    library = tmp_path / "library"
    shutil.copytree(fixture_library, library)
    labels_before = (library / "labels.csv").read_bytes()
    row = _labels(library)[2]
    removed = library / row["path"]
    kept_copy = tmp_path / ("kept" + removed.suffix)
    shutil.move(removed, kept_copy)  # as if the run had been interrupted before this song
    untouched = library / _labels(library)[0]["path"]
    mtime = untouched.stat().st_mtime_ns
    calls = []
    render_library(library, jobs=1, progress=lambda done, total: calls.append((done, total)),
                   **json.loads((library / CACHE_DIR_NAME / "settings.json").read_text()))  # fmt: skip
    assert calls == [(7, 8), (8, 8)]
    assert untouched.stat().st_mtime_ns == mtime
    assert filecmp.cmp(removed, kept_copy, shallow=False), "a re-rendered song is byte-identical"
    assert (library / "labels.csv").read_bytes() == labels_before


def test_other_settings_in_the_same_folder_are_refused(fixture_library, tmp_path):
    library = tmp_path / "library"
    shutil.copytree(fixture_library, library)
    with pytest.raises(NextvoxError, match="other settings"):
        render_library(library, n_singers=4, n_songs=2, seed=5, max_song_s=4.0, jobs=1)


def test_rendered_vocal_follows_its_notes(fixture_library):
    for plan in _plans(fixture_library)[:2]:  # a female and a male singer, HTS and flite
        onset_s, duration_s, pitch_midi, _ = song_notes(plan=plan)
        vocal, rate = sf.read(fixture_library / plan.vocal_path)
        accuracy, n_frames = pitch_accuracy(
            vocal=vocal, sample_rate_hz=rate, onset_s=onset_s, duration_s=duration_s, pitch_midi=pitch_midi
        )
        assert n_frames > 50
        assert accuracy >= 0.9, (plan.singer.singer_id, accuracy)


def test_mix_keeps_the_planned_vocal_ratio(fixture_library):
    plan = _plans(fixture_library)[3]
    mix, vocal = render_song_audio(plan=plan, cache_dir=fixture_library / CACHE_DIR_NAME)
    accompaniment = mix - vocal[:, None]
    ratio_db = 10 * np.log10(np.mean(vocal**2) / np.mean((0.5 * accompaniment.sum(axis=1)) ** 2))
    assert ratio_db == pytest.approx(plan.ratio_db, abs=0.3)
    assert np.abs(mix).max() == pytest.approx(10 ** (-1 / 20), rel=1e-3)


def test_missing_soundfont_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("NEXTVOX_SOUNDFONT", str(tmp_path / "absent.sf2"))
    with pytest.raises(MissingDependencyError) as error:
        render_library(tmp_path / "lib", n_singers=2, n_songs=1, jobs=1)
    message = str(error.value)
    assert "\n" not in message and "apt-get install fluid-soundfont-gm" in message
    assert not (tmp_path / "lib").exists(), "nothing is written before the check"


def test_missing_programs_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no engine, no fluidsynth, no ffmpeg
    with pytest.raises(MissingDependencyError) as error:
        render_library(tmp_path / "lib", n_singers=4, n_songs=1, jobs=1)
    message = str(error.value)
    assert "\n" not in message
    for package in ("festival", "flite", "fluidsynth", "ffmpeg"):
        assert package in message.split("apt-get install", 1)[1]


@pytest.mark.parametrize(
    "arguments",
    [{"voice_set": "everything"}, {"n_singers": 0}, {"n_singers": 500}, {"n_songs": 0}, {"jobs": 0}],
)
def test_bad_arguments_raise_nextvox_errors(tmp_path, arguments):
    with pytest.raises(NextvoxError):
        render_library(tmp_path / "lib", **{"n_singers": 2, "n_songs": 1, **arguments})


def test_demo_voice_set_is_debian_main_and_labels_synthetic_singers():
    demo = select_singers(n_singers=len([s for s in SINGERS if "demo" in s.voice_sets]), voice_set="demo")
    for singer in demo:
        assert {v.engine for v in singer.voices} <= {"festival", "flite", "espeak-ng"}
        is_altered = singer.warp != 1.0 or any(v.engine == "espeak-ng" for v in singer.voices)
        assert singer.synthetic == is_altered == singer.singer_id.startswith("syn-")
    assert [s.gender for s in select_singers(n_singers=4, voice_set="demo")] == ["female", "male"] * 2


def test_a_relative_output_folder_renders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The speech engines run in folders of their own; a relative DIR must still work."""
    monkeypatch.chdir(tmp_path)
    labels = render_library(Path("relative-lib"), n_singers=1, n_songs=1, seed=3, max_song_s=3.0, jobs=1)
    assert labels == tmp_path / "relative-lib" / "labels.csv" and labels.exists()


def test_corpus_titles_keep_their_umlauts(tmp_path: Path) -> None:
    """Titles of the Essen collections stored in code page 437 read as German, not as U+0081."""
    from nextvox.synth.melodies import load_melodies

    titles = [m.title for m in load_melodies(count=60, cache_dir=tmp_path)]
    assert not [t for t in titles if any(0x80 <= ord(c) < 0xA0 for c in t)]
    assert "Maria Die Ging Wohl Über Land" in titles


# ---- studio production ---------------------------------------------------------------------------

STUDIO_SETTINGS = {"n_singers": 2, "n_songs": 2, "seed": 11, "voice_set": "demo", "max_song_s": 5.0, "production": "studio"}


@pytest.fixture(scope="module")
def studio_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out_dir = tmp_path_factory.mktemp("studio")
    render_library(out_dir, jobs=1, **STUDIO_SETTINGS)
    return out_dir


def test_studio_library_records_its_production(studio_library):
    rows = _labels(studio_library)
    assert tuple(rows[0].keys()) == LABEL_COLUMNS and set(PRODUCTION_COLUMNS) <= set(LABEL_COLUMNS)
    assert {r["production"] for r in rows} == {"studio"}
    for row, plan in zip(rows, _plans(studio_library)):
        assert row["drums"] in GROOVES and row["lead_part"] in LEAD_PARTS
        assert -6.0 <= float(row["ratio_db"]) <= 6.0
        assert row["path"].endswith("." + row["format"])
        assert float(row["ratio_db"]) == plan.production.ratio_db
        mix = _decode_mono(studio_library / row["path"])
        assert abs(len(mix) / SAMPLE_RATE_HZ - float(row["duration_s"])) < 0.1
        if row["format"] in ("mp3", "m4a", "opus") and int(row["bitrate_kbps"]):
            probed = av.open(str(studio_library / row["path"]))
            kbps = probed.bit_rate / 1000 if probed.bit_rate else None
            probed.close()
            assert kbps is None or kbps < 2 * int(row["bitrate_kbps"]) + 32, (row["path"], kbps)


def test_studio_plans_are_the_plain_songs_produced(tmp_path):
    settings = {k: v for k, v in STUDIO_SETTINGS.items() if k != "production"}
    plain = plan_library(cache_dir=tmp_path, **settings)
    assert plain == plan_library(cache_dir=tmp_path, production="plain", **settings)
    studio = plan_library(cache_dir=tmp_path, production="studio", **settings)
    mixed = plan_library(cache_dir=tmp_path, production="mixed", n_singers=4, n_songs=4, seed=3, voice_set="demo", max_song_s=5.0)
    for a, b in zip(plain, studio):
        assert (a.melody, a.tempo_qpm, a.transposition, a.singer, a.seed) == (b.melody, b.tempo_qpm, b.transposition, b.singer, b.seed)
        assert a.production.is_plain and b.production.style == "studio"
    assert {p.production.style for p in mixed} == {"plain", "studio"}
    with pytest.raises(NextvoxError, match="production"):
        render_library(tmp_path / "lib", n_singers=2, n_songs=1, production="live", jobs=1)


def test_studio_mix_keeps_the_vocal_ratio_and_every_element_sounds(studio_library):
    plan = _plans(studio_library)[0]
    band = np.random.default_rng(0).normal(0, 0.1, (SAMPLE_RATE_HZ * 3, 2))
    t = np.arange(SAMPLE_RATE_HZ * 3) / SAMPLE_RATE_HZ
    lead = np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.7 * t))
    dry = replace(plan.production, compression_db=0.0, limiter_db=0.0, reverb_s=0.0, delay_ms=0.0, harmony_steps=0,
                  double_track_db=-np.inf, stereo_width=1.0, ratio_db=-4.0)  # fmt: skip
    mix, kept = produce_mix(lead=lead, band=band, production=dry, sample_rate_hz=SAMPLE_RATE_HZ, seed=0, fade_s=0.0)
    rest = 0.5 * (mix[:, 0] + mix[:, 1]) - kept
    assert 10 * np.log10(np.mean(kept**2) / np.mean(rest**2)) == pytest.approx(-4.0, abs=0.1)
    wet = replace(dry, reverb_s=1.2, reverb_wet_db=-6.0, limiter_db=6.0)
    mix_wet, kept_wet = produce_mix(lead=lead, band=band, production=wet, sample_rate_hz=SAMPLE_RATE_HZ, seed=0, fade_s=0.0)
    assert np.abs(mix_wet).max() == pytest.approx(10 ** (-1 / 20), rel=1e-3)
    # The limiter squeezes the peaks: the crest factor falls.
    assert np.abs(mix_wet).max() / np.sqrt(np.mean(mix_wet**2)) < np.abs(mix).max() / np.sqrt(np.mean(mix**2))


def test_studio_midi_carries_drums_lead_and_instruments():
    chords = choose_chords(onset_beats=np.array([0.0, 2.0]), duration_beats=np.array([2.0, 2.0]), pitch_midi=np.array([65.0, 60.0]),
                           tonic_pc=0, beats_per_bar=4.0, total_beats=8.0)  # fmt: skip
    extra = drum_events(groove="shuffle", start_beat=0.0, total_beats=8.0, beats_per_bar=4.0)
    extra += lead_events(notes=[(0.0, 2.0, 65.0), (2.0, 2.0, 60.0)], part="doubling", beats_per_bar=4.0, total_beats=8.0, velocity=90)
    midi = accompaniment_midi(chords=chords, style="jazz", beats_per_bar=4.0, tempo_qpm=120.0, total_beats=8.0,
                              programs={0: 4, 3: 73}, extra_events=extra, own_drums=False)  # fmt: skip
    assert bytes([0xC0, 4]) in midi and bytes([0xC3, 73]) in midi  # program changes: e-piano, flute
    assert bytes([0x99, 49]) in midi and bytes([0x93, 65]) in midi  # a crash on channel 10, the lead's first note
    assert bytes([0x99, 51]) in midi  # the shuffle's ride
    audio = render_midi(midi=midi, sample_rate_hz=SAMPLE_RATE_HZ, n_samples=SAMPLE_RATE_HZ * 4)
    assert np.sqrt(np.mean(audio**2)) > 0.01


def test_speaker_variants_are_extra_training_singers(tmp_path):
    train = {s.singer_id: s for s in SINGERS if "train" in s.voice_sets}
    variants = [s for s in train.values() if s.breathiness or s.vibrato_depth_cents or s.age == "child" or s.warp != 1.0]
    assert {s.age for s in variants} == {"adult", "child"} and {s.gender for s in variants} == {"female", "male"}
    for singer in variants:
        assert singer.synthetic and singer.singer_id.startswith("syn-") and "eval" not in singer.voice_sets
        assert singer.high_midi - singer.low_midi >= 19
    children = [s for s in variants if s.age == "child"]
    assert all(s.low_midi >= 60 and s.warp >= 1.2 for s in children), "a child sings high with a short tract"
    plans = plan_library(n_singers=len(singers_in_set("train")), n_songs=1, seed=0, voice_set="train", max_song_s=5.0,
                         cache_dir=tmp_path)  # fmt: skip
    rows = {p.singer.singer_id: (p, label_row(p)) for p in plans}
    plan, row = rows["syn-kal-child"]
    assert row["age"] == "child" and row["gender"] == "male"
    wide, _ = rows["syn-ona-vibrato"]
    assert wide.vibrato_depth_cents == 45.0 and abs(wide.vibrato_rate_hz - 6.4) <= 0.2
