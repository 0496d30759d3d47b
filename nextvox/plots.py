"""Maps of the embeddings: the tracks of a library in two dimensions, coloured by gender, singer or genre.

The seed's pictures (the timbre embedding by gender; four singers of different genres),
as a PNG for reports and as a self-contained HTML page where hovering a point names its
track and clicking it plays the song. :func:`embedding_map` computes the map once (2-D
coordinates and each point's track and group); :func:`map_png` and :func:`map_html` draw
it, so the CLI, the README's images and the web page show the same map.

UMAP and t-SNE keep neighbourhoods, not distances: their axes have no units and only
"which points lie together" means something. PCA axes are directions of largest variance.
"""

from __future__ import annotations

import html
import json
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
from threadpoolctl import threadpool_limits

from nextvox.catalogue import Catalogue, command_hint
from nextvox.constants import GENDERS
from nextvox.errors import NextvoxError
from nextvox.files import write_file
from nextvox.gender import library_genders
from nextvox.index import normalise_rows, pca_2d

__all__ = [
    "METHODS",
    "GROUPINGS",
    "EMBEDDINGS",
    "DEFAULT_MAX_SINGERS",
    "EmbeddingMap",
    "project_2d",
    "choose_singers",
    "embedding_map",
    "group_colours",
    "map_png",
    "map_html",
    "map_format",
    "write_map",
]

METHODS = ("umap", "tsne", "pca")
GROUPINGS = ("gender", "singer", "genre")
EMBEDDINGS = ("timbre", "melody")
DEFAULT_MAX_SINGERS = 8  # more colours than this cannot be told apart on a scatter plot
MAX_GENRES = 10  # the largest genres keep their colour; the rest are drawn as "other"
UNKNOWN = "unknown"
OTHER = "other"
METHOD_NAMES = {"umap": "UMAP", "tsne": "t-SNE", "pca": "PCA"}
FIGURE_SIZE_IN = (8.0, 6.0)
FIGURE_DPI = 100  # 800 x 600 pixels
_GENDER_COLOURS = {GENDERS[0]: "#d6336c", GENDERS[1]: "#1c7ed6", UNKNOWN: "#adb5bd"}
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
_GREY = "#adb5bd"


@dataclass(frozen=True)
class EmbeddingMap:
    """Tracks placed in two dimensions, each with its group (the colour) and what to show on hover.

    Attributes
    ----------
    xy : np.ndarray, shape (N, 2), float64
        Coordinates (no units for UMAP and t-SNE).
    paths : tuple of str, length N
        Track paths relative to the library.
    artists, titles : tuple of (str or None), length N
    groups : tuple of str, length N
        The point's group under ``by`` (``unknown`` where nothing says).
    by : str
        ``gender``, ``singer`` or ``genre``.
    embedding, method, model_version : str
        Which vectors, which projection, and the model that made the vectors.
    note : str or None
        What was left out (e.g. "8 of 50 singers"), shown under the title.
    """

    xy: np.ndarray
    paths: tuple[str, ...]
    artists: tuple[str | None, ...]
    titles: tuple[str | None, ...]
    groups: tuple[str, ...]
    by: str
    embedding: str
    method: str
    model_version: str
    note: str | None = None

    @property
    def group_names(self) -> list[str]:
        """Groups in legend order: genders in their fixed order, others largest first, unknown/other last."""
        counts = Counter(self.groups)
        last = [g for g in (OTHER, UNKNOWN) if g in counts]
        if self.by == "gender":
            return [g for g in GENDERS if g in counts] + last
        return sorted((g for g in counts if g not in last), key=lambda g: (-counts[g], g)) + last

    @property
    def title(self) -> str:
        return f"{self.embedding.capitalize()} embedding by {self.by} ({METHOD_NAMES[self.method]}, {len(self.paths)} tracks)"

    @property
    def axis_note(self) -> str:
        if self.method == "pca":
            return "PCA axes: the two directions of largest variance of the vectors."
        return f"{METHOD_NAMES[self.method]} axes have no units: only which points lie together means something."

    def to_dict(self) -> dict:
        """JSON-ready: what a web page needs to draw the same map."""
        return {
            "title": self.title, "note": self.note, "axis_note": self.axis_note, "by": self.by,
            "embedding": self.embedding, "method": self.method, "model_version": self.model_version,
            "groups": self.group_names,
            "points": [
                {"x": float(x), "y": float(y), "path": p, "artist": a, "title": t, "group": g}
                for (x, y), p, a, t, g in zip(self.xy.tolist(), self.paths, self.artists, self.titles, self.groups)
            ],
        }  # fmt: skip


