"""Where a library's catalogue lives (the data directory), how a message names it, and its analysis lock."""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nextvox.errors import NextvoxError

__all__ = [
    "CATALOGUE_FILE",
    "default_data_dir",
    "remember_data_dir",
    "library_data_dir",
    "command_hint",
    "resolve_library",
    "exclusive_analysis",
]

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
