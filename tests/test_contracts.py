"""Contracts pinned before the code behind them moves: version strings, the catalogue schema,
old catalogues and weight files still read, and the HTTP API's OpenAPI document.

The OpenAPI snapshot (tests/contracts/openapi.json) may only grow: a route, field or schema
that it names must stay as it is; new ones are free. After adding routes on purpose, refresh
it with ``NEXTVOX_UPDATE_SNAPSHOTS=1 pytest tests/test_contracts.py``.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from pathlib import Path

import numpy as np

from nextvox import __version__
from nextvox.analysis import AnalysisSettings, melody_model_version, timbre_model_version
from nextvox.catalogue import SCHEMA_VERSION, Catalogue
from nextvox.separation import SHIPPED_MASK_WEIGHTS, separator_version

CONTRACTS = Path(__file__).parent / "contracts"
HEX10 = "[0-9a-f]{10}"


def test_version_strings_keep_their_format() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)
    assert re.fullmatch(f"timbre-cnn-{HEX10}", timbre_model_version())
    assert re.fullmatch(f"tcae-{HEX10}", melody_model_version())
    assert separator_version("none") == "none"
    assert separator_version("classical") == "classical-hpss-1"
    assert re.fullmatch("mask-[0-9a-f]{8}", separator_version("mask"))
    assert re.fullmatch(
        f"excerpt1/sep-mask-[0-9a-f]{{8}}/timbre-cnn-{HEX10}/tcae-{HEX10}-seq\\d+x\\d+k7-ac\\d+/mel-thumbnail-1",
        AnalysisSettings().version,
    )
    assert AnalysisSettings(separator="none").version.startswith("excerpt1/sep-none/timbre-cnn-")


def test_the_catalogue_schema_is_pinned(tmp_path: Path) -> None:
    library = tmp_path / "music"
    library.mkdir()
    Catalogue(tmp_path / "data", library=library).close()
    db = sqlite3.connect(tmp_path / "data" / "catalogue.sqlite")
    tables = {name: [(c[1], c[2], c[3], c[5]) for c in db.execute(f"PRAGMA table_info({name})")]
              for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")}
    expected = json.loads((CONTRACTS / "catalogue_schema.json").read_text())
    assert {name: [list(c) for c in columns] for name, columns in tables.items()} == expected
    assert SCHEMA_VERSION == 2  # 2: sequences.encoding, the vectors' generation counters (schema 1 is migrated)
    meta = dict(db.execute("SELECT key, value FROM meta"))
    assert meta["schema_version"] == "2" and re.fullmatch("[0-9a-f]{32}", meta["catalogue_id"])
    triggers = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    assert triggers == {"vectors_generation_insert", "vectors_generation_delete", "vectors_generation_update"}


# A catalogue as nextvox 0.1.0 wrote it (schema 1, before the analysis settings were stored):
# one analysed track with a timbre vector, built with raw SQL so that no code of today shapes it.
OLD_CATALOGUE_SQL = (CONTRACTS / "catalogue_schema_1.sql")


def write_old_catalogue(data_dir: Path, library: Path, *, analysis_version: str) -> np.ndarray:
    """A schema-1 catalogue at ``data_dir`` for ``library`` with one analysed track; returns its timbre vector."""
    data_dir.mkdir(parents=True)
    db = sqlite3.connect(data_dir / "catalogue.sqlite")
    db.executescript(OLD_CATALOGUE_SQL.read_text())
    vector = np.arange(8, dtype=np.float32) / 8
    db.executemany("INSERT INTO meta VALUES (?, ?)", [("schema_version", "1"), ("library", str(library))])
    db.execute("INSERT INTO tracks VALUES ('a/song.wav', 'h1', 10, 1, 'Ann', 'Song', NULL, 'pop', 'analyzed', NULL)")
    db.execute("INSERT INTO analyses VALUES ('h1', ?, 30.0, 5.0, 30.0, 0.0)", (analysis_version,))
    db.execute("INSERT INTO vectors VALUES ('h1', 'timbre', 'timbre-cnn-0123456789', ?)", (vector.tobytes(),))
    db.execute("INSERT INTO sequences VALUES ('h1', 'melody', 'tcae-0123456789', 2, ?)",
               (np.arange(14 * 2, dtype=np.float16).tobytes(),))
    db.commit()
    db.close()
    return vector


def test_an_old_catalogue_is_read_as_it_is(tmp_path: Path) -> None:
    library = tmp_path / "music"
    library.mkdir()
    vector = write_old_catalogue(tmp_path / "data", library, analysis_version=AnalysisSettings(separator="none").version)
    with Catalogue(tmp_path / "data", library=library, create=False) as catalogue:
        (track,) = catalogue.tracks()
        assert (track.path, track.status, track.artist, track.duration_s) == ("a/song.wav", "analyzed", "Ann", 30.0)
        hashes, vectors, versions = catalogue.vectors("timbre")
        assert hashes == ["h1"] and versions == ["timbre-cnn-0123456789"]
        np.testing.assert_array_equal(vectors[0], vector)
        (version, sequence), = catalogue.sequences("melody", ["h1"]).values()
        assert version == "tcae-0123456789" and sequence.dtype == np.float16
        np.testing.assert_array_equal(sequence, np.arange(14 * 2, dtype=np.float16).reshape(14, 2))
    # Opening migrated it in place to schema 2, with nothing analysed again and the index counters running.
    with Catalogue(tmp_path / "data", library=library, create=False) as catalogue:
        assert catalogue.vectors_generation("timbre") == 0
        catalogue.store_vectors("timbre", {"h1": ("timbre-cnn-0123456789", vector * 2)})
        assert catalogue.vectors_generation("timbre") == 1 and catalogue.tracks()[0].status == "analyzed"
    meta = dict(sqlite3.connect(tmp_path / "data" / "catalogue.sqlite").execute("SELECT key, value FROM meta"))
    assert meta["schema_version"] == "2"


def test_the_shipped_weight_files_load() -> None:
    """The weight files of the first release load through today's loaders (weights_only, no pickle)."""
    from nextvox.gender import shipped_head
    from nextvox.models import separator, tcae, timbre

    weights = Path(__file__).parents[1] / "nextvox" / "weights"
    assert sum(p.numel() for p in timbre.load_weights(weights / "timbre.pt").parameters()) > 0
    assert sum(p.numel() for p in tcae.load_weights(weights / "tcae.pt").parameters()) > 0
    assert sum(p.numel() for p in separator.load_weights(SHIPPED_MASK_WEIGHTS).parameters()) > 0
    head = shipped_head()
    assert head is not None and head.timbre_model_version == timbre_model_version()


def contained(pinned: object, current: object, where: str = "") -> list[str]:
    """Where ``current`` lacks or changes something of ``pinned`` (dicts may grow; prose may change)."""
    if isinstance(pinned, dict) and isinstance(current, dict):
        problems = []
        for key, value in pinned.items():
            if key in ("description", "summary"):
                continue
            if key not in current:
                problems.append(f"{where}/{key}: gone")
            else:
                problems += contained(value, current[key], f"{where}/{key}")
        return problems
    return [] if pinned == current else [f"{where}: {pinned!r} became {current!r}"]


def test_the_openapi_document_only_grows(tmp_path: Path) -> None:
    from nextvox.api import create_app

    library = tmp_path / "music"
    library.mkdir()
    document = create_app(library, tmp_path / "data").openapi()
    document["info"].pop("version")
    snapshot = CONTRACTS / "openapi.json"
    if os.environ.get("NEXTVOX_UPDATE_SNAPSHOTS"):
        snapshot.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    problems = contained(json.loads(snapshot.read_text()), document)
    assert not problems, "\n".join(problems[:20])
