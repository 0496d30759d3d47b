"""Recommend the next songs: tracks whose voice (and, by choice, melody) is like the query's.

score(q, c) = w_timbre * cos(timbre_q, timbre_c) + w_melody * cos(melody_q, melody_c)

A query is one track of the library, several (a listening history: the weighted mean of
their unit vectors), or any audio file, which is analysed on the fly. The query's own
tracks, copies of them (same content) and near-duplicates (the same recording in another
format: the same coarse spectrogram over the excerpt) are never recommended. Filters drop
the query's artist, tracks already heard, other genres, the other gender; diversity is
maximal marginal relevance over the voices and a cap per artist. Every result says why.

One module a concern, behind the names this package has always had:

:mod:`.query`        what is asked: a library track, words of its tags, any audio file, a history;
:mod:`.filters`      the candidates and which of them may be recommended;
:mod:`.diversity`    maximal marginal relevance and the cap per artist;
:mod:`.explain`      each result's reason, tags and percentages;
:mod:`.recommender`  :class:`Recommender`, which finds, scores and orders the candidates.
"""

from nextvox.constants import GENDERS
from nextvox.gender import GENDER_VECTOR
from nextvox.recommend.diversity import DEFAULT_PER_ARTIST, Diversity
from nextvox.recommend.explain import Recommendation
from nextvox.recommend.filters import Filters
from nextvox.recommend.query import (
    Query, history_vector, query_from_file, resolve_query, search_text, track_by_words, track_label,
)
from nextvox.recommend.recommender import DEFAULT_W_MELODY, DEFAULT_W_TIMBRE, Recommender, recommend

__all__ = [
    "DEFAULT_W_TIMBRE", "DEFAULT_W_MELODY", "DEFAULT_PER_ARTIST", "GENDER_VECTOR", "GENDERS", "Query", "Filters",
    "Diversity", "Recommendation", "Recommender", "resolve_query", "track_by_words", "search_text", "track_label",
    "query_from_file", "recommend", "history_vector",
]  # fmt: skip
