"""``nextvox evaluate``: analyse a labelled library if needed and measure every embedding against the labels.

The embeddings: the project's own vectors from the catalogue (``timbre``, ``melody``,
``melody_vector`` and ``combined``, the recommender's score) and the baselines of
:mod:`nextvox.evaluation.baselines`.
"""

from __future__ import annotations

import datetime
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nextvox.analysis import EXCERPT_VERSION, INFERENCE_BF16, AnalysisSettings, analyze_library
from nextvox.catalogue import Catalogue, resolve_library
from nextvox.errors import NextvoxError
from nextvox.evaluation.baselines import BASELINE_VERSIONS, BASELINES, ProgressCallback, baseline_vectors
from nextvox.evaluation.metrics import QueryScores, melody_retrieval, singer_retrieval, transposition_invariant_similarity, unit_rows
from nextvox.features import MelCache
from nextvox.gender import gender_cross_validation, head_scores, shipped_head
from nextvox.labels import Labels, read_labels
from nextvox.melody_match import sequence_similarities
from nextvox.models import tcae, timbre

PROJECT_EMBEDDINGS = ("timbre", "melody", "melody_vector", "combined")
MAX_SEQUENCE_TRACKS = 500  # above this, evaluate's melody row is the vector's cosine (500 tracks: 125k matches, about 16 min)
QUERY_BLOCK = 512  # similarity rows computed at once: 512 x 20,000 float32 is 40 MB


@dataclass(frozen=True)
class _Embedding:
    """One row of the evaluation: how to compare tracks, and vectors for the gender head.

    ``similarity_rows(indices)`` gives the (Q, N) similarity of tracks ``indices`` to all N
    evaluated tracks; ``features`` (N, D) is what a gender head is trained on. Both None
    when the embedding does not exist yet, and then ``note`` says why.
    """

    similarity_rows: Callable[[np.ndarray], np.ndarray] | None
    features: np.ndarray | None
    note: str | None = None
    model_version: str | None = None


def _cosine_embedding(vectors: np.ndarray, *, note: str | None = None, model_version: str | None = None) -> _Embedding:
    unit = unit_rows(vectors)
    return _Embedding(lambda rows: unit[rows] @ unit.T, unit, note, model_version)


def _chroma_embedding(vectors: np.ndarray) -> _Embedding:
    return _Embedding(
        lambda rows: transposition_invariant_similarity(vectors[rows], vectors),
        vectors,
        "mean chroma, best of 12 transpositions",
        BASELINE_VERSIONS["chroma"],
    )


def _catalogue_vectors(catalogue: Catalogue, name: str, hashes: list[str]) -> tuple[np.ndarray | None, str | None, str | None]:
    """(vectors (N, D) in the order of ``hashes``, model version, note); vectors None when absent."""
    stored_hashes, matrix, versions = catalogue.vectors(name)
    row_of = {digest: i for i, digest in enumerate(stored_hashes)}
    absent = sum(digest not in row_of for digest in hashes)
    if absent == len(hashes):
        return None, None, f"no {name} model yet"
    if absent:
        return None, None, f"{name} vectors missing for {absent} of {len(hashes)} tracks: run nextvox analyze"
    rows = [row_of[digest] for digest in hashes]
    used_versions = sorted({versions[i] for i in rows})
    if len(used_versions) > 1:
        return None, None, f"{name} vectors come from several models ({', '.join(used_versions)}): run nextvox analyze"
    return matrix[rows], used_versions[0], None


def _catalogue_sequences(catalogue: Catalogue, hashes: list[str], *, version: str | None) -> list[np.ndarray] | None:
    """The melody sequences of ``hashes`` in order, when every one is stored by the model ``version``; else None."""
    stored = catalogue.sequences("melody", hashes)
    if version is None or any(stored.get(h, ("",))[0] != version for h in hashes):
        return None
    return [stored[h][1] for h in hashes]


