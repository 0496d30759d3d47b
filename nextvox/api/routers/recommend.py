"""Voice-alike tracks: ``GET /api/similar`` (one track), ``POST /api/recommend`` (a weighted
listening history) and ``POST /api/query`` (an uploaded recording, analysed on the fly)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from nextvox.api.convert import filters_of, library_query, notes_for, recommendation_out
from nextvox.api.deps import RecommenderDep, ServiceDep
from nextvox.api.errors import PayloadTooLarge, UnsupportedMediaType
from nextvox.api.schemas import MAX_K, Gender, RecommendationsOut, RecommendRequest, SimilarParams
from nextvox.audio import AUDIO_EXTENSIONS
from nextvox.recommend import DEFAULT_PER_ARTIST, DEFAULT_W_MELODY, DEFAULT_W_TIMBRE, Diversity, Filters, Query as VoiceQuery
from nextvox.recommend import Recommender, query_from_file

router = APIRouter(tags=["recommend"])

UPLOAD_MEDIA_TYPES = ("audio/", "video/mp4", "video/ogg", "application/octet-stream", "application/ogg")


def _answer(recommender: Recommender, queries: list[VoiceQuery], *, k: int, w_timbre: float, w_melody: float,
            filters: Filters, diversity: Diversity) -> RecommendationsOut:
    results = recommender.recommend(queries, k=k, w_timbre=w_timbre, w_melody=w_melody, filters=filters, diversity=diversity)
    return RecommendationsOut(query=[q.label for q in queries], results=[recommendation_out(r) for r in results],
                              notes=notes_for(recommender, filters.gender, w_melody))


@router.get("/similar", response_model=RecommendationsOut)
def similar(recommender: RecommenderDep, params: Annotated[SimilarParams, Query()]) -> RecommendationsOut:
    """Tracks sung by voices like the one of the library track ``path``."""
    return _answer(
        recommender, [library_query(recommender, params.path)], k=params.k, w_timbre=params.w_timbre, w_melody=params.w_melody,
        filters=Filters(exclude_query_artists=params.exclude_query_artists, genres=frozenset(params.genre), gender=params.gender),
        diversity=Diversity(mmr_lambda=params.mmr_lambda, per_artist=params.per_artist or None),
    )


@router.post("/recommend", response_model=RecommendationsOut)
def recommend_from_history(recommender: RecommenderDep, request: RecommendRequest) -> RecommendationsOut:
    """Recommendations for a listening history: the weighted centre of its voices."""
    queries = [library_query(recommender, item.path, weight=item.weight) for item in request.history]
    return _answer(
        recommender, queries, k=request.k, w_timbre=request.w_timbre, w_melody=request.w_melody,
        filters=filters_of(request.filters),
        diversity=Diversity(mmr_lambda=request.diversity.mmr_lambda, per_artist=request.diversity.per_artist),
    )


@router.post(
    "/query",
    response_model=RecommendationsOut,
    openapi_extra={"requestBody": {"required": True, "description": "the audio file's bytes",
                                   "content": {"audio/*": {"schema": {"type": "string", "format": "binary"}}}}},
    responses={413: {"description": "larger than the server's cap"}, 415: {"description": "not an audio type"}},
)
async def query_by_upload(
    request: Request,
    service: ServiceDep,
    recommender: RecommenderDep,
    filename: Annotated[str, Query(min_length=1, max_length=255, description="the file's name; its extension names the format")],
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
    w_timbre: Annotated[float, Query(ge=0.0, le=1e3)] = DEFAULT_W_TIMBRE,
    w_melody: Annotated[float, Query(ge=0.0, le=1e3)] = DEFAULT_W_MELODY,
    genre: Annotated[list[str], Query(max_length=100)] = [],  # noqa: B006 - FastAPI copies defaults
    gender: Annotated[Gender | None, Query()] = None,
    per_artist: Annotated[int, Query(ge=0, description="0: no cap")] = DEFAULT_PER_ARTIST,
    mmr_lambda: Annotated[float, Query(ge=0.0, le=1.0)] = 1.0,
) -> RecommendationsOut:
    """Voices like the one in an uploaded recording (the request body is the file itself)."""
    suffix = Path(filename).suffix.lower()
    if suffix not in AUDIO_EXTENSIONS:
        raise UnsupportedMediaType(f"not an audio file name: {filename} (use one of {', '.join(sorted(AUDIO_EXTENSIONS))})")
    media_type = request.headers.get("content-type", "application/octet-stream").split(";")[0].strip().lower()
    if not media_type.startswith(UPLOAD_MEDIA_TYPES):
        raise UnsupportedMediaType(f"the upload must be audio, not {media_type}")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > service.max_upload_bytes:
        raise PayloadTooLarge(f"the file is larger than the server's cap of {service.max_upload_bytes} bytes")
    with tempfile.TemporaryDirectory(prefix="upload-", dir=service.data_dir) as folder:
        path = Path(folder) / f"query{suffix}"
        received = 0
        with open(path, "wb") as out:
            async for chunk in request.stream():
                received += len(chunk)
                if received > service.max_upload_bytes:
                    raise PayloadTooLarge(f"the file is larger than the server's cap of {service.max_upload_bytes} bytes")
                out.write(chunk)
        if received == 0:
            raise UnsupportedMediaType("the upload is empty")
        query = await run_in_threadpool(query_from_file, path, label=os.path.basename(filename), settings=service.settings)
    return await run_in_threadpool(
        _answer, recommender, [query], k=k, w_timbre=w_timbre, w_melody=w_melody,
        filters=Filters(genres=frozenset(genre), gender=gender),
        diversity=Diversity(mmr_lambda=mmr_lambda, per_artist=per_artist or None),
    )
