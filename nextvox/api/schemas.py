"""Typed requests and answers of the HTTP API (pydantic models; they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from nextvox.recommend import DEFAULT_PER_ARTIST, DEFAULT_W_MELODY, DEFAULT_W_TIMBRE

__all__ = [
    "Gender",
    "Health",
    "TrackOut",
    "TrackPage",
    "FiltersIn",
    "DiversityIn",
    "HistoryItem",
    "SimilarParams",
    "RecommendRequest",
    "RecommendationOut",
    "RecommendationsOut",
    "RadioRequest",
    "RadioOut",
    "PathRequest",
    "PathOut",
    "PlaylistExportRequest",
    "MapPoint",
    "MapOut",
]

Gender = Literal["female", "male"]
MAX_K = 500
MAX_RADIO_SONGS = 1000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently ignored


class Health(BaseModel):
    status: Literal["ok"]
    library: str
    counts: dict[str, int] = Field(description="tracks by status: analyzed, failed, pending")
    indexed_vectors: int
    index: Literal["exact", "ivf"] = Field(description="exact search, or FAISS IndexIVFFlat above the measured size")
    timbre_model_versions: list[str]
    melody_model_versions: list[str] = Field(description="TCAE versions of the indexed melody vectors (empty: none)")
    has_melody: bool
    has_genders: bool


class TrackOut(BaseModel):
    path: str = Field(description="relative to the library, '/' separators")
    artist: str | None
    title: str | None
    album: str | None
    genre: str | None
    gender: Gender | None = Field(description="from the gender stage; null until it has run")
    status: Literal["analyzed", "failed", "pending"]
    error: str | None
    duration_s: float | None
    audio_url: str


class TrackPage(BaseModel):
    total: int = Field(description="tracks matching, before offset and limit")
    tracks: list[TrackOut]


class FiltersIn(_Strict):
    exclude_query_artists: bool = False
    exclude_artists: list[str] = Field(default_factory=list, max_length=1000)
    heard: list[str] = Field(default_factory=list, max_length=100_000, description="library paths already heard")
    genres: list[str] = Field(default_factory=list, max_length=100, description="keep only these; empty keeps all")
    gender: Gender | None = Field(None, description="applied where the gender stage has stored a gender")


class DiversityIn(_Strict):
    mmr_lambda: float = Field(1.0, ge=0.0, le=1.0, description="1 ranks by score alone")
    per_artist: int | None = Field(DEFAULT_PER_ARTIST, ge=1, description="null: no cap")


class HistoryItem(_Strict):
    path: str = Field(min_length=1, max_length=4096)
    weight: float = Field(1.0, gt=0.0, le=1e6)


class _Scoring(_Strict):
    k: int = Field(10, ge=1, le=MAX_K)
    w_timbre: float = Field(DEFAULT_W_TIMBRE, ge=0.0, le=1e3)
    w_melody: float = Field(DEFAULT_W_MELODY, ge=0.0, le=1e3)


class SimilarParams(_Scoring):
    """Query parameters of ``GET /api/similar``."""

    path: str = Field(min_length=1, max_length=4096)
    exclude_query_artists: bool = False
    genre: list[str] = Field(default_factory=list, max_length=100)
    gender: Gender | None = None
    per_artist: int | None = Field(DEFAULT_PER_ARTIST, ge=0, description="0: no cap")
    mmr_lambda: float = Field(1.0, ge=0.0, le=1.0)


class RecommendRequest(_Scoring):
    history: list[HistoryItem] = Field(min_length=1, max_length=1000, description="tracks listened to, weighted")
    filters: FiltersIn = Field(default_factory=FiltersIn)
    diversity: DiversityIn = Field(default_factory=DiversityIn)


class RecommendationOut(BaseModel):
    path: str
    score: float
    timbre_similarity: float
    melody_similarity: float | None = Field(description="null while no melody vectors exist")
    artist: str | None
    title: str | None
    album: str | None
    genre: str | None
    gender: Gender | None
    duration_s: float | None
    reason: str
    tags: list[str] = Field(description="short explanations: similar voice, same genre, ...")
    audio_url: str
    voice_percent: float | None = Field(None, ge=0, le=100, description="share of the library's voices less alike than this one, in %")
    melody_percent: float | None = Field(
        None, ge=0, le=100, description="how well the tunes line up note by note (100: the same tune), in %; null where the melody was not matched")


class RecommendationsOut(BaseModel):
    query: list[str]
    results: list[RecommendationOut]
    notes: list[str] = Field(description="what the answer could not take into account, and why")


class RadioRequest(_Strict):
    seeds: list[str] = Field(min_length=1, max_length=100, description="library paths the radio starts from")
    n: int = Field(50, ge=1, le=MAX_RADIO_SONGS)
    follow: float = Field(0.5, ge=0.0, le=1.0, description="0 stays near the seed; 1 lets each song lead")
    filters: FiltersIn = Field(default_factory=FiltersIn)


class RadioOut(BaseModel):
    seeds: list[str]
    tracks: list[RecommendationOut]
    notes: list[str]


class PathRequest(_Strict):
    start: str = Field(min_length=1, max_length=4096, description="library path of the first song")
    end: str = Field(min_length=1, max_length=4096, description="library path of the last song")
    n: int = Field(20, ge=2, le=MAX_RADIO_SONGS, description="songs in the path, start and end included")
    follow: float = Field(0.5, ge=0.0, le=1.0, description="0 keeps each song nearest its point on the way; 1 lets the song before decide")
    filters: FiltersIn = Field(default_factory=FiltersIn)


class PathOut(BaseModel):
    start: str
    end: str
    tracks: list[RecommendationOut] = Field(description="start first, end last; timbre_similarity is each song's cosine with the one before")
    notes: list[str]


class PlaylistExportRequest(_Strict):
    paths: list[str] = Field(min_length=1, max_length=10_000, description="library paths, in playlist order")
    format: Literal["m3u8", "xspf"] = "m3u8"
    title: str = Field("nextvox playlist", max_length=200)
    locations: Literal["file", "url", "relative", "prefix"] = Field(
        "file", description="absolute file paths; this server's audio URLs; paths relative to the library folder "
        "(keep the playlist there); or each library path after `prefix` (the library as another player sees it)")
    prefix: str | None = Field(None, min_length=1, max_length=2000,
                               description="with locations=prefix: a folder (/mnt/music) or URL (http://nas/music) the library is at")


class MapPoint(BaseModel):
    path: str
    x: float
    y: float
    artist: str | None
    genre: str | None
    gender: Gender | None
    title: str | None = None
    duration_s: float | None = None
    audio_url: str | None = None


class MapOut(BaseModel):
    projection: Literal["pca"] = Field(description="how the timbre vectors were brought to 2-D")
    explained_variance: list[float] = Field(description="share of the variance on each axis")
    n_total: int = Field(description="analysed tracks; points holds a seeded sample when there are more than limit")
    points: list[MapPoint]
