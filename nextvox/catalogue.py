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
    The vectors of an analysis (``timbre``, ``melody`` ...), float32 blobs, each with the
    model version that produced it.
``sequences``
    Sequences of an analysis (``melody``: (steps, channels)), for order-aware matching; each
    with its model version and its ``encoding`` (``float16``, or ``int8-rows``: each step
    scaled to its largest magnitude, for sequences compared by the direction of their steps).
``meta``
    ``schema_version``, ``library``, ``analysis_settings`` (JSON: what the library was
    analysed with, so that every command treats its query files the same way), the
    catalogue's random ``catalogue_id`` and, kept by triggers, ``generation:<name>``: a
    counter that moves whenever a vector of that name is added, replaced or removed, so that
    the vector index (:mod:`nextvox.index`) knows it is current without reading the vectors.

Schema 1 catalogues (no ``encoding``, no counters) are migrated in place when opened: a
column and the triggers are added, nothing is analysed again.

The database runs in WAL mode (readers such as the HTTP server never block the analysis)
and every change is one transaction, so a killed process leaves the last committed state.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import sqlite3
import stat
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np

from nextvox.audio import AUDIO_EXTENSIONS
from nextvox.errors import CatalogueError, NextvoxError

__all__ = [
    "SEQUENCE_ENCODINGS",
    "encode_rows_int8",
    "decode_sequence",
    "Track",
    "ScanReport",
    "Catalogue",
    "default_data_dir",
    "command_hint",
    "library_data_dir",
    "remember_data_dir",
    "resolve_library",
    "content_hash",
    "catalogue_path",
    "track_file",
    "read_tags",
    "scan_library",
    "exclusive_analysis",
]

SCHEMA_VERSION = 2
HASH_CHUNK_BYTES = 1 << 20

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
SEQUENCE_ENCODINGS = ("float16", "int8-rows")


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
class ScanReport:
    """What a scan found: counts of files per kind of change."""

    total: int
    new: int
    changed: int
    moved: int
    removed: int
    unchanged: int


CATALOGUE_FILE = "catalogue.sqlite"


def default_data_dir(library: Path) -> Path:
    """Where a library's catalogue lives when no ``--data-dir`` is given.

    ``$NEXTVOX_DATA_DIR`` when set, else ``$XDG_DATA_HOME/nextvox/<name>-<digest>`` (by
    default under ``~/.local/share``): outside the music folder, which may be read-only,
    and one directory per library, told apart by a digest of its absolute path.
    """
    if os.environ.get("NEXTVOX_DATA_DIR"):
        return Path(os.environ["NEXTVOX_DATA_DIR"])
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    root = Path(library).resolve()
    digest = hashlib.blake2b(str(root).encode(), digest_size=4).hexdigest()
    return base / "nextvox" / f"{root.name or 'root'}-{digest}"


REMEMBERED_DATA_DIR_FILE = "data-dir.txt"  # in a library's default data directory: where its catalogue really is


def remember_data_dir(library: Path, data_dir: Path) -> None:
    """Note that ``library``'s catalogue is in ``data_dir``, so that commands run later without
    ``--data-dir`` find it (:func:`library_data_dir`).

    The note is a one-line file in the library's default data directory; nothing is written
    when ``data_dir`` is that directory or ``$NEXTVOX_DATA_DIR`` is set.
    """
    if os.environ.get("NEXTVOX_DATA_DIR"):
        return
    home = default_data_dir(library)
    chosen = Path(data_dir).expanduser().resolve()
    if chosen == home.resolve():
        return
    try:
        home.mkdir(parents=True, exist_ok=True)
        (home / REMEMBERED_DATA_DIR_FILE).write_text(f"{chosen}\n", encoding="utf-8")
    except OSError:
        pass  # a convenience only: the hints still name --data-dir


