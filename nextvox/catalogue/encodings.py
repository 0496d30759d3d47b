"""How the catalogue keeps vectors and sequences in blobs: their encodings.

Sequences (``sequences.encoding``): ``float16`` (schema 1), ``int8-rows`` (schema 2: each step
scaled so that its largest magnitude is 127) and ``int4-rows`` (schema 3: to 7, two values a
byte). A sequence is compared by the direction of its steps (the melody match makes them unit
first), so each step's scale is not kept.

Vectors (``vectors.encoding``): ``float32``, and ``int8-unit`` for vectors compared by their
direction alone (the recording fingerprint, the melody vector): scaled so that the largest
magnitude is 127, and read back as a unit float32 vector.
"""

from __future__ import annotations

import numpy as np

from nextvox.errors import CatalogueError

__all__ = [
    "SEQUENCE_ENCODINGS",
    "VECTOR_ENCODINGS",
    "encode_rows_int8",
    "encode_rows_int4",
    "decode_sequence",
    "encode_vector",
    "decode_vector",
]

SEQUENCE_ENCODINGS = ("float16", "int8-rows", "int4-rows")
VECTOR_ENCODINGS = ("float32", "int8-unit")


def _rows_scaled(sequence: np.ndarray, peak: int) -> np.ndarray:
    """Each row (last axis) scaled so that its largest magnitude is ``peak``, rounded; float32, shape kept."""
    x = np.asarray(sequence, dtype=np.float32)
    largest = np.abs(x).max(axis=-1, keepdims=True)
    return np.rint(np.divide(peak * x, largest, out=np.zeros_like(x), where=largest > 0))


def encode_rows_int8(sequence: np.ndarray) -> np.ndarray:
    """Each row (step) scaled so that its largest magnitude is 127, rounded: (steps, channels) int8.

    A quarter of float32, half of float16. Keeps each step's direction to within about 0.3 %
    (what the melody match compares: its steps are made unit before they are aligned),
    not its length.

    >>> encode_rows_int8(np.array([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0]])).tolist()
    [[64, -127, 32], [0, 0, 0]]
    """
    return _rows_scaled(sequence, 127).astype(np.int8)


def encode_rows_int4(sequence: np.ndarray) -> bytes:
    """Each row (step) scaled so that its largest magnitude is 7, rounded, two values a byte (the first in the low half).

    An eighth of float32: a (steps, channels) sequence takes steps * ceil(channels / 2) bytes
    (a row of an odd number of channels is padded with a zero). What it costs the melody match
    is measured in bench/results/catalogue_size.md.

    >>> blob = encode_rows_int4(np.array([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0]]))
    >>> decode_sequence(blob, encoding="int4-rows", n_channels=3).tolist()
    [[4, -7, 2], [0, 0, 0]]
    """
    values = _rows_scaled(sequence, 7).astype(np.int8)
    if values.shape[1] % 2:
        values = np.pad(values, ((0, 0), (0, 1)))
    nibbles = values.astype(np.uint8) & 0x0F
    return (nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)).astype(np.uint8).tobytes()


def decode_sequence(blob: bytes, *, encoding: str, n_channels: int) -> np.ndarray:
    """A stored sequence blob as a (steps, n_channels) array: float16, or int8 for the scaled encodings."""
    if encoding not in SEQUENCE_ENCODINGS:
        raise CatalogueError(f"a sequence in the catalogue has an unknown encoding {encoding!r}; upgrade nextvox")
    if encoding == "float16":
        return np.frombuffer(blob, dtype=np.float16).reshape(-1, n_channels)
    if encoding == "int8-rows":
        return np.frombuffer(blob, dtype=np.int8).reshape(-1, n_channels)
    packed = np.frombuffer(blob, dtype=np.int8).reshape(-1, (n_channels + 1) // 2)
    values = np.empty((*packed.shape, 2), dtype=np.int8)
    # Arithmetic shifts of int8 extend each half's sign (two's complement of four bits): a
    # third of the time of masking and correcting, which a melody query pays for every candidate.
    np.right_shift(np.left_shift(packed, 4), 4, out=values[..., 0])
    np.right_shift(packed, 4, out=values[..., 1])
    return values.reshape(len(packed), -1)[:, :n_channels]


def encode_vector(vector: np.ndarray, *, encoding: str) -> bytes:
    """A vector (D,) as a blob of ``encoding`` (one of VECTOR_ENCODINGS)."""
    if encoding == "int8-unit":
        return _rows_scaled(vector, 127).astype(np.int8).tobytes()
    return np.asarray(vector, dtype=np.float32).tobytes()


def decode_vector(blob: bytes, *, encoding: str) -> np.ndarray:
    """A stored vector blob as a (D,) float32 array; an ``int8-unit`` one at unit length (or all zero).

    >>> v = np.array([0.6, -0.8, 0.0], dtype=np.float32)
    >>> [round(float(x), 2) for x in decode_vector(encode_vector(v, encoding="int8-unit"), encoding="int8-unit")]
    [0.6, -0.8, 0.0]
    """
    if encoding == "float32":
        return np.frombuffer(blob, dtype=np.float32)
    if encoding != "int8-unit":
        raise CatalogueError(f"a vector in the catalogue has an unknown encoding {encoding!r}; upgrade nextvox")
    vector = np.frombuffer(blob, dtype=np.int8).astype(np.float32)
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else vector
