"""Vocal separation: remove the accompaniment before listening to the voice.

One interface, :func:`separate`, over 16 kHz mono float32 excerpts. The method names are
part of the cache key of the spectrograms computed after this stage.
"""

from __future__ import annotations

import numpy as np

from nextvox.errors import NextvoxError

__all__ = ["SEPARATORS", "DEFAULT_SEPARATOR", "separate"]

SEPARATORS = ("none",)
DEFAULT_SEPARATOR = "none"


def separate(samples: np.ndarray, *, method: str) -> np.ndarray:
    """The vocal part of a mono excerpt.

    Parameters
    ----------
    samples : np.ndarray, shape (n,), float32
        Mono mixture at ``SAMPLE_RATE_HZ``.
    method : str
        One of ``SEPARATORS``; ``"none"`` returns the mixture unchanged.

    Returns
    -------
    np.ndarray, shape (n,), float32
    """
    if method not in SEPARATORS:
        raise NextvoxError(f"unknown separator {method!r}; choose one of: {', '.join(SEPARATORS)}")
    return samples
