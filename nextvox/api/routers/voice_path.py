"""``POST /api/path``: a voice path, an ordered playlist from one library track to another."""

from __future__ import annotations

from fastapi import APIRouter

from nextvox.api.convert import filters_of, library_query, notes_for, recommendation_out
from nextvox.api.deps import RecommenderDep
from nextvox.api.schemas import PathOut, PathRequest
from nextvox.voicepath import voice_path

router = APIRouter(tags=["radio and playlists"])


@router.post("/path", response_model=PathOut)
def path(recommender: RecommenderDep, request: PathRequest) -> PathOut:
    """Songs from ``start`` to ``end`` (both included), each voice close to the one before, moving steadily toward ``end``'s."""
    start, end = library_query(recommender, request.start), library_query(recommender, request.end)
    filters = filters_of(request.filters)
    songs = voice_path(recommender, start, end, n=request.n, follow=request.follow, filters=filters)
    notes = notes_for(recommender, filters.gender, 0.0)
    if len(songs) < request.n:
        notes.append(f"only {len(songs)} songs: the library (after the filters) has no more voices for this path")
    return PathOut(start=request.start, end=request.end, tracks=[recommendation_out(r) for r in songs], notes=notes)
