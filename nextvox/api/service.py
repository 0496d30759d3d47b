"""The state one server holds: the library, its catalogue, and a recommender kept in step with it.

``nextvox analyze`` may run beside the server: when the catalogue changes (its counts or the
modification time of its files), the next request reloads the recommender, whose index
extends itself with the new vectors (:func:`nextvox.index.open_index`).
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nextvox.catalogue import Catalogue, Track, resolve_library
from nextvox.recommend import Recommender, search_text

if TYPE_CHECKING:  # analysis loads torch: only an uploaded query needs it, so the server starts without it
    from nextvox.analysis import AnalysisSettings

__all__ = ["DEFAULT_MAX_UPLOAD_BYTES", "LibraryService", "TrackSearch"]

DEFAULT_MAX_UPLOAD_BYTES = 50 * 2**20  # a 5-minute WAV at 44.1 kHz stereo; compressed songs are far smaller
REFRESH_INTERVAL_S = 1.0  # how often a request may look whether the catalogue changed


class TrackSearch:
    """The library's tracks in path order, searchable by words without a Python loop over them.

    The search texts (:func:`nextvox.recommend.search_text`) are joined once per catalogue
    change into one string, a line per track; a word's tracks are the lines its occurrences
    fall in (``re`` scans the string in C, ``numpy.searchsorted`` maps offsets to lines).
    Memory: about one byte per character of the texts.
    """

    def __init__(self, tracks: list[Track]):
        self.tracks = sorted(tracks, key=lambda t: t.path)
        texts = [search_text(t).replace("\n", " ") for t in self.tracks]
        self.text = "\n".join(texts)
        self.line_starts = np.cumsum([0] + [len(t) + 1 for t in texts[:-1]]) if texts else np.zeros(0, dtype=np.int64)
        self.statuses = np.array([t.status for t in self.tracks])

    def _rows_with(self, word: str) -> np.ndarray:
        """Rows (ascending) whose text holds ``word``."""
        hits = np.fromiter((m.start() for m in re.finditer(re.escape(word), self.text)), dtype=np.int64)
        return np.unique(np.searchsorted(self.line_starts, hits, side="right") - 1)

    def find(self, words: str, *, status: str | None = None, offset: int = 0, limit: int = 100) -> tuple[int, list[Track]]:
        """(how many tracks hold every word of ``words`` and have ``status``, the ``limit`` of them from ``offset``), in path order."""
        rows = np.arange(len(self.tracks)) if status is None else np.flatnonzero(self.statuses == status)
        for word in words.casefold().split():
            rows = np.intersect1d(rows, self._rows_with(word), assume_unique=True)
        return len(rows), [self.tracks[i] for i in rows[offset : offset + limit].tolist()]


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
        # One SQLite connection, shared by the worker threads; re-entrant, as the recommender reads
        # the catalogue under it while the service may already hold it.
        self.catalogue_lock = threading.RLock()
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
        # Not the status counts: counting the tracks took 50-70 ms at 10^5, and grows with the library.
        return self.catalogue.data_version(), tuple(stamps)

    @property
    def settings(self) -> AnalysisSettings:
        """How a query file is analysed: the settings given, else the library's own."""
        from nextvox.analysis import library_settings

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

    def find_tracks(self, words: str, *, status: str | None = None, offset: int = 0, limit: int = 100) -> tuple[int, list[Track]]:
        """(how many tracks hold every word of ``words`` and have ``status``, the ``limit`` of them from ``offset``), in path order.

        Without words the catalogue pages them itself (the page's first listing reads no other
        track); words are found by :class:`TrackSearch`, built on the first search.
        """
        if not words.split():
            with self.catalogue_lock:
                return self.catalogue.track_page(status=status, offset=offset, limit=limit)
        return self.track_search().find(words, status=status, offset=offset, limit=limit)

    def track_search(self) -> TrackSearch:
        """The search over the catalogue's tracks as the current recommender sees it (built on first use after a reload).

        Read from the catalogue, not through the recommender's ``tracks_by_path``: the search
        keeps its own list, and a second copy of every track would stay in the recommender.
        """
        self.recommender()  # reloads, and drops the search, when the catalogue changed
        with self.catalogue_lock:
            if self._search is None:
                self._search = TrackSearch(self.catalogue.tracks())
            return self._search

    def close(self) -> None:
        self.catalogue.close()
