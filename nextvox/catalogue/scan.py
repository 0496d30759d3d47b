"""The library folder's side of the catalogue: its audio files, their content hashes, tags and
path text, and the scan that brings the catalogue in line with them."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from nextvox.audio import AUDIO_EXTENSIONS
from nextvox.catalogue.store import Catalogue

__all__ = ["ScanReport", "content_hash", "catalogue_path", "track_file", "read_tags", "audio_files", "scan_library"]

HASH_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class ScanReport:
    """What a scan found: counts of files per kind of change."""

    total: int
    new: int
    changed: int
    moved: int
    removed: int
    unchanged: int


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


IGNORE_MARKER = ".nomedia"  # the media scanners' convention: a folder holding this file is skipped


def audio_files(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """(path relative to ``root`` with ``/`` separators, its stat) of each regular file named like
    audio (by extension) under ``root``, skipping hidden files and folders and sub-folders that
    hold an ``IGNORE_MARKER`` file. Depth first in name order, a folder's files before its
    sub-folders (as ``os.walk`` lists them).

    ``os.scandir`` rather than ``os.walk`` and ``Path``: one listing a folder and one stat a file,
    no path objects, so that an unchanged library of 10^5 files is listed in about a second.
    Links to folders are not followed (a loop would never end); links to files are.
    """
    folders = [("", str(root))]
    while folders:
        prefix, folder = folders.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError:
            continue  # unreadable or vanished: what it holds is not in the library
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_folder = entry.is_dir()
            except OSError:
                continue
            if is_folder:
                if not entry.is_symlink() and not os.path.exists(os.path.join(entry.path, IGNORE_MARKER)):
                    subfolders.append((f"{prefix}{entry.name}/", entry.path))
            elif os.path.splitext(entry.name)[1].lower() in AUDIO_EXTENSIONS:
                try:
                    info = entry.stat()
                except OSError:
                    continue  # vanished between listing and stat (or a broken link): it is not in the library
                # A FIFO, socket or device named like audio is no song, and reading one can block forever.
                if stat.S_ISREG(info.st_mode):
                    yield f"{prefix}{entry.name}", info
        folders.extend(reversed(subfolders))  # depth first, in name order


def scan_library(
    catalogue: Catalogue,
    *,
    analysis_version: str,
    progress: Callable[[int, int], None] | None = None,
) -> ScanReport:
    """Bring the catalogue in line with the files under the library folder.

    Files are compared by size and modification time with what the catalogue holds (one
    query); only new and changed files are hashed and tagged. A file whose content is
    already known (moved, renamed, copied) takes over the existing analysis; removed files
    leave, and an analysis no track refers to any more is dropped. One transaction: a crash
    mid-scan leaves the previous catalogue intact.
    """
    root = catalogue.library
    known = catalogue.file_states()  # path -> (size, mtime, content hash)
    on_disk = {catalogue_path(rel): info for rel, info in audio_files(root)}
    to_hash = [p for p, st in on_disk.items() if known.get(p, (None, None))[:2] != (st.st_size, st.st_mtime_ns)]
    removed = [p for p in known if p not in on_disk]
    removed_hashes = {known[p][2] for p in removed}

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

    replaced_hashes = removed_hashes | {known[p][2] for p in to_hash if p in known}
    catalogue.update_tracks(removed=removed, rows=rows, maybe_orphaned=replaced_hashes)
    return ScanReport(
        total=len(on_disk), new=new, changed=changed, moved=moved, removed=len(removed) - moved,
        unchanged=len(on_disk) - len(to_hash),
    )
