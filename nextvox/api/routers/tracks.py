"""``GET /api/tracks`` (search and list) and ``GET /api/tracks/{path}`` (one track)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from nextvox.api.convert import track_out
from nextvox.api.deps import RecommenderDep, ServiceDep
from nextvox.api.errors import NotFound
from nextvox.api.schemas import TrackOut, TrackPage

router = APIRouter(tags=["tracks"])


@router.get("/tracks", response_model=TrackPage)
def list_tracks(
    service: ServiceDep,
    recommender: RecommenderDep,
    q: Annotated[str, Query(max_length=200, description="words to find in path, artist, title, album or genre")] = "",
    status: Annotated[Literal["analyzed", "failed", "pending"] | None, Query()] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> TrackPage:
    """A page of the library's tracks holding every word of ``q``, in path order (``total`` counts them all)."""
    total, page = service.find_tracks(q, status=status, offset=offset, limit=limit)
    return TrackPage(total=total, tracks=[track_out(t, gender=recommender.gender_of(t.content_hash)) for t in page])


@router.get("/tracks/{path:path}", response_model=TrackOut)
def one_track(recommender: RecommenderDep, path: Annotated[str, Path(max_length=4096)]) -> TrackOut:
    track = recommender.track(path)
    if track is None:
        raise NotFound(f"no such track in the library: {path}")
    return track_out(track, gender=recommender.gender_of(track.content_hash))
