"""The catalogue of a library: one module a job behind the names it always had.

``store`` (the SQLite file: tracks, analyses, vectors, sequences, meta), ``scan`` (the
library folder's files, their hashes and tags, the scan), ``encodings`` (how a vector or
a sequence is kept in a blob) and ``datadir`` (where a catalogue lives, the hints that name it, the
analysis lock). ``from nextvox.catalogue import Catalogue`` works as before.
"""

from nextvox.catalogue.datadir import (
    CATALOGUE_FILE,
    command_hint,
    default_data_dir,
    exclusive_analysis,
    library_data_dir,
    remember_data_dir,
    resolve_library,
)
from nextvox.catalogue.scan import ScanReport, catalogue_path, content_hash, read_tags, scan_library, track_file
from nextvox.catalogue.encodings import SEQUENCE_ENCODINGS, VECTOR_ENCODINGS, decode_sequence, decode_vector, encode_rows_int8
from nextvox.catalogue.store import SCHEMA_VERSION, Catalogue, StoredAnalysis, Track

__all__ = [
    "CATALOGUE_FILE",
    "SCHEMA_VERSION",
    "SEQUENCE_ENCODINGS",
    "VECTOR_ENCODINGS",
    "decode_vector",
    "encode_rows_int8",
    "decode_sequence",
    "Track",
    "StoredAnalysis",
    "ScanReport",
    "Catalogue",
    "default_data_dir",
    "command_hint",
    "library_data_dir",
    "remember_data_dir",
    "resolve_library",
    "content_hash",
    "catalogue_path",
    "track_file",
    "read_tags",
    "scan_library",
    "exclusive_analysis",
]
