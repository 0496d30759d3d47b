"""``GET /api/health``: is the server up, and what does it serve."""

from __future__ import annotations

from fastapi import APIRouter

from nextvox.api.deps import RecommenderDep, ServiceDep
from nextvox.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
def health(service: ServiceDep, recommender: RecommenderDep) -> Health:
    with service.catalogue_lock:
        counts = service.catalogue.status_counts()
    return Health(
        status="ok", library=str(service.library), counts=counts, indexed_vectors=len(recommender.timbre),
        index=recommender.timbre.kind, timbre_model_versions=sorted(recommender.timbre.model_versions),
        melody_model_versions=sorted(recommender.melody.model_versions) if recommender.melody is not None else [],
        has_melody=recommender.melody is not None, has_genders=recommender.has_genders,
    )
