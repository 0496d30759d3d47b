"""Atomic file writes: a reader (or a run killed half-way) never sees a half-written file.

Every file nextvox writes whole (weights, checkpoints, caches, indexes, playlists, labels)
goes through :func:`atomic_path`: it is written under a temporary name beside its target
and renamed over it (``os.replace``, atomic on one file system) only once complete.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from nextvox.errors import NextvoxError

__all__ = ["atomic_path", "write_text_atomic", "write_file"]


def temporary_name(path: Path) -> Path:
    """The one temporary-name scheme: hidden, beside ``path``, unique to this process and thread,
    and ending in ``path``'s own suffix (writers such as ``np.save`` and ``soundfile`` go by it).

    >>> temporary_name(Path("/d/map.npz")).name.endswith(".part.npz")
    True
    """
    return path.with_name(f".{path.stem}.{os.getpid()}-{threading.get_ident()}.part{path.suffix}")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path to write to, that replaces ``path`` when the block ends without an error.

    The parent folder is created. On an error (a full disk, an interrupt) the temporary file
    is removed and ``path`` is left as it was; the error goes on.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     with atomic_path(Path(folder) / "a.txt") as part:
    ...         _ = part.write_text("done")
    ...     sorted(p.name for p in Path(folder).iterdir())
    ['a.txt']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = temporary_name(path)
    try:
        yield part
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> Path:
    """Write UTF-8 text to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as part:
        part.write_text(text, encoding="utf-8")
    return Path(path)


def write_file(path: Path, write: Callable[[Path], object]) -> Path:
    """A file the user asked for: ``write(temporary path)``, then it replaces ``path`` atomically.

    Raises
    ------
    NextvoxError
        One line naming ``path`` when the disk refuses (no folder, no permission, full).
    """
    try:
        with atomic_path(path) as part:
            write(part)
    except OSError as error:
        raise NextvoxError(f"cannot write {path}: {error.strerror or error}") from None
    return Path(path)
