"""The analysis settings live in the catalogue: every entry point treats tracks and query files alike.

After ``analyze --separator none``, a later ``analyze`` keeps that separator (nothing is
analysed again), and a query file from outside the library is analysed the way the library's
tracks were, by ``recommend FILE`` and by the HTTP upload alike.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from factories import make_library
from nextvox.analysis import AnalysisSettings, library_settings
from nextvox.api import create_app
from nextvox.catalogue import Catalogue
from nextvox.errors import NextvoxError
from test_contracts import write_old_catalogue

NEXTVOX = [sys.executable, "-m", "nextvox"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*NEXTVOX, *args], capture_output=True, text=True, timeout=300)


def similarities(answer: dict) -> dict[str, float]:
    return {r["path"]: r["timbre_similarity"] for r in answer["results"]}


@pytest.fixture(scope="module")
def analysed_without_separation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("settings")
    make_library(root / "music", songs_per_singer=2, seconds=4.0)
    result = run("analyze", str(root / "music"), "--separator", "none", "--data-dir", str(root / "data"), "--json")
    assert result.returncode == 0, result.stderr
    return root / "music", root / "data"


def test_analyze_stores_its_settings_and_a_later_run_keeps_them(analysed_without_separation: tuple[Path, Path]) -> None:
    library, data = analysed_without_separation
    db = sqlite3.connect(data / "catalogue.sqlite")
    stored = json.loads(dict(db.execute("SELECT key, value FROM meta"))["analysis_settings"])
    db.close()
    assert stored == {"separator": "none", "separator_weights": None, "separator_version": "none"}
    again = run("analyze", str(library), "--data-dir", str(data), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["analyzed_now"] == 0  # no re-separation with the default separator


def test_recommend_file_and_the_api_analyse_a_query_like_the_library(
    analysed_without_separation: tuple[Path, Path], tmp_path: Path
) -> None:
    library, data = analysed_without_separation
    outside = tmp_path / "me.flac"
    outside.write_bytes((library / "mid/song0.flac").read_bytes())
    by_path = run("recommend", str(library), "mid/song0.flac", "-k", "5", "--per-artist", "0", "--data-dir", str(data), "--json")
    by_file = run("recommend", str(library), str(outside), "-k", "5", "--per-artist", "0", "--data-dir", str(data), "--json")
    assert by_path.returncode == 0 and by_file.returncode == 0, by_path.stderr + by_file.stderr
    stored = similarities(json.loads(by_path.stdout))
    from_file = similarities(json.loads(by_file.stdout))
    assert stored.keys() == from_file.keys() and len(stored) == 5
    for path, similarity in stored.items():
        assert from_file[path] == pytest.approx(similarity, abs=2e-3), path

    with TestClient(create_app(library, data)) as client:
        upload = client.post("/api/query", params={"filename": "me.flac", "k": 5, "per_artist": 0},
                             content=outside.read_bytes(), headers={"content-type": "audio/flac"})  # fmt: skip
    assert upload.status_code == 200, upload.text
    from_upload = similarities(upload.json())
    for path, similarity in stored.items():
        assert from_upload[path] == pytest.approx(similarity, abs=2e-3), path


def test_an_old_catalogue_gets_its_settings_from_its_analysis_versions(tmp_path: Path) -> None:
    library = tmp_path / "music"
    library.mkdir()
    write_old_catalogue(tmp_path / "data", library, analysis_version=AnalysisSettings(separator="none").version)
    with Catalogue(tmp_path / "data", library=library, create=False) as catalogue:
        assert catalogue.analysis_settings() is None
        assert library_settings(catalogue) == AnalysisSettings(separator="none")
        assert [t.status for t in catalogue.tracks()] == ["analyzed"]  # nothing to analyse again

    other = tmp_path / "other"
    other.mkdir()
    foreign_mask = AnalysisSettings().version.replace(f"sep-{AnalysisSettings().separator_version}", "sep-mask-0badc0de")
    write_old_catalogue(tmp_path / "data2", other, analysis_version=foreign_mask)
    with Catalogue(tmp_path / "data2", library=other, create=False) as catalogue:
        with pytest.raises(NextvoxError, match="--separator-weights"):
            library_settings(catalogue)


def test_settings_version_hashes_the_weights_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asking the version per track costs stats, not a read of every weights file."""
    settings = AnalysisSettings()
    first = settings.version
    reads = []
    original = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self) or original(self))
    assert [settings.version for _ in range(5)] == [first] * 5
    assert reads == []
