"""Which library track a player's file path names: players keep paths relative to their own music folder."""

from __future__ import annotations

from collections.abc import Collection

__all__ = ["matching_library_path"]


def matching_library_path(player_path: str, library_paths: Collection[str]) -> str | None:
    """The library path (relative, '/' separators) naming the same file as ``player_path``; None when none does.

    Equal paths match; when the player's folder holds the library, its leading folders are
    dropped; when the library holds the player's folder, a library path ending in the whole
    of ``player_path`` at a folder boundary matches.

    >>> paths = {"ann/a.flac", "bob/b.mp3"}
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
    for path in library_paths:
        if path.endswith("/" + player_path):
            return path
    return None
