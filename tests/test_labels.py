"""One labels reader: evaluate, train gender, plot and train separator read a file the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from nextvox.errors import NextvoxError
from nextvox.labels import read_labels, read_track_labels


def test_gender_synonyms_are_read_alike_by_every_command(tmp_path: Path) -> None:
    labels_csv = tmp_path / "labels.csv"
    labels_csv.write_text("Path,singer,gender\na.wav,ann,F\nb.wav,bob, male \nc.wav,cy,\n", encoding="utf-8")
    evaluated = read_labels(labels_csv, library=tmp_path)
    by_path = read_track_labels(labels_csv, library=tmp_path, required=("gender",))
    assert list(evaluated.genders) == ["female", "male", ""]
    assert {path: row.get("gender", "") for path, row in by_path.items()} == dict(zip(evaluated.paths, evaluated.genders))


def test_required_columns_and_empty_cells(tmp_path: Path) -> None:
    rows = read_track_labels(_write(tmp_path / "labels.csv", "path,vocal_path\na.wav,\n"), library=tmp_path, required=("vocal_path",))
    assert rows == {"a.wav": {"path": "a.wav"}}  # an empty cell is left out
    with pytest.raises(NextvoxError, match="line 2: empty singer"):
        read_labels(_write(tmp_path / "singers.csv", "path,singer\na.wav,\n"), library=tmp_path)
    with pytest.raises(NextvoxError, match="no 'vocal_path' column"):
        read_track_labels(_write(tmp_path / "other.csv", "path,singer\na.wav,ann\n"), library=tmp_path, required=("vocal_path",))


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
