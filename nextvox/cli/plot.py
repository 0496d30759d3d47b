"""``plot``: the library's tracks on a 2-D map of their voices."""

from __future__ import annotations

import time
from pathlib import Path

import click

from nextvox.cli.common import CONTEXT, app, chosen_data_dir, data_dir_option, library_argument, stderr


@app.command(context_settings=CONTEXT)
@library_argument
@click.option("--by", type=click.Choice(["gender", "singer", "genre"]), required=True, help="What the colours show.")
@click.option("--embedding", type=click.Choice(["timbre", "melody"]), default="timbre", show_default=True,
              help="Which vectors to map.")
@click.option("--method", type=click.Choice(["umap", "tsne", "pca"]), default="umap", show_default=True,
              help="2-D projection (UMAP and t-SNE axes have no units).")
@click.option("--labels", type=click.Path(path_type=Path),
              help="Labels CSV (path and gender/singer/genre columns): draw only its tracks, grouped by it. "
              "Default: the predicted gender, the artist and genre tags.")
@click.option("--singers", "max_singers", type=click.IntRange(min=1), default=8, show_default=True,
              help="With --by singer: at most this many singers, of different genres where possible (the seed's picture: 4).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the projection.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="map.png (an image) or map.html (interactive: hover a point for its track, click to play it).")
@data_dir_option
@click.pass_context
def plot(
    ctx: click.Context, library: Path, by: str, embedding: str, method: str, labels: Path | None, max_singers: int,
    seed: int, out: Path, data_dir: Path | None,
) -> None:
    """Draw the library's tracks on a 2-D map of their voices, coloured by gender, singer or genre."""
    from nextvox.catalogue import Catalogue, resolve_library
    from nextvox.labels import read_track_labels
    from nextvox.plots import embedding_map, map_format, write_map

    map_format(out)  # a wrong extension is one line now, not after the projection
    root = resolve_library(library)
    columns = read_track_labels(labels, library=root, required=(by,)) if labels is not None else None
    started = time.perf_counter()
    with Catalogue(chosen_data_dir(ctx, library, data_dir), library=root, create=False) as catalogue:
        emap = embedding_map(catalogue, by=by, embedding=embedding, method=method, labels=columns,
                             max_singers=max_singers, seed=seed, progress=lambda step: stderr.print(f"plot: {step}", markup=False))  # fmt: skip
    stderr.print(f"plot: drawing {len(emap.paths)} points", markup=False)
    write_map(emap, out, library=root)
    stderr.print(f"{emap.title}" + (f" — {emap.note}" if emap.note else "") + f": {out} ({time.perf_counter() - started:.1f} s)")

