"""The state one server holds: the library, its catalogue, and a recommender kept in step with it.

``nextvox analyze`` may run beside the server: when the catalogue changes (its counts or the
modification time of its files), the next request reloads the recommender, whose index
extends itself with the new vectors (:func:`nextvox.index.open_index`).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from nextvox.analysis import AnalysisSettings, library_settings
from nextvox.catalogue import Catalogue, Track, resolve_library
from nextvox.recommend import Recommender, search_text

__all__ = ["DEFAULT_MAX_UPLOAD_BYTES", "LibraryService", "TrackSearch"]

DEFAULT_MAX_UPLOAD_BYTES = 50 * 2**20  # a 5-minute WAV at 44.1 kHz stereo; compressed songs are far smaller
REFRESH_INTERVAL_S = 1.0  # how often a request may look whether the catalogue changed


class TrackSearch:
    """The library's tracks in a fixed order, with their search texts folded once: a page of
    the tracks holding some words costs one pass of substring tests (about 30 ms at 10^5 tracks).
    """

    def __init__(self, tracks: list[Track]):
        self.tracks = sorted(tracks, key=lambda t: t.path)
        self.texts = [search_text(t) for t in self.tracks]

    def find(self, words: str, *, status: str | None = None, offset: int = 0, limit: int = 100) -> tuple[int, list[Track]]:
        """(how many tracks match, the ``limit`` of them from ``offset``), in path order."""
        wanted = words.casefold().split()
        found = [t for t, text in zip(self.tracks, self.texts)
                 if (status is None or t.status == status) and all(w in text for w in wanted)]
        return len(found), found[offset : offset + limit]


class LibraryService:
    """One library served over HTTP.

    Parameters
    ----------
    library : Path
        The music folder; nothing outside it is ever served.
    data_dir : Path
        Its data directory (catalogue, index). Created empty when the library was never analysed.
    max_upload_bytes : int
        Largest uploaded query file.
    settings : AnalysisSettings, optional
        How an uploaded query is analysed; by default as the library's tracks were
        (:func:`nextvox.analysis.library_settings`, read again at each query, since an
        ``analyze`` beside the server may change them).
    """

    def __init__(self, library: Path, data_dir: Path, *, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
                 settings: AnalysisSettings | None = None):
        self.library = resolve_library(library)
        self.data_dir = Path(data_dir)
        self.max_upload_bytes = max_upload_bytes
        self._settings = settings
        self.catalogue = Catalogue(self.data_dir, library=self.library)
        self.catalogue_lock = threading.Lock()  # one SQLite connection, shared by the worker threads
        self._recommender: Recommender | None = None
        self._search: TrackSearch | None = None
        self._signature: tuple | None = None
        self._checked_at = float("-inf")

    def _catalogue_signature(self) -> tuple:
        stamps = []
        for suffix in ("", "-wal"):
            try:
                stamps.append(Path(f"{self.catalogue.path}{suffix}").stat().st_mtime_ns)
            except FileNotFoundError:
                stamps.append(None)
        return tuple(sorted(self.catalogue.status_counts().items())), tuple(stamps)

    @property
    def settings(self) -> AnalysisSettings:
        """How a query file is analysed: the settings given, else the library's own."""
        if self._settings is not None:
            return self._settings
        with self.catalogue_lock:
            return library_settings(self.catalogue)

    def recommender(self) -> Recommender:
        """The recommender over the catalogue as it is now (reloaded when the catalogue changed)."""
        with self.catalogue_lock:
            now = time.monotonic()
            if self._recommender is None or now - self._checked_at >= REFRESH_INTERVAL_S:
                self._checked_at = now
                signature = self._catalogue_signature()
                if signature != self._signature or self._recommender is None:
                    self._recommender = Recommender(self.catalogue, lock=self.catalogue_lock)
                    self._search = None
                    self._signature = signature
            return self._recommender

    def track_search(self) -> TrackSearch:
        """The search over the tracks of the current recommender (built on first use after a reload)."""
        recommender = self.recommender()
        with self.catalogue_lock:
            if self._search is None:
                self._search = TrackSearch(list(recommender.tracks_by_path.values()))
            return self._search

    def close(self) -> None:
        self.catalogue.close()
