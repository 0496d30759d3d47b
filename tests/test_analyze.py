"""The catalogue and `analyze`: incremental runs, moves, removals, and every kind of bad input."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from factories import make_library, voice, write_audio
from nextvox.analysis import analyze_library
from nextvox.catalogue import Catalogue, default_data_dir
from nextvox.errors import CatalogueError, NextvoxError

NEXTVOX = [sys.executable, "-m", "nextvox"]


def _statuses(data_dir: Path, library: Path) -> dict[str, tuple[str, str | None]]:
    with Catalogue(data_dir, library=library.resolve()) as catalogue:
        return {t.path: (t.status, t.error) for t in catalogue.tracks()}


@pytest.fixture()
def library(tmp_path: Path) -> Path:
    root = tmp_path / "music"
    make_library(root, songs_per_singer=2, seconds=4.0)
    return root


def test_incremental_runs_moves_changes_and_removals(library: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = analyze_library(library, data_dir=data, jobs=2)
    assert (first.scan.new, first.analyzed, first.failed) == (6, 6, 0)

    again = analyze_library(library, data_dir=data, jobs=2)
    assert (again.scan.unchanged, again.analyzed) == (6, 0)

    (library / "renamed").mkdir()
    shutil.move(library / "low/song0.wav", library / "renamed/moved.wav")
    write_audio(library / "mid/song0.flac", voice(seconds=5.0, formants_hz=(900, 2500), seed=99))
    (library / "high/song1.wav").unlink()
    report = analyze_library(library, data_dir=data, jobs=2)

    assert (report.scan.moved, report.scan.changed, report.scan.removed) == (1, 1, 1)
    assert report.analyzed == 1  # only the changed file; the moved one kept its analysis
    statuses = _statuses(data, library)
    assert statuses["renamed/moved.wav"] == ("analyzed", None)
    assert "low/song0.wav" not in statuses and "high/song1.wav" not in statuses
    with Catalogue(data, library=library.resolve()) as catalogue:
        hashes = {t.content_hash for t in catalogue.tracks()}
        stored, _, versions = catalogue.vectors("timbre")
    assert set(stored) == hashes  # the removed file's vectors left with it
    assert all(versions)  # every vector names the model version that made it


def test_tags_are_read_and_nomedia_folders_skipped(library: Path, tmp_path: Path) -> None:
    import mutagen
    from mutagen.id3 import TIT2, TPE1

    flac = mutagen.File(library / "low/song1.flac")
    flac["artist"], flac["title"], flac["genre"] = "Low Singer", "Song One", "folk"
    flac.save()
    wav = mutagen.File(library / "low/song0.wav")
    wav.add_tags()
    wav.tags.add(TPE1(encoding=3, text="Low Singer"))
    wav.tags.add(TIT2(encoding=3, text="Song Zero"))
    wav.save()
    write_audio(library / "stems/vocal.wav", voice(seconds=3.0, formants_hz=(500, 1500)))
    (library / "stems/.nomedia").touch()

    analyze_library(library, data_dir=tmp_path / "data")

    with Catalogue(tmp_path / "data", library=library.resolve()) as catalogue:
        tracks = {t.path: t for t in catalogue.tracks()}
    assert (tracks["low/song1.flac"].artist, tracks["low/song1.flac"].title, tracks["low/song1.flac"].genre) == (
        "Low Singer", "Song One", "folk")
    assert (tracks["low/song0.wav"].artist, tracks["low/song0.wav"].title) == ("Low Singer", "Song Zero")
    assert "stems/vocal.wav" not in tracks and len(tracks) == 6


def test_bad_files_get_reasons_and_the_rest_is_analysed(library: Path, tmp_path: Path) -> None:
    (library / "bad").mkdir()
    (library / "bad/empty.mp3").write_bytes(b"")
    (library / "bad/notes.wav").write_text("this is a text file, not audio\n" * 20)
    (library / "bad/random.flac").write_bytes(np.random.default_rng(0).bytes(50_000))
    sf.write(library / "bad/silent.wav", np.zeros(5 * 16_000, dtype=np.float32), 16_000)
    # A truncated file: a real flac cut after its header and first bytes.
    whole = write_audio(tmp_path / "whole.flac", voice(seconds=4.0, formants_hz=(600, 1700)))
    (library / "bad/truncated.flac").write_bytes(whole.read_bytes()[:200])
    # Cut in the middle, a file still holds a usable start: analysed, shorter.
    write_audio(tmp_path / "long.mp3", voice(seconds=6.0, formants_hz=(600, 1700), seed=5))
    (library / "bad/half.mp3").write_bytes((tmp_path / "long.mp3").read_bytes()[:50_000])

    report = analyze_library(library, data_dir=tmp_path / "data", jobs=2)

    statuses = _statuses(tmp_path / "data", library)
    assert statuses["bad/empty.mp3"] == ("failed", "empty file (0 bytes)")
    assert statuses["bad/silent.wav"][0] == "failed" and "silent" in statuses["bad/silent.wav"][1]
    for name in ("notes.wav", "random.flac", "truncated.flac"):
        status, error = statuses[f"bad/{name}"]
        assert status == "failed" and error and "\n" not in error, name
    assert statuses["bad/half.mp3"] == ("analyzed", None)
    assert report.analyzed == 7 and report.failed == 5
    assert all(s == ("analyzed", None) for p, s in statuses.items() if not p.startswith("bad/"))


def test_failed_files_are_not_retried_until_they_change(library: Path, tmp_path: Path) -> None:
    (library / "broken.mp3").write_bytes(b"not audio at all" * 100)
    analyze_library(library, data_dir=tmp_path / "data")
    assert analyze_library(library, data_dir=tmp_path / "data").analyzed == 0
    retried = analyze_library(library, data_dir=tmp_path / "data", retry_failed=True)
    assert retried.failed == 1
    write_audio(library / "broken.mp3", voice(seconds=3.0, formants_hz=(700, 1900)))
    fixed = analyze_library(library, data_dir=tmp_path / "data")
    assert (fixed.scan.changed, fixed.analyzed) == (1, 1)


def test_six_hour_file_decodes_only_its_excerpt(tmp_path: Path) -> None:
    """A 6-hour WAV (sparse on disk) with singing only around the 3-hour mark."""
    library = tmp_path / "music"
    library.mkdir()
    rate_hz, hours = 8_000, 6
    path = library / "six-hours.wav"
    with sf.SoundFile(path, "w", samplerate=rate_hz, channels=1, subtype="PCM_16") as f:
        f.seek(0)
        f.write(np.zeros(rate_hz, dtype=np.float32))
    # Grow the file to 6 hours without writing the zeros (a sparse file), then fix the header.
    total_frames = hours * 3600 * rate_hz
    with open(path, "r+b") as f:
        f.truncate(44 + 2 * total_frames)
        f.seek(4)
        f.write((36 + 2 * total_frames).to_bytes(4, "little"))
        f.seek(40)
        f.write((2 * total_frames).to_bytes(4, "little"))
        sung = voice(seconds=300.0, formants_hz=(600, 1800), rate_hz=rate_hz)
        f.seek(44 + 2 * (10_700 * rate_hz))
        f.write((sung * 32767).astype("<i2").tobytes())

    report = analyze_library(library, data_dir=tmp_path / "data", jobs=1)

    assert report.analyzed == 1
    with Catalogue(tmp_path / "data", library=library.resolve()) as catalogue:
        duration_s, start_s, excerpt_s = catalogue._db.execute(
            "SELECT duration_s, excerpt_start_s, excerpt_s FROM analyses").fetchone()
    assert duration_s == pytest.approx(hours * 3600, abs=1)
    assert excerpt_s == pytest.approx(120.0, abs=0.1)
    assert 10_700 - 120 < start_s < 11_000  # the window lies on the sung part


def test_file_that_vanishes_mid_run(library: Path, tmp_path: Path) -> None:
    victim = library / "high/song0.mp3"

    def delete_after_scan(done: int, total: int) -> None:
        if done == total:
            victim.unlink()  # after it was hashed, before a worker opens it

    report = analyze_library(library, data_dir=tmp_path / "data", jobs=1, on_scan=delete_after_scan)
    statuses = _statuses(tmp_path / "data", library)
    assert statuses["high/song0.mp3"] == ("failed", "file vanished before it could be read")
    assert report.analyzed == 5
    again = analyze_library(library, data_dir=tmp_path / "data")
    assert again.scan.removed == 1 and "high/song0.mp3" not in _statuses(tmp_path / "data", library)


def test_missing_or_wrong_library_and_foreign_data_dir(tmp_path: Path, library: Path) -> None:
    with pytest.raises(NextvoxError, match="not found"):
        analyze_library(tmp_path / "nowhere", data_dir=tmp_path / "data")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(NextvoxError, match="not a folder"):
        analyze_library(tmp_path / "file.txt", data_dir=tmp_path / "data")
    analyze_library(library, data_dir=tmp_path / "data")
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(CatalogueError, match="another --data-dir"):
        analyze_library(other, data_dir=tmp_path / "data")


def test_default_data_dir_is_outside_the_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEXTVOX_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    chosen = default_data_dir(tmp_path / "music")
    assert chosen.parent == tmp_path / "xdg" / "nextvox" and chosen.name.startswith("music-")
    assert default_data_dir(tmp_path / "music") == chosen != default_data_dir(tmp_path / "other" / "music")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_unreadable_file_is_reported_not_fatal(library: Path, tmp_path: Path) -> None:
    # Root reads every file, so the run drops the capabilities that let it (DAC override).
    (library / "low/song0.wav").chmod(0o000)
    result = subprocess.run(
        ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *NEXTVOX, "analyze", str(library),
         "--data-dir", str(tmp_path / "data"), "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    statuses = _statuses(tmp_path / "data", library)
    assert statuses["low/song0.wav"] == ("failed", "cannot read the file (Permission denied)")
    assert sum(s == "analyzed" for s, _ in statuses.values()) == 5


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_full_disk_stops_cleanly_and_loses_nothing(tmp_path: Path) -> None:
    library = tmp_path / "music"
    make_library(library, songs_per_singer=4, seconds=20.0)
    data = tmp_path / "small-disk"
    data.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=150k", "tmpfs", str(data)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        first = subprocess.run([*NEXTVOX, "analyze", str(library), "--data-dir", str(data)],
                               capture_output=True, text=True, timeout=300)
        assert first.returncode == 1
        assert first.stderr.count("\n") == 1 and "disk" in first.stderr and "full" in first.stderr
        assert "Traceback" not in first.stderr
        with sqlite3.connect(data / "catalogue.sqlite") as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            analysed_before = db.execute("SELECT COUNT(*) FROM tracks WHERE status = 'analyzed'").fetchone()[0]
        subprocess.run(["mount", "-o", "remount,size=64m", str(data)], check=True)
        second = subprocess.run([*NEXTVOX, "analyze", str(library), "--data-dir", str(data), "--json"],
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == 0, second.stderr
        import json

        summary = json.loads(second.stdout)
        assert summary["analyzed_now"] == 12 - analysed_before  # nothing finished was redone
        assert summary["counts"]["analyzed"] == 12
    finally:
        # Lazily if a process still holds a file there: the mount must never outlive the test.
        if subprocess.run(["umount", str(data)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(data)], capture_output=True)


def test_an_analysis_worker_imports_neither_librosa_nor_numba_nor_scipy() -> None:
    # Importing them cost each worker more than a second of its start: no analysis stage needs them.
    script = ("import sys; from nextvox.analysis import AnalysisSettings, load_worker_models; load_worker_models(AnalysisSettings()); "
              "print(sorted(m for m in ('librosa', 'numba', 'scipy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
