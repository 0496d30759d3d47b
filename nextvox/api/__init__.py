"""The HTTP API: FastAPI over the library functions (recommend, playlists, index), and the web page."""

from nextvox.api.app import create_app

__all__ = ["create_app"]
