"""Weights files on disk: one load per process and file version, and the hash that versions every vector.

A file is known by its resolved path, modification time and size, so a file replaced in
place (a user copying new weights over the shipped ones) is loaded and hashed again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from nextvox.errors import NextvoxError

__all__ = ["file_key", "file_digest", "cached_loader"]

Model = TypeVar("Model")


def file_key(path: Path) -> tuple[str, int, int]:
    """(resolved path, mtime in ns, size in bytes) of an existing file."""
    stat = Path(path).stat()
    return str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size


@lru_cache(maxsize=16)
def _digest(key: tuple[str, int, int], digest_size: int) -> str:
    return hashlib.blake2b(Path(key[0]).read_bytes(), digest_size=digest_size).hexdigest()


def file_digest(path: Path, *, digest_size: int = 5) -> str:
    """``2 * digest_size`` hex digits of the file's BLAKE2b, computed once per file version (a stat per call)."""
    return _digest(file_key(path), digest_size)


def cached_loader(load: Callable[[Path], Model], *, what: str) -> Callable[[Path], Model]:
    """``load``, called once per process and file version; a missing file is a NextvoxError naming ``what``."""

    @lru_cache(maxsize=4)
    def by_key(key: tuple[str, int, int]) -> Model:
        return load(Path(key[0]))

    def cached(path: Path) -> Model:
        if not Path(path).is_file():
            raise NextvoxError(f"{what} not found: {path}")
        return by_key(file_key(path))

    return cached
