"""``GET /api/audio/{path}``: a library track's bytes, with HTTP Range (206) for seeking.

Only catalogued tracks are served, and only when their real path (symbolic links resolved)
lies inside the library: ``..``, absolute paths, encoded dots and links pointing outside are
all refused.
"""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import FileResponse

from nextvox.api.deps import RecommenderDep, ServiceDep
from nextvox.api.errors import Forbidden, NotFound
from nextvox.catalogue import track_file

router = APIRouter(tags=["audio"])

MEDIA_TYPES = {
    ".mp3": "audio/mpeg", ".flac": "audio/flac", ".ogg": "audio/ogg", ".oga": "audio/ogg", ".opus": "audio/ogg",
    ".m4a": "audio/mp4", ".mp4": "audio/mp4", ".aac": "audio/aac", ".wav": "audio/wav", ".wma": "audio/x-ms-wma",
    ".aif": "audio/aiff", ".aiff": "audio/aiff",
}


def library_file(library: FilePath, relative: str) -> FilePath:
    """The file at ``relative`` under ``library``, refused unless its real path is inside the library."""
    candidate = track_file(library, relative).resolve()
    if not candidate.is_relative_to(library):
        raise Forbidden(f"not inside the library: {relative}")
    if not candidate.is_file():
        raise NotFound(f"the file of this track is gone: {relative}")
    return candidate


@router.get(
    "/audio/{path:path}",
    response_class=FileResponse,
    responses={206: {"description": "the requested byte range"}, 403: {}, 404: {}, 416: {}},
)
def audio(service: ServiceDep, recommender: RecommenderDep, path: Annotated[str, Path(max_length=4096)]) -> FileResponse:
    if recommender.track(path) is None:
        raise NotFound(f"no such track in the library: {path}")
    file = library_file(service.library, path)
    return FileResponse(file, media_type=MEDIA_TYPES.get(file.suffix.lower(), "application/octet-stream"))


# Players and download tools ask the size and type first. Out of the schema: it is GET's answer
# without the body, and one route with two methods would give two operations one id.
@router.head("/audio/{path:path}", include_in_schema=False)
def audio_head(service: ServiceDep, recommender: RecommenderDep, path: Annotated[str, Path(max_length=4096)]) -> FileResponse:
    return audio(service, recommender, path)