def library_data_dir(library: Path) -> Path:
    """Where ``library``'s catalogue is when no ``--data-dir`` is given: the default data
    directory, or the one :func:`remember_data_dir` noted when the default holds no catalogue."""
    home = default_data_dir(library)
    if os.environ.get("NEXTVOX_DATA_DIR") or (home / CATALOGUE_FILE).exists():
        return home
    try:
        remembered = Path((home / REMEMBERED_DATA_DIR_FILE).read_text(encoding="utf-8").strip())
    except (OSError, UnicodeDecodeError):
        return home
    return remembered if (remembered / CATALOGUE_FILE).exists() else home


def command_hint(command: str, library: Path, data_dir: Path, *extra: str) -> str:
    """``nextvox COMMAND LIBRARY [EXTRA...] [--data-dir DIR]``, a command for a message to suggest:
    it names the data directory whenever that is not the library's default, so that the user's
    choice is kept. ``...`` in ``extra`` stays as it is (the user's own options).

    >>> command_hint("analyze", Path("/m/my music"), Path("/d"))
    "nextvox analyze '/m/my music' --data-dir /d"
    """
    import shlex

    words = ["nextvox", *command.split(), str(library), *extra]
    if Path(data_dir).expanduser().resolve() != default_data_dir(library).resolve():
        words += ["--data-dir", str(data_dir)]
    return " ".join(w if w == "..." else shlex.quote(w) for w in words)


def resolve_library(library: Path) -> Path:
    """The absolute library folder, or a NextvoxError saying why it cannot be used."""
    library = Path(library).expanduser()
    if not library.exists():
        raise NextvoxError(f"library folder not found: {library}")
    if not library.is_dir():
        raise NextvoxError(f"not a folder: {library}")
    if not os.access(library, os.R_OK | os.X_OK):
        raise NextvoxError(f"library folder is not readable: {library}")
    return library.resolve()


def content_hash(path: Path) -> str:
    """BLAKE2b digest (32 hex characters) of a file's bytes: the identity of its content.

    Raises
    ------
    OSError
        When the file cannot be read, or is not a regular file (a FIFO, a device): opened
        without blocking and refused, since reading one would wait forever.
    """
    digest = hashlib.blake2b(digest_size=16)
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with open(descriptor, "rb") as f:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(f"not a regular file: {path}")
        while chunk := f.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def catalogue_path(relative: str) -> str:
    """The text the catalogue keeps for a library-relative path as the file system gave it.

    File names are bytes; most are UTF-8, and stay as they are. A name that is not (an old
    Latin-1 rip: ``b"caf\\xe9.mp3"``) reaches Python with surrogate escapes that no UTF-8
    text can hold; its undecodable bytes are written ``\\xNN`` instead (``caf\\xe9.mp3``), which
    shows the name and is turned back into the file by :func:`track_file`.
    """
    return os.fsencode(relative).decode("utf-8", "backslashreplace")


def track_file(library: Path, path: str) -> Path:
    """The file of a catalogue ``path`` under ``library``: the inverse of :func:`catalogue_path`."""
    direct = Path(library) / path
    if "\\x" not in path or os.path.lexists(direct):
        return direct
    raw = re.sub(rb"\\x([0-9a-f]{2})", lambda match: bytes([int(match[1], 16)]), path.encode("utf-8"))
    return Path(library) / os.fsdecode(raw)


_ID3_FRAMES = {"artist": "TPE1", "title": "TIT2", "album": "TALB", "genre": "TCON"}


