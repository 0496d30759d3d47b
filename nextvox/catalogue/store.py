"""The catalogue: one SQLite file under the data directory that knows every track of a library.

Tables
------
``tracks``
    One row per audio file: its path relative to the library, content hash, size, mtime,
    tags (artist, title, album, genre), status (``pending`` | ``analyzed`` | ``failed``)
    and the reason of a failure.
``analyses``
    One row per distinct *content* (hash): the excerpt that was analysed and the analysis
    version that produced its vectors. Keyed by content, so a moved or copied file is never
    analysed twice.
``vectors``
    The vectors of an analysis (``timbre``, ``melody`` ...), each with the model version that
    produced it and its ``encoding`` (``float32``, or ``int8-unit`` for the vectors compared by
    their direction alone: :data:`VECTOR_ENCODING`).
``sequences``
    Sequences of an analysis (``melody``: (steps, channels)), for order-aware matching; each
    with its model version and its ``encoding`` (``int4-rows`` since schema 3: each step scaled
    to its largest magnitude, for sequences compared by the direction of their steps).
    The encodings are :mod:`nextvox.catalogue.encodings`'s.
``meta``
    ``schema_version``, ``library``, ``analysis_settings`` (JSON: what the library was
    analysed with, so that every command treats its query files the same way), the
    catalogue's random ``catalogue_id`` and, kept by triggers, ``generation:<name>``: a
    counter that moves whenever a vector of that name is added, replaced or removed, so that
    the vector index (:mod:`nextvox.index`) knows it is current without reading the vectors.

Older catalogues are migrated in place when opened writable, and nothing is analysed again:
schema 1 (no ``encoding`` columns, no counters) gains its columns and triggers; schema 1 and 2
blobs (float32 vectors, float16 or int8 sequences) are re-encoded as schema 3 stores them. A
catalogue opened read-only is read as it is, each blob by its own encoding.

The database runs in WAL mode (readers such as the HTTP server never block the analysis)
and every change is one transaction, so a killed process leaves the last committed state.

Why this module stays whole (about 630 lines): it is the only place that speaks SQL to the
schema above. Each method of :class:`Catalogue` is one query or one transaction, and the
migration beside them rewrites the very rows those methods read; split apart, a change of a
column would have to be found in several files.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np

from nextvox.catalogue.datadir import CATALOGUE_FILE, command_hint
from nextvox.catalogue.encodings import decode_sequence, decode_vector, encode_rows_int4, encode_vector
from nextvox.errors import CatalogueError, NextvoxError
from nextvox.melody_match import KEY_SHIFTS, sequence_in_keys

__all__ = ["SCHEMA_VERSION", "VECTOR_ENCODING", "SEQUENCE_ENCODING", "SCHEMA_2_KEY_SHIFTS", "Track", "StoredAnalysis", "Catalogue"]

SCHEMA_VERSION = 3
# Vectors compared by their direction alone (cosine) are kept as int8 directions: a quarter of
# float32, and what it costs is measured in bench/results/catalogue_size.md. Others are float32.
VECTOR_ENCODING = {"melody": "int8-unit", "fingerprint": "int8-unit"}
SEQUENCE_ENCODING = "int4-rows"
# Schema 2 kept a melody sequence in these 7 keys, in this order (its analysis version says
# "-seq<hop>x<steps>k7-"); schema 3 keeps those of KEY_SHIFTS, each relative key matched once.
SCHEMA_2_KEY_SHIFTS = (0.0, -2.0, 2.0, -4.0, 4.0, -6.0, 6.0)
_KEYS_IN_VERSION = re.compile(r"(-seq\d+x\d+)k(\d+)-")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tracks (
    path TEXT PRIMARY KEY,
    content_hash TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    artist TEXT, title TEXT, album TEXT, genre TEXT,
    status TEXT NOT NULL CHECK (status IN ('pending', 'analyzed', 'failed')),
    error TEXT
);
CREATE INDEX IF NOT EXISTS tracks_by_hash ON tracks (content_hash);
CREATE TABLE IF NOT EXISTS analyses (
    content_hash TEXT PRIMARY KEY,
    analysis_version TEXT NOT NULL,
    duration_s REAL NOT NULL,
    excerpt_start_s REAL NOT NULL,
    excerpt_s REAL NOT NULL,
    analyzed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS vectors (
    content_hash TEXT NOT NULL,
    name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    vector BLOB NOT NULL,
    encoding TEXT NOT NULL DEFAULT 'float32',
    PRIMARY KEY (content_hash, name)
);
CREATE TABLE IF NOT EXISTS sequences (
    content_hash TEXT NOT NULL,
    name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    n_channels INTEGER NOT NULL,
    sequence BLOB NOT NULL,
    encoding TEXT NOT NULL DEFAULT 'float16',
    PRIMARY KEY (content_hash, name)
);
"""

