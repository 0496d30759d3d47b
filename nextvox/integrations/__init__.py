"""nextvox inside the players people already use: Subsonic/OpenSubsonic servers and MPD.

Each module is a thin layer over the library (``nextvox.recommend``, ``nextvox.playlists``,
``nextvox.voicepath``) and needs its extra: ``pip install 'nextvox[subsonic]'`` (httpx) for
``subsonic`` and ``subsonic_proxy``, ``pip install 'nextvox[mpd]'`` (python-mpd2) for ``mpd``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from nextvox.errors import NextvoxError

__all__ = ["require"]


def require(module: str, *, extra: str) -> ModuleType:
    """Import ``module``, or say in one line which extra of nextvox installs it.

    >>> require("json", extra="subsonic").__name__
    'json'
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        raise NextvoxError(f"this needs the Python package {module!r}: pip install 'nextvox[{extra}]'") from None