def project_2d(vectors: np.ndarray, *, method: str, seed: int = 0) -> np.ndarray:
    """Place vectors in two dimensions, keeping neighbours by cosine similarity together.

    Rows are scaled to unit length first (the recommender compares them by cosine).

    Parameters
    ----------
    vectors : np.ndarray, shape (N, D), N >= 3
    method : str
        ``umap`` (umap-learn, cosine metric), ``tsne`` (scikit-learn) or ``pca``.
    seed : int
        The same seed gives the same map.

    Returns
    -------
    np.ndarray, shape (N, 2), float64

    Raises
    ------
    NextvoxError
        With fewer than 3 vectors or an unknown method.

    >>> project_2d(np.eye(4)[:, :3] + 0.1, method="pca").shape
    (4, 2)
    """
    if method not in METHODS:
        raise NextvoxError(f"unknown projection {method!r}: choose one of {', '.join(METHODS)}")
    vectors = np.nan_to_num(np.asarray(vectors, dtype=np.float64))
    if vectors.ndim != 2 or len(vectors) < 3:
        raise NextvoxError(f"a map needs at least 3 analysed tracks; have {len(vectors)}")
    unit = normalise_rows(vectors)
    # One BLAS/OpenMP thread: these maps are small, and on a busy machine a spinning thread
    # pool made a t-SNE of 8 points take 9 s instead of 0.05 s.
    with threadpool_limits(1):
        return _project(unit, method=method, seed=seed)


def _project(unit: np.ndarray, *, method: str, seed: int) -> np.ndarray:
    """:func:`project_2d` of unit rows, shape (N, D) -> (N, 2)."""
    n = len(unit)
    if method == "pca":  # the page's projection too (GET /api/map): one PCA for both maps
        xy, _ = pca_2d(unit)
    elif method == "tsne":
        from sklearn.manifold import TSNE

        # Perplexity must stay below the number of points; 30 is t-SNE's usual value.
        xy = TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed).fit_transform(unit)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # umap-learn warns that a fixed seed disables parallelism: wanted here
            import umap

            # 15 neighbours is UMAP's default; a tiny library has fewer points than that.
            reducer = umap.UMAP(n_components=2, n_neighbors=max(2, min(15, n - 1)), metric="cosine", random_state=seed,
                                init="spectral" if n > 10 else "random")  # fmt: skip
            xy = reducer.fit_transform(unit)
    return np.asarray(xy, dtype=np.float64)


def choose_singers(singers: list[str], genres: list[str | None], *, limit: int) -> list[str]:
    """Up to ``limit`` singers for a readable map: of different genres first, then the most tracks.

    The seed's picture shows four singers of different genres. A singer's genre is the one
    most of their tracks have; singers with the most tracks come first.

    Parameters
    ----------
    singers : list of str, length N
        Singer of each track.
    genres : list of (str or None), length N
        Genre of each track.
    limit : int

    >>> choose_singers(["a", "a", "b", "b", "b", "c"], ["pop", "pop", "pop", "pop", "pop", "jazz"], limit=2)
    ['b', 'c']
    """
    counts = Counter(singers)
    by_singer: dict[str, Counter] = {}
    for singer, genre in zip(singers, genres):
        by_singer.setdefault(singer, Counter())[genre] += 1
    genre_of = {singer: genre_counts.most_common(1)[0][0] for singer, genre_counts in by_singer.items()}  # their usual genre
    ranked = sorted(counts, key=lambda s: (-counts[s], s))
    chosen: list[str] = []
    seen_genres: set[str | None] = set()
    for singer in ranked:  # one per genre, largest first
        if len(chosen) < limit and genre_of[singer] not in seen_genres:
            chosen.append(singer)
            seen_genres.add(genre_of[singer])
    for singer in ranked:  # then fill with the largest of the rest
        if len(chosen) < limit and singer not in chosen:
            chosen.append(singer)
    return chosen


