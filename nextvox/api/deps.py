"""Dependencies of the routes, as ``Annotated`` aliases; tests replace them through ``app.dependency_overrides``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from nextvox.api.service import LibraryService
from nextvox.recommend import Recommender

__all__ = ["get_service", "get_recommender", "ServiceDep", "RecommenderDep"]


def get_service(request: Request) -> LibraryService:
    """The service that :func:`nextvox.api.create_app` made for this app."""
    return request.app.state.service


ServiceDep = Annotated[LibraryService, Depends(get_service)]


def get_recommender(service: ServiceDep) -> Recommender:
    """The recommender over the catalogue as it is now."""
    return service.recommender()


RecommenderDep = Annotated[Recommender, Depends(get_recommender)]
