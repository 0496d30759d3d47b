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
import subprocess
from pathlib import Path

import numpy as np
import pytest

from nextvox import __version__
from nextvox.analysis import AnalysisSettings, melody_model_version, timbre_model_version
from nextvox.catalogue import SCHEMA_VERSION, Catalogue
from nextvox.melody_match import KEY_SHIFTS, sequence_in_keys
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
        f"excerpt1/sep-mask-[0-9a-f]{{8}}/timbre-cnn-{HEX10}/tcae-{HEX10}-seq\\d+x\\d+k4-ac\\d+/mel-thumbnail-1",
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
    assert SCHEMA_VERSION == 3  # 2: sequences.encoding, the vectors' generation counters; 3: vectors.encoding, int4 sequences
    meta = dict(db.execute("SELECT key, value FROM meta"))
    assert meta["schema_version"] == "3" and re.fullmatch("[0-9a-f]{32}", meta["catalogue_id"])
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
        assert version == "tcae-0123456789" and sequence.shape == (14, 2)
        # Re-encoded as four-bit steps, each scaled to its largest magnitude: the direction of every step is kept.
        expected = np.arange(14 * 2, dtype=np.float32).reshape(14, 2)
        np.testing.assert_allclose(unit_rows(sequence.astype(np.float32)), unit_rows(expected), atol=0.1)
    # Opening migrated it in place to schema 3, with nothing analysed again and the index counters running.
    with Catalogue(tmp_path / "data", library=library, create=False) as catalogue:
        assert catalogue.vectors_generation("timbre") == 0
        catalogue.store_vectors("timbre", {"h1": ("timbre-cnn-0123456789", vector * 2)})
        assert catalogue.vectors_generation("timbre") == 1 and catalogue.tracks()[0].status == "analyzed"
    meta = dict(sqlite3.connect(tmp_path / "data" / "catalogue.sqlite").execute("SELECT key, value FROM meta"))
    assert meta["schema_version"] == "3"


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def write_schema_2_catalogue(data_dir: Path, library: Path, *, analysis_version: str) -> dict[str, np.ndarray]:
    """A schema-2 catalogue (float32 vectors, int8-rows sequences) with one analysed track, in raw SQL; returns what it holds."""
    data_dir.mkdir(parents=True)
    db = sqlite3.connect(data_dir / "catalogue.sqlite")
    db.executescript((CONTRACTS / "catalogue_schema_2.sql").read_text())
    rng = np.random.default_rng(0)
    stored = {"timbre": rng.standard_normal(8).astype(np.float32), "melody": rng.standard_normal(64).astype(np.float32),
              "fingerprint": rng.standard_normal(32).astype(np.float32), "sequence": rng.integers(-127, 128, (21, 16)).astype(np.int8)}  # fmt: skip
    for name in ("melody", "fingerprint"):
        stored[name] /= np.linalg.norm(stored[name])  # both are stored at unit length
    db.executemany("INSERT INTO meta VALUES (?, ?)", [("schema_version", "2"), ("library", str(library)), ("catalogue_id", "c" * 32)])
    db.execute("INSERT INTO tracks VALUES ('a/song.wav', 'h1', 10, 1, 'Ann', 'Song', NULL, 'pop', 'analyzed', NULL)")
    db.execute("INSERT INTO analyses VALUES ('h1', ?, 30.0, 5.0, 30.0, 0.0)", (analysis_version,))
    for name in ("timbre", "melody", "fingerprint"):
        db.execute("INSERT INTO vectors VALUES ('h1', ?, ?, ?)", (name, f"{name}-0123456789", stored[name].tobytes()))
    db.execute("INSERT INTO sequences VALUES ('h1', 'melody', 'tcae-0123456789', 16, ?, 'int8-rows')", (stored["sequence"].tobytes(),))
    db.commit()
    db.close()
    return stored


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a read-only tmpfs needs root (as root, a chmod would not stop writes)")
def test_a_schema_2_catalogue_on_a_read_only_mount_is_read_as_it_is(tmp_path: Path) -> None:
    library = tmp_path / "music"
    library.mkdir()
    mounted = tmp_path / "ro"
    mounted.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mounted)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        stored = write_schema_2_catalogue(mounted / "data", library, analysis_version=SCHEMA_2_VERSION)
        subprocess.run(["mount", "-o", "remount,ro", str(mounted)], check=True)
        with Catalogue(mounted / "data", library=library, create=False) as catalogue:
            np.testing.assert_array_equal(catalogue.vectors_for("melody", ["h1"])["h1"], stored["melody"])
            # Its 7 keys are read as the keys of today's KEY_SHIFTS, the int8 values as they are.
            np.testing.assert_array_equal(catalogue.sequences("melody", ["h1"])["h1"][1], in_todays_keys(stored["sequence"]))
    finally:
        subprocess.run(["umount", "-l", str(mounted)], check=True)


# Today's analysis version as schema 2 wrote it: melody sequences in 7 keys (0, -2, +2, -4, +4, -6, +6).
SCHEMA_2_VERSION = AnalysisSettings(separator="none").version.replace(f"k{len(KEY_SHIFTS)}-ac", "k7-ac")


def in_todays_keys(sequence: np.ndarray) -> np.ndarray:
    """A schema-2 melody sequence (7 keys) cut to the keys of KEY_SHIFTS."""
    return sequence_in_keys(sequence, stored_keys=(0.0, -2.0, 2.0, -4.0, 4.0, -6.0, 6.0))


def test_a_schema_2_catalogue_is_migrated_in_place_and_nothing_is_analysed_again(tmp_path: Path) -> None:
    library = tmp_path / "music"
    library.mkdir()
    version = AnalysisSettings(separator="none").version
    stored = write_schema_2_catalogue(tmp_path / "data", library, analysis_version=SCHEMA_2_VERSION)
    with Catalogue(tmp_path / "data", library=library, create=False) as catalogue:
        # The sequences keep today's keys, and the analysis version says so: nothing is stale.
        assert catalogue.tracks()[0].status == "analyzed" and catalogue.analysis_version("h1") == version
        assert catalogue.contents_to_analyse(version) == {}  # nothing is analysed again
        vectors = catalogue.vectors_of("h1")
        np.testing.assert_array_equal(vectors["timbre"], stored["timbre"])  # float32 as it was
        for name in ("melody", "fingerprint"):  # int8 directions: the cosine with the stored vector stays near 1
            assert vectors[name] @ stored[name] > 0.999 and abs(np.linalg.norm(vectors[name]) - 1) < 1e-6
        (model, sequence), = catalogue.sequences("melody", ["h1"]).values()
        kept = in_todays_keys(stored["sequence"]).astype(np.float32)
        assert model == "tcae-0123456789" and sequence.shape == kept.shape == (3 * len(KEY_SHIFTS), 16)
        cosines = np.sum(unit_rows(sequence.astype(np.float32)) * unit_rows(kept), axis=1)
        assert cosines.min() > 0.97  # each step's direction, from 127 levels to 7
    db = sqlite3.connect(tmp_path / "data" / "catalogue.sqlite")
    assert dict(db.execute("SELECT name, encoding FROM vectors")) == {"timbre": "float32", "melody": "int8-unit", "fingerprint": "int8-unit"}
    assert db.execute("SELECT encoding FROM sequences").fetchall() == [("int4-rows",)]
    assert dict(db.execute("SELECT key, value FROM meta"))["schema_version"] == "3"