def read_tags(path: Path) -> dict[str, str | None]:
    """Artist, title, album and genre from the file's tags (None where absent or unreadable).

    mutagen's "easy" keys cover mp3, flac, ogg, opus and mp4; WAV and AIFF carry raw ID3
    frames, read by their frame names.
    """
    import mutagen

    tags: dict[str, str | None] = dict.fromkeys(_ID3_FRAMES)
    try:
        audio = mutagen.File(str(path), easy=True)
    except Exception:  # mutagen raises many private types on damaged headers; tags are optional
        return tags
    if audio is None or audio.tags is None:
        return tags
    for key, frame in _ID3_FRAMES.items():
        try:
            values = audio.tags.get(key) or audio.tags.get(frame)
        except (KeyError, ValueError):
            values = None
        values = getattr(values, "text", values)  # an ID3 frame holds its strings in .text
        if values:
            tags[key] = str(values[0]).strip() or None
    return tags


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
                self._migrate_schema_1()
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

    def _migrate_schema_1(self) -> None:
        """Schema 1 -> 2 in place: the sequences' ``encoding`` column (their blobs were float16)."""
        columns = [row[1] for row in self._db.execute("PRAGMA table_info(sequences)")]
        if columns and "encoding" not in columns:
            self._db.execute("ALTER TABLE sequences ADD COLUMN encoding TEXT NOT NULL DEFAULT 'float16'")

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
        (its vector index is then never trusted) and its sequences are float16.
        """
        columns = [row[1] for row in self._db.execute("PRAGMA table_info(sequences)")]
        self._encoding_column = "encoding" if "encoding" in columns or not columns else "'float16'"
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
            self._db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [("schema_version", str(SCHEMA_VERSION)), ("catalogue_id", rows.get("catalogue_id") or uuid.uuid4().hex)],
            )
        self.catalogue_id = self._meta("catalogue_id")

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

    def vectors_generation(self, name: str) -> int:
        """How many times a vector of ``name`` was added, replaced or removed (0 before the first)."""
        value = self._meta(f"generation:{name}")
        return int(value) if value is not None else 0

    def has_vectors(self, name: str) -> bool:
        return self._db.execute("SELECT 1 FROM vectors WHERE name = ? LIMIT 1", (name,)).fetchone() is not None

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
            "SELECT content_hash, vector, model_version FROM vectors WHERE name = ? ORDER BY content_hash", (name,)
        ).fetchall()
        if not rows:
            return [], np.zeros((0, 0), dtype=np.float32), []
        matrix = np.stack([np.frombuffer(blob, dtype=np.float32) for _, blob, _ in rows])
        return [h for h, _, _ in rows], matrix, [v for _, _, v in rows]

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
            rows = self._db.execute(f"SELECT content_hash, vector FROM vectors WHERE name = ? AND content_hash IN ({','.join('?' * len(batch))})",
                                    [name, *batch]).fetchall()  # fmt: skip
            found.update((h, np.frombuffer(blob, dtype=np.float32)) for h, blob in rows)
        return found

    def vectors_of(self, content_hash: str) -> dict[str, np.ndarray]:
        rows = self._db.execute("SELECT name, vector FROM vectors WHERE content_hash = ?", (content_hash,)).fetchall()
        return {name: np.frombuffer(blob, dtype=np.float32).copy() for name, blob in rows}

    def sequences(self, name: str, content_hashes: Iterable[str]) -> dict[str, tuple[str, np.ndarray]]:
        """Stored sequences of one name: content hash -> (model version, (steps, channels) array); absent ones are left out.

        The array is float16 or int8 as stored (see ``encoding`` in the module's notes).
        """
        found = {}
        hashes = list(dict.fromkeys(content_hashes))
        for start in range(0, len(hashes), _SQL_BATCH):
            batch = hashes[start : start + _SQL_BATCH]
            rows = self._db.execute(
                f"SELECT content_hash, model_version, n_channels, sequence, {self._encoding_column} FROM sequences"
                f" WHERE name = ? AND content_hash IN ({','.join('?' * len(batch))})", [name, *batch]).fetchall()
            for digest, version, channels, blob, encoding in rows:
                found[digest] = (version, decode_sequence(blob, encoding=encoding, n_channels=channels))
        return found

    # ---- writing -------------------------------------------------------------------------

    def store_analysis_settings(self, settings: dict) -> None:
        """Remember what the library is analysed with (a JSON-ready dict), replacing what was stored."""
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('analysis_settings', ?)", (json.dumps(settings, sort_keys=True),))

    def record_analysis(
        self,
        content_hash: str,
        *,
        analysis_version: str,
        duration_s: float,
        excerpt_start_s: float,
        excerpt_s: float,
        vectors: dict[str, tuple[str, np.ndarray]],
        sequences: dict[str, tuple[str, np.ndarray]] | None = None,
    ) -> None:
        """Store an analysis and mark every track with this content analysed, atomically.

        ``vectors`` maps a name to (model version, vector of shape (D,)); ``sequences`` a name
        to (model version, sequence of shape (steps, channels)).
        """
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO analyses VALUES (?, ?, ?, ?, ?, ?)",
                (content_hash, analysis_version, duration_s, excerpt_start_s, excerpt_s, time.time()),
            )
            db.execute("DELETE FROM vectors WHERE content_hash = ?", (content_hash,))
            db.executemany(
                "INSERT INTO vectors VALUES (?, ?, ?, ?)",
                [(content_hash, name, version, np.asarray(v, dtype=np.float32).tobytes()) for name, (version, v) in vectors.items()],
            )
            db.execute("DELETE FROM sequences WHERE content_hash = ?", (content_hash,))
            db.executemany(
                "INSERT INTO sequences (content_hash, name, model_version, n_channels, sequence, encoding) VALUES (?, ?, ?, ?, ?, ?)",
                [(content_hash, name, version, int(np.shape(x)[1]), encode_rows_int8(x).tobytes(), "int8-rows")
                 for name, (version, x) in (sequences or {}).items()],
            )  # fmt: skip
            db.execute("UPDATE tracks SET status = 'analyzed', error = NULL WHERE content_hash = ?", (content_hash,))

    def store_vectors(self, name: str, vectors: dict[str, tuple[str, np.ndarray]]) -> None:
        """Add or replace one named vector of analysed contents, atomically.

        For stages that run on stored vectors after the analysis (the gender head):
        ``vectors`` maps a content hash to (model version, vector of shape (D,)). Contents
        without an analysis are skipped (a vector always belongs to an analysis).
        """
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO vectors SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM analyses WHERE content_hash = ?)",
                [(h, name, version, np.asarray(v, dtype=np.float32).tobytes(), h) for h, (version, v) in vectors.items()],
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

    def mark_pending(self, content_hashes: Iterable[str]) -> None:
        with self.transaction() as db:
            db.executemany("UPDATE tracks SET status = 'pending', error = NULL WHERE content_hash = ?", [(h,) for h in content_hashes])


_SQL_BATCH = 500  # host parameters per IN (...) list: well under SQLite's limit


def encode_rows_int8(sequence: np.ndarray) -> np.ndarray:
    """Each row (step) scaled so that its largest magnitude is 127, rounded: (steps, channels) int8.

    A quarter of float32, half of float16. Keeps each step's direction to within about 0.3 %
    (what the melody match compares: its steps are made unit before they are aligned),
    not its length.

    >>> encode_rows_int8(np.array([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0]])).tolist()
    [[64, -127, 32], [0, 0, 0]]
    """
    x = np.asarray(sequence, dtype=np.float32)
    peak = np.abs(x).max(axis=-1, keepdims=True)
    scaled = np.divide(127.0 * x, peak, out=np.zeros_like(x), where=peak > 0)
    return np.rint(scaled).astype(np.int8)


def decode_sequence(blob: bytes, *, encoding: str, n_channels: int) -> np.ndarray:
    """A stored sequence blob as a (steps, n_channels) array (float16 or int8, as stored)."""
    if encoding not in SEQUENCE_ENCODINGS:
        raise CatalogueError(f"a sequence in the catalogue has an unknown encoding {encoding!r}; upgrade nextvox")
    dtype = np.float16 if encoding == "float16" else np.int8
    return np.frombuffer(blob, dtype=dtype).reshape(-1, n_channels)


IGNORE_MARKER = ".nomedia"  # the media scanners' convention: a folder holding this file is skipped


def _walk_audio_files(root: Path) -> Iterator[Path]:
    """Files named like audio under ``root`` (by extension), skipping hidden files and folders
    and sub-folders that hold an ``IGNORE_MARKER`` file."""
    for folder, subfolders, files in os.walk(root, onerror=None, followlinks=False):
        subfolders[:] = sorted(
            d for d in subfolders if not d.startswith(".") and not (Path(folder) / d / IGNORE_MARKER).exists()
        )
        for name in sorted(files):
            if not name.startswith(".") and Path(name).suffix.lower() in AUDIO_EXTENSIONS:
                yield Path(folder) / name


def scan_library(
    catalogue: Catalogue,
    *,
    analysis_version: str,
    progress: Callable[[int, int], None] | None = None,
) -> ScanReport:
    """Bring the catalogue in line with the files under the library folder.

    New and changed files are hashed and tagged; a file whose content is already known
    (moved, renamed, copied) takes over the existing analysis; removed files leave, and an
    analysis no track refers to any more is dropped. One transaction: a crash mid-scan
    leaves the previous catalogue intact.
    """
    root = catalogue.library
    known = {t.path: t for t in catalogue.tracks()}
    on_disk: dict[str, os.stat_result] = {}
    for file in _walk_audio_files(root):
        try:
            info = file.stat()
        except OSError:
            continue  # vanished between listing and stat (or a broken link): it is not in the library
        # A FIFO, socket or device named like audio is no song, and reading one can block forever.
        if stat.S_ISREG(info.st_mode):
            on_disk[catalogue_path(file.relative_to(root).as_posix())] = info
    to_hash = [p for p, st in on_disk.items() if p not in known or (known[p].size_bytes, known[p].mtime_ns) != (st.st_size, st.st_mtime_ns)]
    removed = [p for p in known if p not in on_disk]
    removed_hashes = {known[p].content_hash for p in removed}

    rows = []
    new = changed = moved = 0
    for i, rel in enumerate(to_hash):
        path = track_file(root, rel)
        try:
            digest = content_hash(path)
        except OSError as error:
            rows.append((rel, "", on_disk[rel].st_size, on_disk[rel].st_mtime_ns, None, None, None, None, "failed",
                         f"cannot read the file ({error.strerror})"))
            continue
        if rel in known:
            changed += 1
        elif digest in removed_hashes:
            moved += 1
        else:
            new += 1
        tags = read_tags(path)
        version = catalogue.analysis_version(digest)
        status = "analyzed" if version == analysis_version else "pending"
        rows.append((rel, digest, on_disk[rel].st_size, on_disk[rel].st_mtime_ns,
                     tags["artist"], tags["title"], tags["album"], tags["genre"], status, None))
        if progress:
            progress(i + 1, len(to_hash))

    with catalogue.transaction() as db:
        db.executemany("DELETE FROM tracks WHERE path = ?", [(p,) for p in removed])
        db.executemany("INSERT OR REPLACE INTO tracks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        db.execute("DELETE FROM vectors WHERE content_hash NOT IN (SELECT content_hash FROM tracks)")
        db.execute("DELETE FROM sequences WHERE content_hash NOT IN (SELECT content_hash FROM tracks)")
        db.execute("DELETE FROM analyses WHERE content_hash NOT IN (SELECT content_hash FROM tracks)")
    return ScanReport(
        total=len(on_disk), new=new, changed=changed, moved=moved, removed=len(removed) - moved,
        unchanged=len(on_disk) - len(to_hash),
    )


ANALYSIS_LOCK_FILE = "analyze.lock"


@contextmanager
def exclusive_analysis(data_dir: Path) -> Iterator[None]:
    """Hold the data directory's analysis lock while inside, or raise a NextvoxError naming its holder.

    Two analyses of one library at once would both do all the work. The lock is an ``flock``
    on ``DATA_DIR/analyze.lock`` (which holds the holder's process id): the kernel releases
    it when its process ends, however it ends, so a killed run never leaves it behind.
    """
    path = Path(data_dir) / ANALYSIS_LOCK_FILE
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "?"
            raise NextvoxError(
                f"another nextvox (process {holder}) is analysing this library into {data_dir}: wait for it to end "
                "(what it analyses is saved as it goes) or stop it, then run again"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(descriptor)