def embedding_map(
    catalogue: Catalogue,
    *,
    by: str,
    embedding: str = "timbre",
    method: str = "umap",
    labels: dict[str, dict[str, str]] | None = None,
    max_singers: int = DEFAULT_MAX_SINGERS,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> EmbeddingMap:
    """The analysed tracks of a catalogue on a 2-D map, each with its group under ``by``.

    Groups come from ``labels`` when given (then only the labelled tracks are drawn), else
    from the catalogue: the predicted gender (:func:`nextvox.gender.library_genders`), the
    artist tag for the singer, the genre tag.

    Parameters
    ----------
    catalogue : Catalogue
    by : str
        ``gender``, ``singer`` or ``genre``.
    embedding : str
        ``timbre`` or ``melody``: the catalogue vectors to place.
    method : str
        ``umap``, ``tsne`` or ``pca`` (see :func:`project_2d`).
    labels : dict, optional
        Path -> columns, as :func:`nextvox.labels.read_track_labels` returns.
    max_singers : int
        With ``by="singer"``, at most this many singers (see :func:`choose_singers`).
    seed : int
    progress : callable, optional
        Called with a line saying each step as it starts (the projection of 10^4 tracks by
        UMAP takes a minute or more).

    Raises
    ------
    NextvoxError
        For an unknown grouping or embedding, no stored vectors of that name, or fewer than 3 tracks.
    """
    if by not in GROUPINGS:
        raise NextvoxError(f"cannot group a map by {by!r}: choose one of {', '.join(GROUPINGS)}")
    if embedding not in EMBEDDINGS:
        raise NextvoxError(f"unknown embedding {embedding!r}: choose one of {', '.join(EMBEDDINGS)}")
    hashes, matrix, versions = catalogue.vectors(embedding)
    if not hashes:
        raise NextvoxError(f"no {embedding} vectors in the catalogue: run `{command_hint('analyze', catalogue.library, catalogue.data_dir)}` first")
    row_of = {h: i for i, h in enumerate(hashes)}
    tracks = [t for t in catalogue.tracks(status="analyzed") if t.content_hash in row_of]
    if labels is not None:
        tracks = [t for t in tracks if t.path in labels]
    predicted = library_genders(catalogue) if by == "gender" and labels is None else {}

    def group_of(track) -> str:
        if labels is not None:
            return labels[track.path].get(by) or UNKNOWN
        value = {"gender": predicted.get(track.content_hash, (None,))[0], "singer": track.artist, "genre": track.genre}[by]
        return value or UNKNOWN

    groups = [group_of(t) for t in tracks]
    note = None
    if by == "singer":
        genres = [(labels[t.path].get("genre") if labels is not None else t.genre) for t in tracks]
        known = [(g, genre) for g, genre in zip(groups, genres) if g != UNKNOWN]
        chosen = choose_singers([g for g, _ in known], [genre for _, genre in known], limit=max_singers)
        n_singers = len({g for g, _ in known})
        keep = [g in chosen for g in groups]
        tracks, groups = [t for t, k in zip(tracks, keep) if k], [g for g, k in zip(groups, keep) if k]
        if n_singers > len(chosen):
            note = f"{len(chosen)} of {n_singers} singers"
    elif by == "genre":
        largest = {g for g, _ in Counter(g for g in groups if g != UNKNOWN).most_common(MAX_GENRES)}
        if len(set(groups) - {UNKNOWN}) > len(largest):
            note = f"the {MAX_GENRES} largest genres; the rest drawn as {OTHER!r}"
            groups = [g if g in largest or g == UNKNOWN else OTHER for g in groups]
    if by == "gender" and labels is None:
        note = "genders predicted by the gender head" if predicted else "no predicted genders: no gender head has run"

    rows = np.array([row_of[t.content_hash] for t in tracks], dtype=np.int64)
    if progress is not None:
        progress(f"projecting {len(rows)} {embedding} vectors to 2-D with {METHOD_NAMES.get(method, method)}"
                 + (" (about a minute per 10,000 tracks)" if method != "pca" else ""))
    xy = project_2d(matrix[rows] if rows.size else np.zeros((0, 1)), method=method, seed=seed)
    model_versions = sorted({versions[i] for i in rows.tolist()})
    return EmbeddingMap(
        xy=xy, paths=tuple(t.path for t in tracks), artists=tuple(t.artist for t in tracks),
        titles=tuple(t.title for t in tracks), groups=tuple(groups), by=by, embedding=embedding, method=method,
        model_version=", ".join(model_versions), note=note,
    )  # fmt: skip


def group_colours(emap: EmbeddingMap) -> dict[str, str]:
    """A colour (``#rrggbb``) per group: fixed ones for the genders, a palette otherwise, grey for unknown/other."""
    if emap.by == "gender":
        return {g: _GENDER_COLOURS[g] for g in emap.group_names}
    named = [g for g in emap.group_names if g not in (UNKNOWN, OTHER)]
    colours = {g: _PALETTE[i % len(_PALETTE)] for i, g in enumerate(named)}
    return colours | {g: _GREY for g in emap.group_names if g in (UNKNOWN, OTHER)}


def map_png(emap: EmbeddingMap, out: Path) -> Path:
    """Draw the map as an 800 x 600 PNG: a legend, a title and a note on what the axes mean."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGURE_SIZE_IN, dpi=FIGURE_DPI)
    axes = figure.add_subplot()
    colours = group_colours(emap)
    groups = np.array(emap.groups)
    for group in emap.group_names:
        mine = groups == group
        axes.scatter(emap.xy[mine, 0], emap.xy[mine, 1], s=40, c=colours[group], alpha=0.8, linewidths=0.4,
                     edgecolors="white", label=f"{group} ({int(mine.sum())})")  # fmt: skip
    axes.set_title(emap.title + (f"\n{emap.note}" if emap.note else ""), fontsize=11)
    name = METHOD_NAMES[emap.method]
    axes.set_xlabel(f"{name} 1" + ("" if emap.method == "pca" else " (no units)"))
    axes.set_ylabel(f"{name} 2" + ("" if emap.method == "pca" else " (no units)"))
    if emap.method != "pca":  # positions along these axes mean nothing: no tick labels
        axes.set_xticks([])
        axes.set_yticks([])
    axes.legend(title=emap.by, loc="best", fontsize=8, title_fontsize=9, framealpha=0.85)
    figure.text(0.01, 0.01, f"{emap.axis_note}  Vectors: {emap.model_version}", fontsize=7, color="#555555")
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    return write_file(Path(out), lambda part: figure.savefig(part, format="png"))


_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1em; color: #222; }}
#map {{ border: 1px solid #ddd; background: #fff; max-width: 100%; height: auto; }}
.point {{ cursor: pointer; stroke: #fff; stroke-width: 0.6; }}
.point:hover, .point.playing {{ stroke: #000; stroke-width: 2; }}
#tip {{ position: absolute; pointer-events: none; background: #fffff0; border: 1px solid #999; padding: 4px 6px; display: none; font-size: 12px; }}
#legend span {{ display: inline-block; margin-right: 1em; }}
#legend i {{ display: inline-block; width: 10px; height: 10px; border-radius: 5px; margin-right: 4px; }}
.note {{ color: #666; font-size: 12px; }}
</style></head>
<body>
<h1 style="font-size: 18px">{title}</h1>
<p class="note" id="notes"></p>
<div id="legend"></div>
<svg id="map" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{title}"></svg>
<div id="tip"></div>
<p>Now playing: <span id="now">nothing — click a point</span></p>
<audio id="player" controls preload="none"></audio>
<script type="application/json" id="map-data">{data}</script>
<script>
"use strict";
(function () {{
  const data = JSON.parse(document.getElementById("map-data").textContent);
  const svg = document.getElementById("map"), tip = document.getElementById("tip");
  const player = document.getElementById("player"), now = document.getElementById("now");
  const W = {width}, H = {height}, PAD = 20, NS = "http://www.w3.org/2000/svg";
  document.getElementById("notes").textContent = [data.note, data.axis_note, "Vectors: " + data.model_version].filter(Boolean).join(" · ");
  const legend = document.getElementById("legend");
  for (const g of data.groups) {{
    const n = data.points.filter(p => p.group === g).length;
    const item = document.createElement("span"), dot = document.createElement("i");
    dot.style.background = data.colours[g];
    item.append(dot, document.createTextNode(g + " (" + n + ")"));
    legend.append(item);
  }}
  const xs = data.points.map(p => p.x), ys = data.points.map(p => p.y);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const sx = x => PAD + (x - x0) / ((x1 - x0) || 1) * (W - 2 * PAD);
  const sy = y => H - PAD - (y - y0) / ((y1 - y0) || 1) * (H - 2 * PAD);
  const label = p => (p.artist || "unknown artist") + " — " + (p.title || p.path.split("/").pop());
  data.points.forEach((p, i) => {{
    const c = document.createElementNS(NS, "circle");
    c.setAttribute("cx", sx(p.x).toFixed(1)); c.setAttribute("cy", sy(p.y).toFixed(1)); c.setAttribute("r", 5);
    c.setAttribute("fill", data.colours[p.group]); c.setAttribute("class", "point"); c.dataset.index = i;
    c.addEventListener("mouseenter", e => {{
      tip.textContent = ""; const b = document.createElement("b"); b.textContent = label(p);
      tip.append(b, document.createElement("br"), document.createTextNode(p.path + " · " + p.group));
      tip.style.display = "block";
    }});
    c.addEventListener("mousemove", e => {{ tip.style.left = (e.pageX + 12) + "px"; tip.style.top = (e.pageY + 12) + "px"; }});
    c.addEventListener("mouseleave", () => {{ tip.style.display = "none"; }});
    c.addEventListener("click", () => {{
      for (const other of svg.querySelectorAll(".playing")) other.classList.remove("playing");
      c.classList.add("playing");
      player.src = p.url; now.textContent = label(p) + " (" + p.path + ")";
      player.play().catch(() => {{}});  // a browser may refuse to play before a user gesture elsewhere
    }});
    svg.append(c);
  }});
}})();
</script>
</body></html>
"""


def map_html(emap: EmbeddingMap, *, audio_url_template: str, width: int = 800, height: int = 600) -> str:
    """The map as one self-contained HTML page (inline SVG and script; nothing is fetched but the audio).

    Parameters
    ----------
    emap : EmbeddingMap
    audio_url_template : str
        URL of a track's audio, with ``{path}`` standing for its library-relative path
        (percent-encoded, ``/`` kept): e.g. ``file:///music/{path}`` for a page opened from
        disk, or ``/api/audio/{path}`` for a page served by ``nextvox serve``.
    width, height : int
        Size of the drawing, pixels.
    """
    if "{path}" not in audio_url_template:
        raise NextvoxError(f"the audio URL template must contain {{path}}: {audio_url_template!r}")
    data = emap.to_dict()
    data["colours"] = group_colours(emap)
    for point in data["points"]:
        point["url"] = audio_url_template.replace("{path}", quote(point["path"], safe="/"))
    # Inside <script>, "</" ends the element early and "<!--" with "<script" keeps the real end
    # tag from ending it: no "<", ">" or "&" may appear. They only occur inside JSON strings,
    # where their \\u escapes read back the same.
    payload = json.dumps(data, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return _HTML.format(title=html.escape(emap.title), data=payload, width=int(width), height=int(height))


def map_format(out: Path) -> str:
    """``png`` or ``html``, by the extension of ``out``; a NextvoxError for any other.

    Checked before the projection, which takes seconds to minutes: a wrong name must not cost them.
    """
    suffix = Path(out).suffix.lower()
    if suffix == ".png":
        return "png"
    if suffix in (".html", ".htm"):
        return "html"
    raise NextvoxError(f"cannot tell what to write from {Path(out).name}: give a .png or .html file")


def write_map(emap: EmbeddingMap, out: Path, *, library: Path) -> Path:
    """Write the map as PNG or HTML, by the extension of ``out``.

    The HTML page plays tracks from the library folder by ``file://`` URLs, so it works
    when opened from disk on the machine holding the library.

    Raises
    ------
    NextvoxError
        For an extension other than ``.png``, ``.html`` or ``.htm``.
    """
    out = Path(out)
    if map_format(out) == "png":
        return map_png(emap, out)
    page = map_html(emap, audio_url_template=Path(library).resolve().as_uri().rstrip("/") + "/{path}")
    return write_file(out, lambda part: part.write_text(page, encoding="utf-8"))
