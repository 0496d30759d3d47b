"""The one exception family of nextvox.

The CLI turns a :class:`NextvoxError` into one line on stderr and exit status 1,
the HTTP API into a 4xx answer; anything else escaping is a bug.
"""

__all__ = ["NextvoxError", "AudioError", "FileChangedError", "MissingDependencyError", "CatalogueError"]


class NextvoxError(Exception):
    """A failure with a message meant for the user."""


class AudioError(NextvoxError):
    """A file could not be decoded into usable audio (corrupt, empty, not audio, silent)."""


class FileChangedError(NextvoxError):
    """A file's bytes are not (or no longer) those of the content being analysed: its result is discarded."""


class MissingDependencyError(NextvoxError):
    """A system package or resource that nextvox needs is missing; the message says what to install."""


class CatalogueError(NextvoxError):
    """The catalogue under --data-dir could not be read or written."""
