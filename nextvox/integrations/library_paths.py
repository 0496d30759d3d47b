"""Which library track a player's file path names: players keep paths relative to their own music folder."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from nextvox.recommend import Recommender

__all__ = ["LibraryPaths", "PathSet", "CataloguePaths", "matching_library_path"]


class LibraryPaths(Protocol):
    """The library's track paths (relative, '/' separators), as :func:`matching_library_path` asks about them."""

    def __contains__(self, path: object) -> bool: ...

    def ending_with(self, tail: str) -> str | None:
        """The first path (in path order) ending with ``tail``, or None."""


class PathSet:
    """Library paths held in memory (a player's whole song list is matched against them)."""

    def __init__(self, paths: Iterable[str]):
        self._paths = sorted(set(paths))
        self._set = frozenset(self._paths)

    def __contains__(self, path: object) -> bool:
        return path in self._set

    def ending_with(self, tail: str) -> str | None:
        return next((path for path in self._paths if path.endswith(tail)), None)


class CataloguePaths:
    """A library's paths looked up in its catalogue one at a time: no track is loaded to match a few files."""

    def __init__(self, recommender: Recommender):
        self.recommender = recommender

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self.recommender.track(path) is not None

    def ending_with(self, tail: str) -> str | None:
        return self.recommender.path_ending_with(tail)


def matching_library_path(player_path: str, library_paths: LibraryPaths) -> str | None:
    """The library path (relative, '/' separators) naming the same file as ``player_path``; None when none does.

    Equal paths match; when the player's folder holds the library, its leading folders are
    dropped; when the library holds the player's folder, the first library path (in path
    order) ending in the whole of ``player_path`` at a folder boundary matches.

    >>> paths = PathSet({"ann/a.flac", "bob/b.mp3"})
    >>> matching_library_path("ann/a.flac", paths), matching_library_path("Music/bob/b.mp3", paths)
    ('ann/a.flac', 'bob/b.mp3')
    >>> matching_library_path("/srv/music/bob/b.mp3", paths)  # an absolute path, as Navidrome's "real path"
    'bob/b.mp3'
    >>> matching_library_path("a.flac", paths), matching_library_path("nn/a.flac", paths)
    ('ann/a.flac', None)
    """
    player_path = player_path.replace("\\", "/").lstrip("/")
    if not player_path:
        return None
    if player_path in library_paths:
        return player_path
    parts = player_path.split("/")
    for start in range(1, len(parts)):
        if "/".join(parts[start:]) in library_paths:
            return "/".join(parts[start:])
    return library_paths.ending_with("/" + player_path)