# Every change of a vector moves its name's generation counter (one row of meta per name).
_GENERATION_TRIGGERS = [
    f"""CREATE TRIGGER IF NOT EXISTS vectors_generation_{event.lower()} AFTER {event} ON vectors BEGIN
        INSERT INTO meta (key, value) VALUES ('generation:' || {row}.name, '1')
        ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1;
    END"""
    for event, row in (("INSERT", "NEW"), ("DELETE", "OLD"), ("UPDATE", "NEW"))
]


@dataclass(frozen=True)
class Track:
    """One catalogued file. ``path`` is relative to the library, with ``/`` separators."""

    path: str
    content_hash: str
    size_bytes: int
    mtime_ns: int
    artist: str | None
    title: str | None
    album: str | None
    genre: str | None
    status: str
    error: str | None
    duration_s: float | None = None


@dataclass(frozen=True)
class StoredAnalysis:
    """One content's analysis as the catalogue keeps it (:meth:`Catalogue.record_analyses`).

    ``vectors`` maps a name to (model version, vector of shape (D,)); ``sequences`` a name to
    (model version, sequence of shape (steps, channels)). Seconds are of the whole file
    (``duration_s``) and of the analysed excerpt (where it starts, how long it is).
    """

    content_hash: str
    analysis_version: str
    duration_s: float
    excerpt_start_s: float
    excerpt_s: float
    vectors: dict[str, tuple[str, np.ndarray]]
    sequences: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)


def _disk_error(error: sqlite3.Error) -> CatalogueError:
    text = str(error)
    if "full" in text or "disk I/O" in text:
        return CatalogueError(f"the disk holding the catalogue is full ({text}); free space and run again — nothing already analysed is lost")
    return CatalogueError(f"catalogue error: {text}")


