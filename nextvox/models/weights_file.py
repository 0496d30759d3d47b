"""Weights files on disk: read without running code, one load per process and file version,
and the hash that versions every vector.

A file is known by its resolved path, modification time and size, so a file replaced in
place (a user copying new weights over the shipped ones) is loaded and hashed again.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from nextvox.errors import NextvoxError

__all__ = ["file_key", "file_digest", "cached_loader", "load_tensors"]

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


def load_tensors(path: Path, *, allowed: Iterable[type] = (), what: str, advice: str) -> object:
    """The content of a PyTorch file, read with ``weights_only=True``: tensors, plain containers
    and numbers, and of other Python objects only the classes in ``allowed``. Nothing else is
    unpickled, so a file cannot run code on load.

    Parameters
    ----------
    path : Path
        A file written by ``torch.save``.
    allowed : iterable of type
        Exact classes the file may name besides tensors and plain values (a model's class stored
        by reference, ``fractions.Fraction`` ...); they may be called with the file's arguments.
    what : str
        What the file should be, for the message ("a Demucs checkpoint").
    advice : str
        What to do instead, for the message.

    Raises
    ------
    NextvoxError
        When the file needs any other object (the name torch gives is quoted), or cannot be read.
    """
    import torch

    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(Path(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        named = re.search(r"GLOBAL (\S+)", str(error))  # torch names the first object it refused
        raise NextvoxError(f"{path} is not {what} nextvox can read safely: it holds Python objects besides tensors "
                           "and plain values, which are never unpickled (they could run code)"
                           + (f"; it names {named.group(1)}" if named else "") + f"; {advice}") from None
    except (OSError, RuntimeError, EOFError, ValueError) as error:
        raise NextvoxError(f"cannot read {path} as {what} ({type(error).__name__}: {error}); {advice}") from None
