"""``GET /api/map``: the timbre vectors in 2-D for the page's scatter plot."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query

from nextvox.api.convert import audio_url
from nextvox.api.deps import RecommenderDep
from nextvox.api.schemas import MapOut, MapPoint
from nextvox.index import pca_2d

router = APIRouter(tags=["map"])


@router.get("/map", response_model=MapOut)
def embedding_map(recommender: RecommenderDep, limit: Annotated[int, Query(ge=1, le=50_000)] = 5000) -> MapOut:
    """Every analysed track (or a seeded sample of ``limit``), projected by PCA of the timbre vectors."""
    index = recommender.timbre
    rows = np.array([i for i, key in enumerate(index.keys) if key in recommender.tracks_by_hash], dtype=np.int64)
    if rows.size > limit:
        rows = np.sort(np.random.default_rng(0).choice(rows, size=limit, replace=False))
    coordinates, share = pca_2d(index.matrix[rows]) if rows.size else (np.zeros((0, 2)), np.zeros(2))
    genders = recommender.genders_of(index.key_of(row) for row in rows.tolist())
    points = []
    for (x, y), row in zip(coordinates.tolist(), rows.tolist()):
        digest = index.keys[row]
        track = recommender.tracks_by_hash[digest][0]
        points.append(MapPoint(path=track.path, x=x, y=y, artist=track.artist, genre=track.genre,
                               gender=genders.get(digest), title=track.title, duration_s=track.duration_s,
                               audio_url=audio_url(track.path)))
    return MapOut(projection="pca", explained_variance=share.tolist(), n_total=len(recommender.tracks_by_hash), points=points)