def sequence_similarity_matrix(sequences: list[np.ndarray], *, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Every pair's melody-sequence match (:func:`nextvox.melody_match.sequence_similarity`), shape (N, N), diagonal 1."""
    n = len(sequences)
    matrix = np.eye(n, dtype=np.float32)
    for i in range(n):
        matrix[i, i + 1 :] = matrix[i + 1 :, i] = sequence_similarities(sequences[i], sequences[i + 1 :])
        if progress:
            progress(i + 1, n)
    return matrix


def project_embeddings(
    catalogue: Catalogue, hashes: list[str], *, w_timbre: float, w_melody: float,
    overrides: dict[str, tuple[np.ndarray, str, list[np.ndarray] | None]] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, _Embedding]:  # fmt: skip
    """``timbre``, ``melody``, ``melody_vector`` and ``combined`` from the catalogue, or rows saying what is missing.

    ``overrides`` (by name: vectors (N, D) in the order of ``hashes``, model version, melody
    sequences or None) replace the catalogue's: other weights under evaluation (``--model``).
    ``melody`` is the recommender's melody similarity: the mean of the melody vectors' cosine and
    the sequences' match where every track has a sequence and there are at most
    MAX_SEQUENCE_TRACKS tracks, else the vectors' cosine; ``melody_vector`` is the vector
    alone, what the index searches.
    """
    found: dict[str, tuple[np.ndarray | None, str | None, str | None, str | None]] = {}  # vectors, version, missing, note
    sequences = None
    for name in ("timbre", "melody"):
        if name in (overrides or {}):
            vectors, version, override_sequences = overrides[name]
            found[name] = (vectors, version, None, f"weights under evaluation ({version})")
            sequences = override_sequences if name == "melody" else sequences
        else:
            found[name] = (*_catalogue_vectors(catalogue, name, hashes), None)
            if name == "melody":
                sequences = _catalogue_sequences(catalogue, hashes, version=found[name][1])
    embeddings = {
        name: _Embedding(None, None, missing) if vectors is None else _cosine_embedding(vectors, note=note, model_version=version)
        for name, (vectors, version, missing, note) in found.items()
    }
    (timbre, _, timbre_missing, _), (melody, melody_version, melody_missing, melody_note) = found["timbre"], found["melody"]
    melody_similarity = None  # (N, N) melody similarities with the sequence match, when it can be had
    embeddings["melody_vector"] = embeddings["melody"]  # the missing row's note, unless replaced below
    if melody is not None:
        embeddings["melody_vector"] = _cosine_embedding(melody, note="the melody vector alone (what the index searches)",
                                                        model_version=melody_version)  # fmt: skip
        if sequences is not None and len(hashes) <= MAX_SEQUENCE_TRACKS:
            unit_melody = unit_rows(melody)
            melody_similarity = sequence_similarity_matrix(sequences, progress=progress)
            note = f"the melody sequences' match (local alignment, best of {2 * len(tcae.KEY_SHIFTS) - 1} relative keys)" + (f"; {melody_note}" if melody_note else "")
            embeddings["melody"] = _Embedding(lambda rows: melody_similarity[rows], unit_melody, note, melody_version)
        else:
            why = "no melody sequences stored" if sequences is None else f"more than {MAX_SEQUENCE_TRACKS} tracks"
            embeddings["melody"] = _cosine_embedding(melody, note=f"melody vector only ({why})", model_version=melody_version)

    # score = w_t cos(t) + w_m melody(m). Its features, for the gender head, are
    # [sqrt(w_t) t^, sqrt(w_m) m^], whose dot product is the score with the melody vectors' cosine.
    formula = f"score = {w_timbre:g}·cos(timbre) + {w_melody:g}·melody"
    parts, missing = [], []
    for weight, vectors, why in ((w_timbre, timbre, timbre_missing), (w_melody, melody, melody_missing)):
        if weight > 0:
            if vectors is None:
                missing.append(why)
            else:
                parts.append(np.sqrt(weight) * unit_rows(vectors))
    if missing:
        embeddings["combined"] = _Embedding(None, None, f"{formula}; {'; '.join(missing)}")
    else:
        combined = np.concatenate(parts, axis=1)
        if w_melody > 0 and melody_similarity is not None:
            unit_timbre = unit_rows(timbre)
            rows_of = lambda rows: w_timbre * (unit_timbre[rows] @ unit_timbre.T) + w_melody * melody_similarity[rows]  # noqa: E731
            embeddings["combined"] = _Embedding(rows_of, combined, formula + " (melody sequences matched)")
        else:
            embeddings["combined"] = _Embedding(lambda rows: combined[rows] @ combined.T, combined, formula)
    return embeddings


def _retrieval(embedding: _Embedding, *, singers: np.ndarray, melodies: np.ndarray) -> tuple[QueryScores, QueryScores]:
    """Singer and melody scores of every track, computed in blocks of query rows."""
    singer_parts, melody_parts = [], []
    for start in range(0, len(singers), QUERY_BLOCK):
        rows = np.arange(start, min(len(singers), start + QUERY_BLOCK))
        similarity = embedding.similarity_rows(rows)  # (Q, N)
        singer_parts.append(singer_retrieval(similarity, singers=singers, query_indices=rows))
        melody_parts.append(melody_retrieval(similarity, singers=singers, melodies=melodies, query_indices=rows))
    singer_scores, melody_scores = singer_parts[0], melody_parts[0]
    for singer_part, melody_part in zip(singer_parts[1:], melody_parts[1:]):
        singer_scores, melody_scores = singer_scores.concatenate(singer_part), melody_scores.concatenate(melody_part)
    return singer_scores, melody_scores


def _check_weights(w_timbre: float, w_melody: float) -> None:
    for name, weight in (("timbre", w_timbre), ("melody", w_melody)):
        if not (math.isfinite(weight) and weight >= 0):
            raise NextvoxError(f"the {name} weight must be a number >= 0, not {weight}")
    if w_timbre + w_melody == 0:
        raise NextvoxError("the timbre and melody weights are both 0: nothing would rank the tracks")


MODEL_FILES = {"timbre": "timbre.pt", "melody": "tcae.pt"}  # vector name -> weights file of a --model folder


def _model_weights(model_dir: Path | None) -> dict[str, Path]:
    """The weights files of a ``--model`` folder by vector name: ``timbre.pt`` and/or ``tcae.pt``, as ``nextvox train`` writes them."""
    if model_dir is None:
        return {}
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise NextvoxError(f"model folder not found: {model_dir}")
    weights = {name: model_dir / file for name, file in MODEL_FILES.items() if (model_dir / file).is_file()}
    if not weights:
        raise NextvoxError(f"no timbre.pt or tcae.pt in {model_dir}: give the --out folder of `nextvox train timbre` or `nextvox train tcae`")
    return weights


def _vectors_from_cache(
    name: str, weights: Path, hashes: list[str], *, data_dir: Path, separator: str
) -> tuple[np.ndarray, str, list[np.ndarray] | None]:
    """``name`` vectors (N, D) of ``hashes`` by the model in ``weights``, from the cached log-mels; its version; melody sequences."""
    if name == "timbre":
        encoder = timbre.load_weights(weights)
        version, dim = timbre.weights_version(weights), encoder.embedding_dim

        def embed(x: np.ndarray) -> tuple[np.ndarray, None]:
            return timbre.embed_excerpt(encoder, x, bf16=INFERENCE_BF16), None
    else:
        model = tcae.load_weights(weights)
        version, dim = tcae.weights_version(weights), model.config.melody_dim

        def embed(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return tcae.melody_vector_and_sequence(model, x, n_valid_frames=x.shape[1])

    cache = MelCache(Path(data_dir) / "cache", separator=separator, excerpt_version=EXCERPT_VERSION)
    vectors, sequences = [], []
    for digest in hashes:
        cached = cache.load(digest)
        if cached is None:
            raise NextvoxError(f"the spectrogram cache under {data_dir} lost a track's log-mel: run nextvox analyze again")
        vector, sequence = embed(cached[0])
        vectors.append(vector)
        sequences.append(sequence)
    matrix = np.stack(vectors) if vectors else np.zeros((0, dim), np.float32)
    return matrix, version, (sequences if name == "melody" else None)


def evaluate_library(
    library: Path,
    labels_csv: Path,
    *,
    data_dir: Path,
    jobs: int | None = None,
    separator: str | None = None,
    separator_weights: Path | None = None,
    model_dir: Path | None = None,
    w_timbre: float = 1.0,
    w_melody: float = 0.0,
    progress: ProgressCallback | None = None,
) -> dict:
    """Analyse ``library`` if needed and measure every embedding against the labels.

    Parameters
    ----------
    library : Path
        The music folder.
    labels_csv : Path
        Labels (``path``, ``singer``; optional ``gender``, ``melody``); see :func:`read_labels`.
    data_dir : Path
        Catalogue and caches (baseline vectors go to ``data_dir/cache/baselines``).
    jobs : int, optional
        Worker processes for analysis and baselines; one per core by default.
    separator : str, optional
        Vocal separator of the analysis; the library's own (as ``analyze`` stored it) when None.
    separator_weights : Path, optional
        Model file of the ``mask`` (default: shipped) or ``demucs`` separator.
    model_dir : Path, optional
        A folder holding other timbre weights (``timbre.pt``, from ``nextvox train timbre``):
        its vectors, computed from the cached log-mels, replace the shipped ones in the
        ``timbre`` and ``combined`` rows.
    w_timbre, w_melody : float
        Weights of the ``combined`` score, ``>= 0``, not both 0.
    progress : callable(stage, done, total), optional
        Stages ``"scan"``, ``"analyze"``, ``"baselines"``.

    Returns
    -------
    dict
        JSON-ready, in the shape of DESIGN.md's ``evaluate --json``: ``n_tracks``,
        ``n_singers``, ``embeddings`` (per name: ``singer_map``, ``singer_p_at_5``,
        ``melody_map``, ``note``), ``gender`` (per name: ``leave_one_singer_out_accuracy``,
        ``balanced_accuracy``; and ``default_head``), plus ``chance`` (the same metrics for a
        random ranking or the majority gender), ``n_singer_queries``, ``n_melody_queries``,
        ``n_gender_tracks``, ``n_labelled``, ``n_failed``, ``failed`` (path and reason of
        each labelled track left out), ``notes``, ``settings`` and ``timings_s``. A metric
        that cannot be measured is None, with a note saying why.

    Raises
    ------
    NextvoxError
        For a bad library, labels file, weight or model folder.
    """
    _check_weights(w_timbre, w_melody)
    library = resolve_library(library)
    model_weights = _model_weights(model_dir)
    labels = read_labels(labels_csv, library=library)
    jobs = max(1, jobs or os.cpu_count() or 1)
    started = time.perf_counter()
    settings = analyze_library(
        library,
        data_dir=data_dir,
        jobs=jobs,
        settings=AnalysisSettings.from_options(separator, separator_weights),
        on_scan=(lambda done, total: progress("scan", done, total)) if progress else None,
        on_track=(lambda done, total, _audio_s: progress("analyze", done, total)) if progress else None,
    ).settings
    analysed_at = time.perf_counter()

    catalogue = Catalogue(data_dir, library=library)
    try:
        tracks = {track.path: track for track in catalogue.tracks()}
        failed: list[dict[str, str]] = []
        kept: list[int] = []  # label rows whose track was analysed
        for i, path in enumerate(labels.paths):
            track = tracks.get(path)
            if track is None:
                kind = "not an audio file nextvox reads" if (library / path).is_file() else "no such file"
                raise NextvoxError(f"{labels_csv}: line {labels.line_numbers[i]}: {path} is not a track of the library {library} ({kind})")
            if track.status == "analyzed":
                kept.append(i)
            else:
                failed.append({"path": path, "error": track.error or "not analysed"})

        files = {tracks[labels.paths[i]].content_hash: library / labels.paths[i] for i in kept}
        baselines, baseline_failures = baseline_vectors(files, data_dir=data_dir, jobs=jobs, progress=progress)
        for i in list(kept):
            reason = baseline_failures.get(tracks[labels.paths[i]].content_hash)
            if reason:
                failed.append({"path": labels.paths[i], "error": f"baselines: {reason}"})
                kept.remove(i)
        if len(kept) < 2:
            reasons = "; ".join(f"{f['path']}: {f['error']}" for f in failed[:3])
            raise NextvoxError(f"only {len(kept)} of the {len(labels.paths)} labelled tracks could be analysed; at least 2 are needed ({reasons})")
        baselines_at = time.perf_counter()

        hashes = [tracks[labels.paths[i]].content_hash for i in kept]
        overrides = {name: _vectors_from_cache(name, weights, hashes, data_dir=data_dir, separator=settings.separator_version)
                     for name, weights in model_weights.items()}  # fmt: skip
        embeddings = project_embeddings(catalogue, hashes, w_timbre=w_timbre, w_melody=w_melody, overrides=overrides,
                                         progress=(lambda done, total: progress("melody match", done, total)) if progress else None)
        head_timbre, head_timbre_version, _ = overrides["timbre"] if "timbre" in overrides else _catalogue_vectors(catalogue, "timbre", hashes)
    finally:
        catalogue.close()
    embeddings["mfcc"] = _cosine_embedding(np.stack([baselines["mfcc"][h] for h in hashes]) if hashes else np.zeros((0, 1)), model_version=BASELINE_VERSIONS["mfcc"])
    embeddings["resemblyzer"] = _cosine_embedding(np.stack([baselines["resemblyzer"][h] for h in hashes]) if hashes else np.zeros((0, 1)), model_version=BASELINE_VERSIONS["resemblyzer"])
    embeddings["chroma"] = _chroma_embedding(np.stack([baselines["chroma"][h] for h in hashes]) if hashes else np.zeros((0, 12)))

    singers, genders, melodies = labels.singers[kept], labels.genders[kept], labels.melodies[kept]
    default_head = head_scores(shipped_head(), head_timbre, timbre_model_version=head_timbre_version, genders=genders)
    result = _measure(embeddings, singers=singers, genders=genders, melodies=melodies, labels=labels, default_head=default_head)
    result.update(
        n_labelled=len(labels.paths),
        n_failed=len(failed),
        failed=failed,
        settings={"separator": settings.separator_version, "w_timbre": w_timbre, "w_melody": w_melody, "analysis_version": settings.version,
                  "timbre_weights": str(model_weights["timbre"]) if "timbre" in model_weights else None,
                  "tcae_weights": str(model_weights["melody"]) if "melody" in model_weights else None},
        timings_s={
            "analysis": round(analysed_at - started, 3),
            "baselines": round(baselines_at - analysed_at, 3),
            "metrics": round(time.perf_counter() - baselines_at, 3),
        },
        evaluated_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    return result


def _measure(
    embeddings: dict[str, _Embedding], *, singers: np.ndarray, genders: np.ndarray, melodies: np.ndarray, labels: Labels,
    default_head: dict,
) -> dict:
    """The metrics of every embedding over the evaluated tracks, as the result dict.

    ``default_head`` is the shipped gender head's row (:func:`nextvox.gender.head_scores`).
    """
    notes: list[str] = []
    if not labels.has_melody:
        notes.append("no melody column in the labels: melody retrieval not measured")
    if not labels.has_gender:
        notes.append("no gender column in the labels: gender not measured")
    gendered = genders != ""
    gender_measurable = len(np.unique(genders[gendered])) == 2 and len(np.unique(singers[gendered])) >= 2
    if labels.has_gender and not gender_measurable:
        notes.append("gender needs labelled tracks of both genders from at least two singers")

    rows: dict[str, dict] = {}
    gender_rows: dict[str, dict] = {}
    chance: dict[str, float | None] = {"singer_map": None, "singer_p_at_5": None, "melody_map": None}
    n_singer_queries = n_melody_queries = 0
    for name in (*PROJECT_EMBEDDINGS, *BASELINES):
        embedding = embeddings[name]
        row: dict = {"singer_map": None, "singer_p_at_5": None, "melody_map": None}
        gender_row: dict = {"leave_one_singer_out_accuracy": None, "balanced_accuracy": None}
        if embedding.similarity_rows is not None and len(singers) > 1:
            singer_scores, melody_scores = _retrieval(embedding, singers=singers, melodies=melodies)
            singer_means, melody_means = singer_scores.means(), melody_scores.means()
            row.update(singer_map=singer_means["map"], singer_p_at_5=singer_means["p_at_k"])
            chance.update(singer_map=singer_means["chance_map"], singer_p_at_5=singer_means["chance_p_at_k"])
            n_singer_queries = singer_scores.n_queries
            if labels.has_melody:
                row["melody_map"] = melody_means["map"]
                chance["melody_map"] = melody_means["chance_map"]
                n_melody_queries = melody_scores.n_queries
        if embedding.similarity_rows is not None and gender_measurable:
            scores = gender_cross_validation(embedding.features[gendered], genders=genders[gendered], singers=singers[gendered])
            gender_row.update(leave_one_singer_out_accuracy=scores["accuracy"], balanced_accuracy=scores["balanced_accuracy"])
        if embedding.model_version:
            row["model_version"] = embedding.model_version
        if embedding.note:
            row["note"] = gender_row["note"] = embedding.note
        rows[name] = row
        gender_rows[name] = gender_row
    gender_rows["default_head"] = default_head

    if gender_measurable:
        counts = np.unique(genders[gendered], return_counts=True)[1]
        chance.update(gender_accuracy=float(counts.max() / counts.sum()), gender_balanced_accuracy=0.5)
    else:
        chance.update(gender_accuracy=None, gender_balanced_accuracy=None)
    return {
        "n_tracks": int(len(singers)),
        "n_singers": int(len(np.unique(singers))),
        "embeddings": rows,
        "gender": gender_rows,
        "chance": chance,
        "n_singer_queries": n_singer_queries,
        "n_melody_queries": n_melody_queries,
        "n_gender_tracks": int(gendered.sum()) if gender_measurable else 0,
        "notes": notes,
    }
