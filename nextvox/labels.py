"""Where labels come from: labels CSV files (the one reader that ``evaluate``, ``train gender``,
``plot`` and ``train separator`` share) and a file's ``GENDER`` tag.

A labels file has a header row; column names are matched without regard to case or
surrounding spaces. ``path`` is required (relative to the library or absolute inside it);
``singer``, ``gender`` (``female``/``male`` or a synonym such as ``F``), ``melody``,
``genre``, ``vocal_path`` ... are read where a command needs them. DESIGN.md has the format.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from nextvox.constants import GENDERS
from nextvox.errors import NextvoxError

__all__ = [
    "Labels", "normalise_gender", "library_relative", "read_csv_rows", "read_track_labels", "read_labels", "read_gender_tag",
]  # fmt: skip

GENDER_SYNONYMS = {"female": "female", "f": "female", "woman": "female", "male": "male", "m": "male", "man": "male"}


def normalise_gender(raw: str) -> str | None:
    """``female`` or ``male`` from a label as people write it; None when it is neither.

    >>> normalise_gender(" F "), normalise_gender("Male"), normalise_gender("choir")
    ('female', 'male', None)
    """
    return GENDER_SYNONYMS.get(raw.strip().lower())


def library_relative(raw: str, *, library: Path, where: str) -> str:
    """A path of a labels file as the catalogue spells it: relative to ``library``, ``/``-separated.

    Raises
    ------
    NextvoxError
        A path outside the library, or one that climbs out of it with ``..``; ``where`` starts the message.
    """
    path = PurePosixPath(raw.replace("\\", "/"))
    if path.is_absolute():
        try:
            path = PurePosixPath(Path(path).resolve().relative_to(library).as_posix())
        except ValueError:
            raise NextvoxError(f"{where}: {raw} is outside the library {library}") from None
    if ".." in path.parts or str(path) in ("", "."):
        raise NextvoxError(f"{where}: {raw!r} is not a path inside the library")
    return str(path)


def read_csv_rows(labels_csv: Path) -> list[list[str]]:
    """The rows of a UTF-8 CSV file (a byte-order mark allowed), or a NextvoxError saying why not."""
    labels_csv = Path(labels_csv)
    if not labels_csv.is_file():
        raise NextvoxError(f"labels file not found: {labels_csv}")
    try:
        with open(labels_csv, newline="", encoding="utf-8-sig") as f:
            return list(csv.reader(f))
    except UnicodeDecodeError:
        raise NextvoxError(f"{labels_csv}: not a UTF-8 text file") from None
    except csv.Error as error:
        raise NextvoxError(f"{labels_csv}: not a readable CSV file ({error})") from None
    except OSError as error:
        raise NextvoxError(f"cannot read the labels file {labels_csv}: {error.strerror}") from None


def _labelled_rows(
    labels_csv: Path, *, library: Path, required: tuple[str, ...], non_empty: tuple[str, ...] = ()
) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """(header, [(line, fields)]) of a labels file, checked: a row's fields, by lower-cased column
    name, are stripped, empty ones left out (those of ``path`` and ``non_empty`` refused);
    ``path`` is made library-relative and ``gender`` normalised."""
    rows = read_csv_rows(labels_csv)
    if not rows:
        raise NextvoxError(f"{labels_csv}: empty file (a header row with {' and '.join(('path', *required))} columns is needed)")
    header = [name.strip().lower() for name in rows[0]]
    missing = [name for name in dict.fromkeys(("path", *required)) if name not in header]
    if missing:
        raise NextvoxError(f"{labels_csv}: no {' or '.join(repr(m) for m in missing)} column in the header (found: {', '.join(header) or 'nothing'})")
    labelled = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        where = f"{labels_csv}: line {line}"
        if len(row) != len(header):
            raise NextvoxError(f"{where}: {len(row)} fields, but the header has {len(header)}")
        fields = {name: cell.strip() for name, cell in zip(header, row) if cell.strip()}
        for name in ("path", *non_empty):
            if name not in fields:
                raise NextvoxError(f"{where}: empty {name}")
        if "gender" in fields:
            gender = normalise_gender(fields["gender"])
            if gender is None:
                raise NextvoxError(f"{where}: gender {fields['gender']!r} is not one of: {', '.join(GENDERS)} (or a synonym such as F, M; or empty)")
            fields["gender"] = gender
        path = library_relative(fields["path"], library=library, where=where)
        if path in seen:
            raise NextvoxError(f"{where}: {path} is listed twice (first on line {seen[path]})")
        seen[path] = line
        labelled.append((line, fields | {"path": path}))
    return header, labelled


def read_track_labels(labels_csv: Path, *, library: Path, required: tuple[str, ...] = ("path",)) -> dict[str, dict[str, str]]:
    """Every row of a labels CSV, by library-relative path, with lower-cased column names.

    Empty cells are left out of a row's dict; ``gender`` values are normalised
    (:func:`normalise_gender`).

    Parameters
    ----------
    labels_csv : Path
    library : Path
        Absolute library folder.
    required : tuple of str
        Columns the header must have (``path`` always; only ``path`` may not be empty).

    Raises
    ------
    NextvoxError
        Naming the file and line: missing or unreadable file, missing column, an empty
        path, a bad gender, a path outside the library or listed twice.
    """
    _, rows = _labelled_rows(Path(labels_csv), library=library, required=tuple(required))
    return {fields["path"]: fields for _, fields in rows}


@dataclass(frozen=True)
class Labels:
    """The rows of a labels CSV as ``evaluate`` reads them, in file order.

    Attributes
    ----------
    paths : list of str, length N
        Track paths relative to the library, ``/``-separated.
    line_numbers : list of int, length N
        Line of each row in the file (the header is line 1).
    singers, genders, melodies : np.ndarray of str, shape (N,)
        ``""`` where a gender or melody is not given.
    has_gender, has_melody : bool
        Whether the file has the column at all.
    """

    paths: list[str]
    line_numbers: list[int]
    singers: np.ndarray
    genders: np.ndarray
    melodies: np.ndarray
    has_gender: bool
    has_melody: bool


def read_labels(labels_csv: Path, *, library: Path) -> Labels:
    """Read and check a labels CSV for ``evaluate`` (``path`` and ``singer`` required).

    The rules are :func:`read_track_labels`'s; other columns than ``path``, ``singer``,
    ``gender`` and ``melody`` are ignored.

    Raises
    ------
    NextvoxError
        As :func:`read_track_labels`, and for a file with no labelled row.
    """
    labels_csv = Path(labels_csv)
    header, rows = _labelled_rows(labels_csv, library=library, required=("singer",), non_empty=("singer",))
    if not rows:
        raise NextvoxError(f"{labels_csv}: no labelled tracks (only a header)")
    return Labels(
        paths=[fields["path"] for _, fields in rows],
        line_numbers=[line for line, _ in rows],
        singers=np.array([fields["singer"] for _, fields in rows]),
        genders=np.array([fields.get("gender", "") for _, fields in rows]),
        melodies=np.array([fields.get("melody", "") for _, fields in rows]),
        has_gender="gender" in header,
        has_melody="melody" in header,
    )


_GENDER_TAG_KEYS = ("GENDER", "gender", "TXXX:GENDER", "TXXX:gender", "----:com.apple.iTunes:GENDER")


def read_gender_tag(path: Path) -> str | None:
    """The gender a file's tags give its voice, or None.

    Read from a ``GENDER`` field: a Vorbis comment (FLAC, Ogg, Opus), an ID3 ``TXXX``
    frame with description ``GENDER`` (MP3, WAV) or an MP4 freeform atom
    ``----:com.apple.iTunes:GENDER`` (M4A). Values as in :func:`normalise_gender`.
    """
    import mutagen

    try:
        audio = mutagen.File(str(path))
    except Exception:  # mutagen raises many private types on damaged headers; tags are optional
        return None
    tags = getattr(audio, "tags", None)
    if tags is None:
        return None
    for key in _GENDER_TAG_KEYS:
        try:
            values = tags.get(key) if hasattr(tags, "get") else None
        except (KeyError, ValueError, TypeError):
            values = None
        values = getattr(values, "text", values)  # an ID3 frame holds its strings in .text
        if values:
            value = values[0] if isinstance(values, list) else values
            value = value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else str(value)
            gender = normalise_gender(value)
            if gender is not None:
                return gender
    return None
