"""``POST /api/radio`` (an ordered playlist that follows a voice) and ``POST /api/playlists/export`` (M3U8 / XSPF)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from nextvox.api.convert import audio_url, filters_of, library_query, notes_for, recommendation_out
from nextvox.api.deps import RecommenderDep, ServiceDep
from nextvox.api.errors import ApiError, NotFound
from nextvox.api.schemas import PlaylistExportRequest, RadioOut, RadioRequest
from nextvox.playlists import PlaylistEntry, radio as make_radio, render_playlist, track_location

router = APIRouter(tags=["radio and playlists"])

PLAYLIST_MEDIA_TYPES = {"m3u8": "audio/x-mpegurl; charset=utf-8", "xspf": "application/xspf+xml; charset=utf-8"}


@router.post("/radio", response_model=RadioOut)
def radio(recommender: RecommenderDep, request: RadioRequest) -> RadioOut:
    """An ordered playlist following the seeds' voice, never the same artist twice in a row."""
    seeds = [library_query(recommender, path) for path in request.seeds]
    filters = filters_of(request.filters)
    songs = make_radio(recommender, seeds, n=request.n, follow=request.follow, filters=filters)
    return RadioOut(seeds=request.seeds, tracks=[recommendation_out(r) for r in songs], notes=notes_for(recommender, filters.gender, 0.0))


@router.post(
    "/playlists/export",
    response_class=Response,
    responses={200: {"content": {"audio/x-mpegurl": {}, "application/xspf+xml": {}}, "description": "the playlist file"}},
)
def export_playlist(service: ServiceDep, recommender: RecommenderDep, request: PlaylistExportRequest, http: Request) -> Response:
    """The given library tracks as an M3U8 or XSPF file, with file paths or this server's audio URLs."""
    entries = []
    for path in request.paths:
        track = recommender.track(path)
        if track is None:
            raise NotFound(f"no such track in the library: {path}")
        if request.locations == "prefix" and not request.prefix:
            raise ApiError("locations=prefix needs a prefix: the folder or URL where the library is")
        location = (str(http.base_url).rstrip("/") + audio_url(path)) if request.locations == "url" else track_location(
            track.path, library=service.library, relative_to=service.library if request.locations == "relative" else None,
            prefix=request.prefix if request.locations == "prefix" else None)
        entries.append(PlaylistEntry(location, track.title, track.artist, track.album, track.duration_s))
    text = render_playlist(entries, playlist_format=request.format, title=request.title)
    return Response(text, media_type=PLAYLIST_MEDIA_TYPES[request.format],
                    headers={"Content-Disposition": f'attachment; filename="nextvox.{request.format}"'})