class Catalogue:
    """The SQLite catalogue of one library, under ``data_dir/catalogue.sqlite``."""

    def __init__(self, data_dir: Path, *, library: Path, create: bool = True):
        self.data_dir = Path(data_dir)
        self.library = Path(library)
        self.path = self.data_dir / CATALOGUE_FILE
        if self.data_dir.resolve().is_relative_to(self.library.resolve()):
            # The music folder may be read-only, shared or synced, and a catalogue inside it would be scanned too.
            raise NextvoxError(f"the data directory {self.data_dir} is inside the music folder {library}; "
                               "nextvox never writes there: give a --data-dir outside it")
        if not create and not self.path.exists():
            raise NextvoxError(f"no catalogue for this library in {self.data_dir}: run `{command_hint('analyze', library, self.data_dir)}` first")
        if not create and not os.access(self.data_dir, os.W_OK):
            self._open_read_only()
            return
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            with self.transaction():
                self._migrate_columns()
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                for trigger in _GENERATION_TRIGGERS:
                    self._db.execute(trigger)
                self._check_meta()
        except OSError as error:
            raise CatalogueError(f"cannot use the data directory {self.data_dir}: {error.strerror}") from None
        except sqlite3.DatabaseError as error:
            raise CatalogueError(f"cannot open the catalogue {self.path}: {error}") from None

    def _migrate_columns(self) -> None:
        """The ``encoding`` columns an older catalogue lacks: its sequences' (schema 1: float16) and its vectors' (schema 1, 2: float32)."""
        for table, default in (("sequences", "float16"), ("vectors", "float32")):
            columns = [row[1] for row in self._db.execute(f"PRAGMA table_info({table})")]
            if columns and "encoding" not in columns:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN encoding TEXT NOT NULL DEFAULT '{default}'")

    def _reencode_blobs(self) -> None:
        """Schema 1, 2 -> 3 in place: the vectors of VECTOR_ENCODING's names and every sequence re-encoded as schema 3 keeps
        them, a schema-2 melody sequence cut to the keys of KEY_SHIFTS and its analysis version saying so.

        A batch of rows at a time (by rowid), so that memory stays flat at any size; the
        vectors' generation counters move (their indexes are rebuilt once, from the same values).
        """
        names = ",".join("?" * len(VECTOR_ENCODING))
        for rows in self._batches(f"SELECT rowid, name, vector, encoding FROM vectors WHERE rowid > ? AND name IN ({names})"
                                  " AND encoding != 'int8-unit' ORDER BY rowid LIMIT ?", list(VECTOR_ENCODING)):  # fmt: skip
            self._db.executemany("UPDATE vectors SET vector = ?, encoding = ? WHERE rowid = ?",
                                 [(*_vector_blob(name, decode_vector(blob, encoding=encoding)), rowid) for rowid, name, blob, encoding in rows])  # fmt: skip
        for rows in self._batches("SELECT s.rowid, s.name, s.sequence, s.encoding, s.n_channels, a.analysis_version FROM sequences s"
                                  " LEFT JOIN analyses a USING (content_hash) WHERE s.rowid > ? AND s.encoding != ? ORDER BY s.rowid LIMIT ?",
                                  [SEQUENCE_ENCODING]):  # fmt: skip
            self._db.executemany("UPDATE sequences SET sequence = ?, encoding = ? WHERE rowid = ?", [
                (encode_rows_int4(_in_stored_keys(name, decode_sequence(blob, encoding=encoding, n_channels=channels), version)),
                 SEQUENCE_ENCODING, rowid) for rowid, name, blob, encoding, channels, version in rows])  # fmt: skip
        versions = self._db.execute("SELECT DISTINCT analysis_version FROM analyses").fetchall()
        self._db.executemany("UPDATE analyses SET analysis_version = ? WHERE analysis_version = ?",
                             [(_version_in_stored_keys(v), v) for (v,) in versions if _version_in_stored_keys(v) != v])  # fmt: skip

    def _batches(self, query: str, params: list) -> Iterator[list[tuple]]:
        """The rows of ``query`` (``... WHERE rowid > ? ... ORDER BY rowid LIMIT ?``, rowid first) _MIGRATION_BATCH at a time."""
        last = -1
        while rows := self._db.execute(query, [last, *params, _MIGRATION_BATCH]).fetchall():
            yield rows
            last = rows[-1][0]

    def _open_read_only(self) -> None:
        """Open a catalogue whose folder cannot be written (a read-only mount, a copy on a DVD), to read it.

        SQLite in WAL mode writes a shared-memory file beside the database even to read it;
        ``immutable`` reads the file as it is, which is all a folder nobody can write allows.
        """
        try:
            self._db = sqlite3.connect(f"file:{quote(str(self.path.resolve()))}?immutable=1", uri=True,
                                       isolation_level=None, check_same_thread=False)
            self._check_meta(writable=False)
        except sqlite3.DatabaseError as error:
            raise CatalogueError(f"cannot open the catalogue {self.path}: {error}") from None

    def _check_meta(self, *, writable: bool = True) -> None:
        """Check the meta rows; when ``writable``, fill them in (a new catalogue) or migrate them (schema 1).

        A catalogue opened read-only is read as it is: a schema 1 one has no ``catalogue_id``
        (its vector index is then never trusted), its sequences are float16 and its vectors float32.
        """
        self._encoding_column = self._column_or("sequences", "encoding", "'float16'")
        self._vector_encoding_column = self._column_or("vectors", "encoding", "'float32'")
        rows = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if not rows:
            self._db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("schema_version", str(SCHEMA_VERSION)), ("library", str(self.library)), ("catalogue_id", uuid.uuid4().hex)],
            )
            self.catalogue_id = self._meta("catalogue_id")
            return
        if int(rows.get("schema_version", 0)) > SCHEMA_VERSION:
            raise CatalogueError(f"the catalogue {self.path} was written by a newer nextvox; upgrade nextvox")
        if rows.get("library") != str(self.library):
            raise CatalogueError(
                f"the data directory {self.data_dir} holds the catalogue of {rows.get('library')}; "
                f"pass another --data-dir for {self.library}"
            )
        if writable and (int(rows["schema_version"]) < SCHEMA_VERSION or "catalogue_id" not in rows):
            if int(rows["schema_version"]) < 3:
                self._reencode_blobs()
            self._db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [("schema_version", str(SCHEMA_VERSION)), ("catalogue_id", rows.get("catalogue_id") or uuid.uuid4().hex)],
            )
        self.catalogue_id = self._meta("catalogue_id")

    def _column_or(self, table: str, column: str, default: str) -> str:
        """``column`` when ``table`` has it (or does not exist yet), else the SQL literal ``default`` (an older schema read as it is)."""
        columns = [row[1] for row in self._db.execute(f"PRAGMA table_info({table})")]
        return column if column in columns or not columns else default

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Catalogue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    class _Transaction:
        def __init__(self, db: sqlite3.Connection):
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, exc_type, exc, tb) -> None:
            # SQLite rolls back by itself on some errors (a full disk): only roll back what is open.
            if exc_type is None:
                try:
                    self.db.execute("COMMIT")
                    return
                except sqlite3.Error as error:
                    exc = error
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise _disk_error(exc) from None

    def transaction(self) -> Catalogue._Transaction:
        """One atomic change: ``with catalogue.transaction() as db: ...``."""
        return Catalogue._Transaction(self._db)

    # ---- reading -------------------------------------------------------------------------

    def tracks(self, *, status: str | None = None) -> list[Track]:
        """All tracks (or those of one status), ordered by path."""
        query = (
            "SELECT t.path, t.content_hash, t.size_bytes, t.mtime_ns, t.artist, t.title, t.album, t.genre,"
            " t.status, t.error, a.duration_s FROM tracks t LEFT JOIN analyses a USING (content_hash)"
        )
        params: tuple = ()
        if status is not None:
            query += " WHERE t.status = ?"
            params = (status,)
        rows = self._db.execute(query + " ORDER BY t.path", params).fetchall()
        return [Track(*row) for row in rows]

    def track(self, path: str) -> Track | None:
        rows = [t for t in self._db.execute(
            "SELECT t.path, t.content_hash, t.size_bytes, t.mtime_ns, t.artist, t.title, t.album, t.genre,"
            " t.status, t.error, a.duration_s FROM tracks t LEFT JOIN analyses a USING (content_hash)"
            " WHERE t.path = ?", (path,)).fetchall()]
        return Track(*rows[0]) if rows else None

    def track_page(self, *, status: str | None = None, offset: int = 0, limit: int = 100) -> tuple[int, list[Track]]:
        """(how many tracks there are, of ``status`` when given; the ``limit`` of them from ``offset``), in path order.

        Counted and paged in SQLite: no other track is read.
        """
        where, params = (" WHERE t.status = ?", (status,)) if status is not None else ("", ())
        total = self._db.execute(f"SELECT COUNT(*) FROM tracks t{where}", params).fetchone()[0]
        rows = self._db.execute(
            "SELECT t.path, t.content_hash, t.size_bytes, t.mtime_ns, t.artist, t.title, t.album, t.genre,"
            f" t.status, t.error, a.duration_s FROM tracks t LEFT JOIN analyses a USING (content_hash){where}"
            " ORDER BY t.path LIMIT ? OFFSET ?", (*params, limit, offset)).fetchall()
        return total, [Track(*row) for row in rows]

    def tracks_holding(self, words: list[str], *, text_of: Callable[..., str]) -> list[Track]:
        """The tracks whose text holds every one of ``words``, ordered by path.

        ``text_of(path, artist, title, album, genre)`` makes a track's text (the caller's rule,
        such as case-folding); it runs inside SQLite's scan, so that only the tracks found
        become :class:`Track` objects (reading every track took 0.55 s of CPU at 10^5).
        """
        self._db.create_function("nextvox_holds", 5, lambda *fields: all(w in text_of(*fields) for w in words))
        rows = self._db.execute(
            "SELECT t.path, t.content_hash, t.size_bytes, t.mtime_ns, t.artist, t.title, t.album, t.genre,"
            " t.status, t.error, a.duration_s FROM tracks t LEFT JOIN analyses a USING (content_hash)"
            " WHERE nextvox_holds(t.path, t.artist, t.title, t.album, t.genre) ORDER BY t.path").fetchall()
        return [Track(*row) for row in rows]

    def path_ending_with(self, tail: str) -> str | None:
        """The first track path (in path order) that ends with ``tail`` (compared with case), or None.

        One pass over the paths in SQLite, no Track made: for a player's file path when the
        library holds the player's folder.
        """
        row = self._db.execute("SELECT path FROM tracks WHERE substr(path, -?) = ? ORDER BY path LIMIT 1",
                               (len(tail), tail)).fetchone() if tail else None
        return row[0] if row else None

    def tracks_of(self, content_hashes: Iterable[str]) -> dict[str, list[Track]]:
        """The tracks holding each of ``content_hashes`` (those with none are left out), each list ordered by path."""
        found: dict[str, list[Track]] = {}
        hashes = list(dict.fromkeys(content_hashes))
        for start in range(0, len(hashes), _SQL_BATCH):
            batch = hashes[start : start + _SQL_BATCH]
            rows = self._db.execute(
                "SELECT t.path, t.content_hash, t.size_bytes, t.mtime_ns, t.artist, t.title, t.album, t.genre,"
                " t.status, t.error, a.duration_s FROM tracks t LEFT JOIN analyses a USING (content_hash)"
                f" WHERE t.content_hash IN ({','.join('?' * len(batch))}) ORDER BY t.path", batch).fetchall()
            for row in rows:
                found.setdefault(row[1], []).append(Track(*row))
        return found

    def file_states(self) -> dict[str, tuple[int, int, str]]:
        """Every track's file as last seen: path -> (size in bytes, mtime in ns, content hash); one query, no Track objects."""
        return {path: (size, mtime, digest) for path, size, mtime, digest
                in self._db.execute("SELECT path, size_bytes, mtime_ns, content_hash FROM tracks")}  # fmt: skip

    def contents_to_analyse(self, analysis_version: str, *, retry_failed: bool = False) -> dict[str, str]:
        """The contents an analysis at ``analysis_version`` has to do: content hash -> the first path (in path order) holding it.

        Pending tracks, tracks analysed at another version, and with ``retry_failed`` failed
        tracks that could be read; one query.
        """
        rows = self._db.execute(
            "SELECT t.content_hash, t.path FROM tracks t LEFT JOIN analyses a USING (content_hash)"
            " WHERE t.status = 'pending' OR (t.status = 'analyzed' AND a.analysis_version IS NOT ?)"
            " OR (? AND t.status = 'failed' AND t.content_hash != '') ORDER BY t.path", (analysis_version, retry_failed))
        todo: dict[str, str] = {}
        for digest, path in rows:
            todo.setdefault(digest, path)
        return todo

    def vectors_generation(self, name: str) -> int:
        """How many times a vector of ``name`` was added, replaced or removed (0 before the first)."""
        value = self._meta(f"generation:{name}")
        return int(value) if value is not None else 0

    def has_vectors(self, name: str) -> bool:
        return self._db.execute("SELECT 1 FROM vectors WHERE name = ? LIMIT 1", (name,)).fetchone() is not None

    def data_version(self) -> int:
        """A number that changes whenever another connection (an ``analyze`` beside a server) commits a change.

        SQLite's ``PRAGMA data_version``: read without touching a table, so a server can ask it
        at every request whatever the catalogue's size.
        """
        return self._db.execute("PRAGMA data_version").fetchone()[0]

    def status_counts(self) -> dict[str, int]:
        counts = {"analyzed": 0, "failed": 0, "pending": 0}
        for status, n in self._db.execute("SELECT status, COUNT(*) FROM tracks GROUP BY status"):
            counts[status] = n
        return counts

    def analysis_version(self, content_hash: str) -> str | None:
        row = self._db.execute("SELECT analysis_version FROM analyses WHERE content_hash = ?", (content_hash,)).fetchone()
        return row[0] if row else None

    def analysis_versions(self) -> dict[str, int]:
        """How many analysed contents each analysis version holds, the most common first."""
        rows = self._db.execute(
            "SELECT analysis_version, COUNT(*) AS n FROM analyses GROUP BY analysis_version ORDER BY n DESC, analysis_version"
        ).fetchall()
        return dict(rows)

    def analysis_settings(self) -> dict | None:
        """The analysis settings stored by the last ``analyze`` (a JSON object), or None before any."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'analysis_settings'").fetchone()
        return json.loads(row[0]) if row else None

    def vectors(self, name: str) -> tuple[list[str], np.ndarray, list[str]]:
        """Every stored vector of one name.

        Returns
        -------
        hashes : list of str, length N
        matrix : np.ndarray, shape (N, D), float32
        model_versions : list of str, length N
        """
        rows = self._db.execute(
            f"SELECT content_hash, vector, model_version, {self._vector_encoding_column} FROM vectors WHERE name = ? ORDER BY content_hash",
            (name,),
        ).fetchall()
        if not rows:
            return [], np.zeros((0, 0), dtype=np.float32), []
        matrix = np.stack([decode_vector(blob, encoding=encoding) for _, blob, _, encoding in rows])
        return [row[0] for row in rows], matrix, [row[2] for row in rows]

    def vector_versions(self, name: str) -> tuple[list[str], list[str]]:
        """The content hashes holding a vector of ``name`` and its model versions, ordered by hash (no vectors read)."""
        rows = self._db.execute("SELECT content_hash, model_version FROM vectors WHERE name = ? ORDER BY content_hash", (name,)).fetchall()
        return [h for h, _ in rows], [v for _, v in rows]

    def vectors_for(self, name: str, content_hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """The stored ``name`` vectors of some contents: hash -> (D,) float32 (absent ones left out)."""
        found = {}
        hashes = list(dict.fromkeys(content_hashes))
        for start in range(0, len(hashes), _SQL_BATCH):
            batch = hashes[start : start + _SQL_BATCH]
            rows = self._db.execute(f"SELECT content_hash, vector, {self._vector_encoding_column} FROM vectors"
                                    f" WHERE name = ? AND content_hash IN ({','.join('?' * len(batch))})", [name, *batch]).fetchall()  # fmt: skip
            found.update((h, decode_vector(blob, encoding=encoding)) for h, blob, encoding in rows)
        return found

    def vectors_of(self, content_hash: str) -> dict[str, np.ndarray]:
        rows = self._db.execute(f"SELECT name, vector, {self._vector_encoding_column} FROM vectors WHERE content_hash = ?",
                                (content_hash,)).fetchall()  # fmt: skip
        return {name: decode_vector(blob, encoding=encoding).copy() for name, blob, encoding in rows}

    def sequences(self, name: str, content_hashes: Iterable[str]) -> dict[str, tuple[str, np.ndarray]]:
        """Stored sequences of one name: content hash -> (model version, (steps, channels) array); absent ones are left out.

        The array is float16 or int8 as stored (:func:`~nextvox.catalogue.encodings.decode_sequence`); a melody
        sequence of a schema-2 catalogue opened read-only comes in the keys of KEY_SHIFTS, as a migration keeps it.
        """
        found = {}
        hashes = list(dict.fromkeys(content_hashes))
        for start in range(0, len(hashes), _SQL_BATCH):
            batch = hashes[start : start + _SQL_BATCH]
            rows = self._db.execute(
                f"SELECT s.content_hash, s.model_version, s.n_channels, s.sequence, {self._encoding_column}, a.analysis_version"
                f" FROM sequences s LEFT JOIN analyses a USING (content_hash)"
                f" WHERE s.name = ? AND s.content_hash IN ({','.join('?' * len(batch))})", [name, *batch]).fetchall()
            for digest, version, channels, blob, encoding, analysis_version in rows:
                sequence = decode_sequence(blob, encoding=encoding, n_channels=channels)
                found[digest] = (version, _in_stored_keys(name, sequence, analysis_version))  # an older catalogue read as it is
        return found

    # ---- writing -------------------------------------------------------------------------

    def update_tracks(self, *, removed: Iterable[str], rows: Iterable[tuple], maybe_orphaned: Iterable[str]) -> None:
        """What a scan found, in one transaction: ``removed`` paths leave, ``rows`` (every column of
        ``tracks``, in order) are added or replace their path's row, and the analyses, vectors and
        sequences of ``maybe_orphaned`` contents go where no track holds them any more.

        Only the contents that lost a track are looked at, so an unchanged scan touches no
        analysis (a sweep of every vector row took seconds at 10^5 tracks).
        """
        orphans = [(h, h) for h in set(maybe_orphaned)]
        with self.transaction() as db:
            db.executemany("DELETE FROM tracks WHERE path = ?", [(p,) for p in removed])
            db.executemany("INSERT OR REPLACE INTO tracks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            for table in ("vectors", "sequences", "analyses"):
                db.executemany(f"DELETE FROM {table} WHERE content_hash = ? AND NOT EXISTS "
                               "(SELECT 1 FROM tracks WHERE content_hash = ?)", orphans)  # fmt: skip

    def store_analysis_settings(self, settings: dict) -> None:
        """Remember what the library is analysed with (a JSON-ready dict), replacing what was stored."""
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('analysis_settings', ?)", (json.dumps(settings, sort_keys=True),))

    def record_analysis(self, content_hash: str, **analysis: object) -> None:
        """Store one analysis and mark every track with this content analysed, atomically.

        The keywords are :class:`StoredAnalysis`'s fields after ``content_hash``.
        """
        self.record_analyses([StoredAnalysis(content_hash, **analysis)])

    def record_analyses(self, analyses: Iterable[StoredAnalysis]) -> None:
        """Store many analyses and mark every track holding their contents analysed, in one transaction.

        One transaction and one statement a table for the whole batch: a bulk writer (a
        benchmark's synthetic catalogue, a merge of results) pays SQLite's per-commit cost once.
        """
        analyses = list(analyses)
        hashes = [(a.content_hash,) for a in analyses]
        now = time.time()
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO analyses VALUES (?, ?, ?, ?, ?, ?)",
                [(a.content_hash, a.analysis_version, a.duration_s, a.excerpt_start_s, a.excerpt_s, now) for a in analyses],
            )
            db.executemany("DELETE FROM vectors WHERE content_hash = ?", hashes)
            db.executemany(
                "INSERT INTO vectors (content_hash, name, model_version, vector, encoding) VALUES (?, ?, ?, ?, ?)",
                [(a.content_hash, name, version, *_vector_blob(name, v)) for a in analyses for name, (version, v) in a.vectors.items()],
            )
            db.executemany("DELETE FROM sequences WHERE content_hash = ?", hashes)
            db.executemany(
                "INSERT INTO sequences (content_hash, name, model_version, n_channels, sequence, encoding) VALUES (?, ?, ?, ?, ?, ?)",
                [(a.content_hash, name, version, int(np.shape(x)[1]), encode_rows_int4(x), SEQUENCE_ENCODING)
                 for a in analyses for name, (version, x) in a.sequences.items()],
            )  # fmt: skip
            db.executemany("UPDATE tracks SET status = 'analyzed', error = NULL WHERE content_hash = ?", hashes)

    def store_vectors(self, name: str, vectors: dict[str, tuple[str, np.ndarray]]) -> None:
        """Add or replace one named vector of analysed contents, atomically.

        For stages that run on stored vectors after the analysis (the gender head):
        ``vectors`` maps a content hash to (model version, vector of shape (D,)). Contents
        without an analysis are skipped (a vector always belongs to an analysis).
        """
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO vectors (content_hash, name, model_version, vector, encoding)"
                " SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM analyses WHERE content_hash = ?)",
                [(h, name, version, *_vector_blob(name, v), h) for h, (version, v) in vectors.items()],
            )

    def delete_vectors(self, name: str, content_hashes: Iterable[str]) -> None:
        """Remove one named vector of the given contents (e.g. a prediction that no longer applies)."""
        with self.transaction() as db:
            db.executemany("DELETE FROM vectors WHERE content_hash = ? AND name = ?", [(h, name) for h in content_hashes])

    def record_failure(self, *, error: str, content_hash: str | None = None, path: str | None = None) -> None:
        """Mark the tracks of one content (or one path) failed, with the reason."""
        with self.transaction() as db:
            if path is not None:
                db.execute("UPDATE tracks SET status = 'failed', error = ? WHERE path = ?", (error, path))
            else:
                db.execute("UPDATE tracks SET status = 'failed', error = ? WHERE content_hash = ?", (error, content_hash))


_SQL_BATCH = 500  # host parameters per IN (...) list: well under SQLite's limit
_MIGRATION_BATCH = 2000  # rows re-encoded at a time by a schema migration


def _stored_key_count(analysis_version: str | None) -> int | None:
    """How many keys the melody sequences of an analysis version hold (``...-seq16x120k4-...``); None when it does not say."""
    match = _KEYS_IN_VERSION.search(analysis_version or "")
    return int(match[2]) if match else None


def _in_stored_keys(name: str, sequence: np.ndarray, analysis_version: str | None) -> np.ndarray:
    """A stored sequence in the keys schema 3 keeps: a melody sequence of SCHEMA_2_KEY_SHIFTS keeps those of KEY_SHIFTS.

    Shapes: (len(SCHEMA_2_KEY_SHIFTS) * steps, D) -> (len(KEY_SHIFTS) * steps, D); any other sequence is returned as it is.
    """
    if name != "melody" or _stored_key_count(analysis_version) != len(SCHEMA_2_KEY_SHIFTS) or len(KEY_SHIFTS) == len(SCHEMA_2_KEY_SHIFTS):
        return sequence
    return sequence_in_keys(sequence, stored_keys=SCHEMA_2_KEY_SHIFTS)


def _version_in_stored_keys(analysis_version: str) -> str:
    """An analysis version of SCHEMA_2_KEY_SHIFTS's melody sequences as it reads once they are cut to KEY_SHIFTS.

    >>> _version_in_stored_keys("excerpt1/sep-none/timbre-cnn-0/tcae-0-seq16x120k7-ac32/mel-thumbnail-1")
    'excerpt1/sep-none/timbre-cnn-0/tcae-0-seq16x120k4-ac32/mel-thumbnail-1'
    """
    if _stored_key_count(analysis_version) != len(SCHEMA_2_KEY_SHIFTS):
        return analysis_version
    return _KEYS_IN_VERSION.sub(rf"\g<1>k{len(KEY_SHIFTS)}-", analysis_version)


def _vector_blob(name: str, vector: np.ndarray) -> tuple[bytes, str]:
    """(blob, encoding) of a vector of ``name`` as the catalogue keeps it (:data:`VECTOR_ENCODING`)."""
    encoding = VECTOR_ENCODING.get(name, "float32")
    return encode_vector(vector, encoding=encoding), encoding
