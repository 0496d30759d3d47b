"""How varied the results are: maximal marginal relevance over the voices, and a cap per artist."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nextvox.recommend.filters import Candidate, fold

__all__ = ["DEFAULT_PER_ARTIST", "Diversity", "diversify"]

DEFAULT_PER_ARTIST = 3  # so that a top 10 is never ten songs by one singer


@dataclass(frozen=True)
class Diversity:
    """How varied the results are.

    Attributes
    ----------
    mmr_lambda : float
        Maximal marginal relevance, in [0, 1]: 1 ranks by score alone; lower values trade
        score for voices unlike those already chosen (``λ·score − (1 − λ)·max cos``).
    per_artist : int, optional
        At most this many results per artist (None: no cap).
    """

    mmr_lambda: float = 1.0
    per_artist: int | None = DEFAULT_PER_ARTIST


def diversify(
    candidates: list[Candidate], timbre: np.ndarray, *, k: int, diversity: Diversity,
    acceptable: Callable[[Candidate], bool],
) -> list[Candidate]:
    """Up to ``k`` candidates by maximal marginal relevance under a per-artist cap.

    ``acceptable`` is asked only of the candidates about to be chosen (it may be costly: the
    near-duplicate check reads a fingerprint); a refused one is dropped.

    Parameters
    ----------
    candidates : list of Candidate
        Best score first, each with its track.
    timbre : np.ndarray, shape (N, D)
        Unit timbre vectors, indexed by the candidates' rows.
    """
    per_artist: Counter[str] = Counter()
    cap = diversity.per_artist

    def capped(c: Candidate) -> bool:
        artist = fold(c.track.artist)
        return cap is not None and artist is not None and per_artist[artist] >= cap

    chosen: list[Candidate] = []
    remaining = list(candidates)
    lam = diversity.mmr_lambda
    while remaining and len(chosen) < k:
        remaining = [c for c in remaining if not capped(c)]
        if not remaining:
            break
        if lam == 1.0 or not chosen:
            best = 0
        else:
            vectors = timbre[[c.row for c in remaining]]  # (R, D)
            redundancy = (vectors @ timbre[[c.row for c in chosen]].T).max(axis=1)  # (R,)
            relevance = np.array([c.score for c in remaining])
            best = int(np.argmax(lam * relevance - (1 - lam) * redundancy))
        pick = remaining.pop(best)
        if not acceptable(pick):
            continue
        chosen.append(pick)
        if pick.track.artist:
            per_artist[fold(pick.track.artist)] += 1
    return chosen
