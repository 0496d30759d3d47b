"""The gender head: a small classifier on the timbre vector, its labels and its predictions.

The head is a logistic regression over standardised timbre vectors (class-balanced, so a
library with more men than women does not tilt it). It is stored as plain JSON — the
scaler's mean and scale, the coefficients and the intercept, and the version of the timbre
model whose vectors it was trained on — never as a pickle: a head file can be read, diffed
and loaded by any program.

Which head is used
    ``DATA_DIR/gender_head.json`` when present (``nextvox train gender LIBRARY --use``
    puts it there), else the head shipped in the package (:data:`SHIPPED_HEAD`), else none.
Where predictions go
    After each ``analyze`` the head predicts every track whose timbre vector was made by the
    model it was trained on, and the catalogue stores a vector named :data:`GENDER_VECTOR`
    (shape (1,): the probability that the voice is female) whose model version is the
    head's :attr:`GenderHead.version`. A track embedded by another timbre model gets no
    prediction: a head never reads vectors of a model it does not know.
Where labels come from
    A CSV with ``path`` (relative to the library, or absolute inside it) and ``gender``
    (``female``/``male``; ``f``/``m``, ``woman``/``man`` accepted) columns, and optionally
    ``singer`` (used to hold singers out in cross-validation) and ``genre``; or the files'
    own tags: a ``GENDER`` field (Vorbis comment in FLAC/Ogg/Opus, ``TXXX:GENDER`` in ID3
    for MP3/WAV, ``----:com.apple.iTunes:GENDER`` in MP4), see :func:`read_gender_tag`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nextvox.catalogue import Catalogue, track_file
from nextvox.constants import GENDERS
from nextvox.errors import NextvoxError
from nextvox.labels import normalise_gender, read_gender_tag, read_track_labels
from nextvox.files import write_text_atomic

__all__ = [
    "GENDERS",
    "GENDER_VECTOR",
    "HEAD_FORMAT",
    "SHIPPED_HEAD",
    "ACTIVE_HEAD_NAME",
    "GenderHead",
    "GenderPredictions",
    "train_gender_head",
    "GenderTraining",
    "train_catalogue_head",
    "gender_cross_validation",
    "use_head",
    "gender_status",
    "head_scores",
    "shipped_head",
    "active_head",
    "active_head_path",
    "predict_library_genders",
    "library_genders",
    "normalise_gender",
    "read_track_labels",
    "read_gender_tag",
]

#: The catalogue vector holding a track's predicted probability of a female voice, shape (1,).
GENDER_VECTOR = "gender"
HEAD_FORMAT = "nextvox-gender-head-1"
SHIPPED_HEAD = Path(__file__).resolve().parent / "weights" / "gender_head.json"
ACTIVE_HEAD_NAME = "gender_head.json"  # under the data directory: the user's own head
# Inverse regularisation strength of the logistic regression: scikit-learn's default. The
# vectors are standardised first, so one value suits any timbre model.
REGULARISATION_C = 1.0


@dataclass(frozen=True)
class GenderHead:
    """A trained gender head: standardise, then a logistic regression giving P(female).

    Attributes
    ----------
    mean, scale : np.ndarray, shape (D,), float64
        The standardisation of the timbre vectors (``(x - mean) / scale``).
    coef : np.ndarray, shape (D,), float64
        Weights of the standardised vector in the log-odds of a female voice.
    intercept : float
        Log-odds of a female voice at the mean vector.
    timbre_model_version : str
        The model version of the timbre vectors the head was trained on; it reads no others.
    trained_on : dict
        What it was trained on (tracks, singers, cross-validated accuracy, a note): shown,
        never used in prediction.
    """

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    timbre_model_version: str
    trained_on: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        """Length D of the timbre vectors the head reads."""
        return int(self.coef.shape[0])

    @property
    def version(self) -> str:
        """``gender-lr-`` and 10 hex digits of a hash of the parameters and the timbre version."""
        digest = hashlib.blake2b(digest_size=5)
        for array in (self.mean, self.scale, self.coef):
            digest.update(np.ascontiguousarray(array, dtype="<f8").tobytes())
        digest.update(repr(float(self.intercept)).encode())
        digest.update(self.timbre_model_version.encode())
        return f"gender-lr-{digest.hexdigest()}"

    def p_female(self, vectors: np.ndarray) -> np.ndarray:
        """Probability that each voice is female.

        Parameters
        ----------
        vectors : np.ndarray, shape (N, D)
            Timbre vectors of the model :attr:`timbre_model_version`.

        Returns
        -------
        np.ndarray, shape (N,), float64, in [0, 1]

        Raises
        ------
        NextvoxError
            When the vectors are not (N, D).
        """
        vectors = np.asarray(vectors, dtype=np.float64)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise NextvoxError(f"the gender head reads timbre vectors of length {self.dim}; got shape {vectors.shape}")
        logits = ((np.nan_to_num(vectors) - self.mean) / self.scale) @ self.coef + self.intercept  # (N,)
        return 0.5 * (1.0 + np.tanh(0.5 * logits))  # the logistic function, without overflow

    def predict(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gender and probability of a female voice for each vector.

        Parameters
        ----------
        vectors : np.ndarray, shape (N, D)

        Returns
        -------
        labels : np.ndarray of str, shape (N,)
            ``female`` where the probability is at least 0.5, else ``male``.
        p_female : np.ndarray, shape (N,), float64
        """
        p_female = self.p_female(vectors)
        return np.where(p_female >= 0.5, GENDERS[0], GENDERS[1]), p_female

    # ---- storage ------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """A JSON-ready dict (floats written in full: loading it gives the same head exactly)."""
        return {
            "format": HEAD_FORMAT,
            "version": self.version,
            "timbre_model_version": self.timbre_model_version,
            "dim": self.dim,
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "intercept": float(self.intercept),
            "trained_on": self.trained_on,
        }

    def save(self, path: Path) -> Path:
        """Write the head as JSON (through a temporary file: never a half-written head)."""
        path = Path(path)
        try:
            write_text_atomic(path, json.dumps(self.to_dict(), indent=1) + "\n")
        except OSError as error:
            raise NextvoxError(f"cannot write the gender head {path}: {error.strerror}") from None
        return path

    @classmethod
    def load(cls, path: Path) -> GenderHead:
        """Read a head written by :meth:`save`.

        Raises
        ------
        NextvoxError
            When the file is missing or is not a gender head.
        """
        path = Path(path)
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NextvoxError(f"gender head not found: {path}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise NextvoxError(f"cannot read the gender head {path}: {error}") from None
        if not isinstance(stored, dict) or stored.get("format") != HEAD_FORMAT:
            raise NextvoxError(f"{path} is not a nextvox gender head (expected format {HEAD_FORMAT})")
        try:
            head = cls(
                mean=np.asarray(stored["mean"], dtype=np.float64),
                scale=np.asarray(stored["scale"], dtype=np.float64),
                coef=np.asarray(stored["coef"], dtype=np.float64),
                intercept=float(stored["intercept"]),
                timbre_model_version=str(stored["timbre_model_version"]),
                trained_on=dict(stored.get("trained_on") or {}),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise NextvoxError(f"{path} is a damaged gender head ({type(error).__name__}: {error})") from None
        if not (head.mean.shape == head.scale.shape == head.coef.shape) or head.coef.ndim != 1 or np.any(head.scale <= 0):
            raise NextvoxError(f"{path} is a damaged gender head (inconsistent parameter shapes)")
        return head


def train_gender_head(
    vectors: np.ndarray, genders: np.ndarray, *, timbre_model_version: str, trained_on: dict | None = None
) -> GenderHead:
    """Fit the gender head on labelled timbre vectors.

    Parameters
    ----------
    vectors : np.ndarray, shape (N, D)
        Timbre vectors, all of the model ``timbre_model_version``.
    genders : np.ndarray of str, shape (N,)
        ``female`` or ``male`` for every vector.
    timbre_model_version : str
        Stored with the head, which then refuses vectors of any other model.
    trained_on : dict, optional
        Notes kept in the head file (what data, what accuracy).

    Returns
    -------
    GenderHead

    Raises
    ------
    NextvoxError
        With a label other than female/male, or without tracks of both genders.

    Examples
    --------
    >>> x = np.array([[0.0, 1.0], [0.2, 0.9], [1.0, 0.0], [0.9, 0.1]])
    >>> head = train_gender_head(x, np.array(["female", "female", "male", "male"]), timbre_model_version="toy")
    >>> head.predict(np.array([[0.1, 1.0], [1.0, 0.2]]))[0].tolist()
    ['female', 'male']
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    vectors = np.nan_to_num(np.asarray(vectors, dtype=np.float64))
    genders = np.asarray(genders)
    if vectors.ndim != 2 or len(vectors) != len(genders):
        raise NextvoxError(f"gender head: {len(genders)} labels for vectors of shape {vectors.shape}")
    unknown = sorted(set(genders.tolist()) - set(GENDERS))
    if unknown:
        raise NextvoxError(f"gender labels must be female or male, not {', '.join(map(repr, unknown))}")
    counts = {g: int(np.sum(genders == g)) for g in GENDERS}
    if min(counts.values()) == 0:
        raise NextvoxError(f"a gender head needs labelled tracks of both genders (have {counts['female']} female, {counts['male']} male)")
    scaler = StandardScaler().fit(vectors)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)  # a constant dimension carries no information
    model = LogisticRegression(C=REGULARISATION_C, max_iter=2000, class_weight="balanced")
    model.fit((vectors - scaler.mean_) / scale, genders == GENDERS[0])  # positive class: female
    return GenderHead(
        mean=scaler.mean_.astype(np.float64),
        scale=scale.astype(np.float64),
        coef=model.coef_[0].astype(np.float64),
        intercept=float(model.intercept_[0]),
        timbre_model_version=timbre_model_version,
        trained_on={"n_tracks": len(genders), **counts, **(trained_on or {})},
    )


# ---- the active head and the catalogue's predictions ----------------------------------------

def active_head_path(data_dir: Path) -> Path | None:
    """The head ``analyze`` uses for a data directory: its own, else the shipped one, else None."""
    own = Path(data_dir) / ACTIVE_HEAD_NAME
    if own.is_file():
        return own
    return SHIPPED_HEAD if SHIPPED_HEAD.is_file() else None


def shipped_head() -> GenderHead | None:
    """The head shipped in the package (:data:`SHIPPED_HEAD`), or None when this nextvox ships none."""
    return GenderHead.load(SHIPPED_HEAD) if SHIPPED_HEAD.is_file() else None


def active_head(data_dir: Path) -> GenderHead | None:
    """The head at :func:`active_head_path`, loaded; None when there is none."""
    path = active_head_path(data_dir)
    return None if path is None else GenderHead.load(path)


_NO_HEAD = "no gender head: train one with `nextvox train gender LIBRARY --labels CSV --use`"


@dataclass(frozen=True)
class GenderPredictions:
    """What :func:`predict_library_genders` did.

    Attributes
    ----------
    head_version : str or None
        None when there is no head.
    predicted : int
        Tracks (distinct contents) that now have a prediction by this head.
    mismatched : int
        Tracks whose timbre vector another timbre model made: left without a prediction.
    note : str or None
        Why some or all tracks have no gender, for ``status`` and ``evaluate``.
    """

    head_version: str | None
    predicted: int
    mismatched: int
    note: str | None


def _readable_timbre(catalogue: Catalogue, head: GenderHead) -> tuple[list[str], list[str], np.ndarray, dict[str, str]]:
    """(content hashes with a timbre vector, its model versions, which of them the head may read (N,) bool,
    content hash -> model version of the stored gender prediction).

    Versions only, and one vector for the length: an unchanged library reads no timbre vector.
    """
    hashes, versions = catalogue.vector_versions("timbre")
    dim = len(next(iter(catalogue.vectors_for("timbre", hashes[:1]).values()))) if hashes else 0
    readable = np.array([v == head.timbre_model_version and dim == head.dim for v in versions], dtype=bool)
    return hashes, versions, readable, dict(zip(*catalogue.vector_versions(GENDER_VECTOR)))


def _mismatch_note(head: GenderHead, versions: list[str], readable: np.ndarray) -> str | None:
    if readable.all():
        return None
    other = sorted({versions[i] for i in np.flatnonzero(~readable)})
    return (f"{int((~readable).sum())} tracks have no gender: their timbre vectors come from {', '.join(other)}, but the "
            f"gender head was trained on {head.timbre_model_version}; retrain it with `nextvox train gender`")


def gender_status(catalogue: Catalogue, head: GenderHead | None) -> GenderPredictions:
    """What :func:`predict_library_genders` would leave, read only (for ``status``)."""
    if head is None:
        return GenderPredictions(None, 0, 0, _NO_HEAD)
    hashes, versions, readable, stored = _readable_timbre(catalogue, head)
    predicted = sum(stored.get(h) == head.version for h in hashes)
    return GenderPredictions(head.version, int(predicted), int((~readable).sum()), _mismatch_note(head, versions, readable))


def predict_library_genders(catalogue: Catalogue, head: GenderHead | None) -> GenderPredictions:
    """Store the head's prediction for every analysed content whose timbre model it knows.

    Only missing or outdated predictions are computed (a prediction made by another head
    is replaced); predictions for vectors of another timbre model are removed, never
    guessed.

    Parameters
    ----------
    catalogue : Catalogue
    head : GenderHead or None
        None removes nothing and predicts nothing.
    """
    if head is None:
        return GenderPredictions(None, 0, 0, _NO_HEAD)
    hashes, versions, readable, stored = _readable_timbre(catalogue, head)
    todo = [hashes[i] for i in np.flatnonzero(readable) if stored.get(hashes[i]) != head.version]
    if todo:
        vectors = catalogue.vectors_for("timbre", todo)
        p_female = head.p_female(np.stack([vectors[h] for h in todo]))
        catalogue.store_vectors(GENDER_VECTOR, {h: (head.version, np.array([p], dtype=np.float32)) for h, p in zip(todo, p_female)})
    stale = [hashes[i] for i in np.flatnonzero(~readable) if hashes[i] in stored]
    if stale:
        catalogue.delete_vectors(GENDER_VECTOR, stale)
    return GenderPredictions(head.version, int(readable.sum()), int((~readable).sum()), _mismatch_note(head, versions, readable))


def library_genders(catalogue: Catalogue) -> dict[str, tuple[str, float]]:
    """Stored predictions by content hash: (``female``|``male``, probability of female).

    The recommender's gender filter and the plots read the same vector
    (:data:`GENDER_VECTOR`); a track absent here has no prediction.
    """
    hashes, probabilities, _ = catalogue.vectors(GENDER_VECTOR)
    return {h: (GENDERS[0] if p[0] >= 0.5 else GENDERS[1], float(p[0])) for h, p in zip(hashes, probabilities)}


# ---- labels ------------------------------------------------------------------------------


# ---- accuracy on singers held out ----------------------------------------------------------

MAX_GENDER_FOLDS = 50  # beyond this many singers, singers are grouped into this many folds


def gender_cross_validation(
    features: np.ndarray, *, genders: np.ndarray, singers: np.ndarray, max_folds: int = MAX_GENDER_FOLDS
) -> dict[str, float]:
    """Accuracy of a logistic-regression gender head on singers it never saw.

    Each singer's tracks are predicted by a head (standardised features, class-balanced
    logistic regression) trained on the other singers' tracks: leave one singer out. With
    more than ``max_folds`` singers, singers are dealt into ``max_folds`` groups, still so
    that no singer is in both the training and the test part of a fold.

    Parameters
    ----------
    features : np.ndarray, shape (N, D)
    genders : np.ndarray of str, shape (N,)
        ``"female"`` or ``"male"`` for every track.
    singers : np.ndarray, shape (N,)
    max_folds : int

    Returns
    -------
    dict
        ``accuracy`` (fraction of tracks right) and ``balanced_accuracy`` (mean of the
        per-gender recalls, 0.5 for a constant guess).

    Raises
    ------
    ValueError
        With fewer than two singers or a single gender.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    genders, singers = np.asarray(genders), np.asarray(singers)
    classes = np.unique(genders)
    unique_singers = np.unique(singers)
    if len(classes) < 2 or len(unique_singers) < 2:
        raise ValueError("gender cross-validation needs both genders and at least two singers")
    fold_of_singer = {singer: i % max_folds for i, singer in enumerate(unique_singers)}
    folds = np.array([fold_of_singer[s] for s in singers])
    features = np.nan_to_num(np.asarray(features, dtype=np.float64))
    predicted = np.empty_like(genders)
    for fold in np.unique(folds):
        test = folds == fold
        train_genders = genders[~test]
        if len(np.unique(train_genders)) < 2:  # the held-out singers were all of one gender
            predicted[test] = train_genders[0]
            continue
        head = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))
        head.fit(features[~test], train_genders)
        predicted[test] = head.predict(features[test])
    right = predicted == genders
    recalls = [float(right[genders == c].mean()) for c in classes]
    return {"accuracy": float(right.mean()), "balanced_accuracy": float(np.mean(recalls))}


# ---- training on a library -----------------------------------------------------------------

@dataclass(frozen=True)
class GenderTraining:
    """The outcome of :func:`train_catalogue_head`.

    Attributes
    ----------
    head : GenderHead
        Trained on every labelled track.
    accuracy, balanced_accuracy : float or None
        Cross-validated on singers held out (leave one singer out); None with fewer than
        two singers (see ``note``).
    n_tracks, n_singers : int
        Labelled, analysed tracks and their singers.
    n_unlabelled : int
        Analysed tracks without a gender label (not used).
    label_source : str
        The CSV's path, or ``tags``.
    note : str or None
    """

    head: GenderHead
    accuracy: float | None
    balanced_accuracy: float | None
    n_tracks: int
    n_singers: int
    n_unlabelled: int
    label_source: str
    note: str | None = None


def train_catalogue_head(catalogue: Catalogue, *, labels_csv: Path | None = None, analysis_version: str) -> GenderTraining:
    """Train a gender head on the labelled timbre vectors of an analysed library.

    Labels come from ``labels_csv`` (``path`` and ``gender`` columns; ``singer`` optional)
    or, without it, from each file's ``GENDER`` tag (:func:`read_gender_tag`). Singers
    (the CSV's ``singer``, else the artist tag, else each track alone) are held out one at a
    time to measure accuracy on voices the head never saw; the head returned is then
    trained on every labelled track. (``nextvox.workflows.train_library_head`` analyses the
    library first.)

    Parameters
    ----------
    catalogue : Catalogue
    labels_csv : Path, optional
    analysis_version : str
        The analysis the vectors come from, recorded in the head.

    Raises
    ------
    NextvoxError
        Bad labels, too few labelled tracks, or timbre vectors of mixed models.
    """
    library = catalogue.library
    tracks = catalogue.tracks(status="analyzed")
    hashes, matrix, versions = catalogue.vectors("timbre")
    row_of = {h: i for i, h in enumerate(hashes)}
    if labels_csv is not None:
        labels = read_track_labels(labels_csv, library=library, required=("gender",))
        label_source = str(labels_csv)
    else:
        labels = {t.path: {"gender": g} for t in tracks if (g := read_gender_tag(track_file(library, t.path)))}
        label_source = "tags"
    labelled = [t for t in tracks if labels.get(t.path, {}).get("gender") and t.content_hash in row_of]
    if len(labelled) < 2:
        where = f"in {labels_csv}" if labels_csv is not None else "in the files' GENDER tags"
        raise NextvoxError(f"only {len(labelled)} analysed tracks have a gender {where}; a gender head needs tracks of both genders")
    rows = [row_of[t.content_hash] for t in labelled]
    used_versions = sorted({versions[i] for i in rows})
    if len(used_versions) > 1:
        raise NextvoxError(f"the labelled tracks hold timbre vectors of several models ({', '.join(used_versions)}): run `nextvox analyze` again")
    vectors = matrix[rows]
    genders = np.array([labels[t.path]["gender"] for t in labelled])
    singers = np.array([labels[t.path].get("singer") or t.artist or f"track:{t.path}" for t in labelled])
    n_singers = len(np.unique(singers))
    accuracy = balanced = None
    note = None
    try:
        scores = gender_cross_validation(vectors, genders=genders, singers=singers)
        accuracy, balanced = scores["accuracy"], scores["balanced_accuracy"]
    except ValueError as error:
        note = f"accuracy not measured: {error}"
    head = train_gender_head(vectors, genders, timbre_model_version=used_versions[0], trained_on={
        "labels": label_source, "n_singers": n_singers, "analysis_version": analysis_version,
        "leave_one_singer_out_accuracy": accuracy, "balanced_accuracy": balanced,
    })  # fmt: skip
    return GenderTraining(head, accuracy, balanced, len(labelled), n_singers, len(tracks) - len(labelled), label_source, note)


def use_head(head: GenderHead, *, library: Path, data_dir: Path) -> GenderPredictions:
    """Make ``head`` the data directory's active head and predict the catalogue's tracks with it."""
    head.save(Path(data_dir) / ACTIVE_HEAD_NAME)
    with Catalogue(data_dir, library=library) as catalogue:
        return predict_library_genders(catalogue, head)


def head_scores(head: GenderHead | None, vectors: np.ndarray | None, *, timbre_model_version: str | None,
                genders: np.ndarray) -> dict:  # fmt: skip
    """Accuracy of a head as is (no retraining) on labelled timbre vectors, for ``evaluate``.

    Parameters
    ----------
    head : GenderHead or None
    vectors : np.ndarray, shape (N, D), or None
        Timbre vectors of the evaluated tracks (None when they are missing).
    timbre_model_version : str or None
        The model that made ``vectors``; a head trained on another model is not measured.
    genders : np.ndarray of str, shape (N,)
        ``female``, ``male`` or ``""`` (unlabelled: left out).

    Returns
    -------
    dict
        ``accuracy``, ``balanced_accuracy`` (mean of the per-gender recalls; None when not
        measured), ``note`` and, with a head, its ``version``.
    """
    row: dict = {"accuracy": None, "balanced_accuracy": None}
    genders = np.asarray(genders)
    labelled = np.isin(genders, GENDERS)
    if head is None:
        return row | {"note": "no shipped gender head in this nextvox"}
    row["version"] = head.version
    if vectors is None or timbre_model_version is None:
        return row | {"note": "not measured: the evaluated tracks have no timbre vectors"}
    if timbre_model_version != head.timbre_model_version:
        return row | {"note": f"not measured: the head reads {head.timbre_model_version} vectors, these are {timbre_model_version}"}
    if not labelled.any():
        return row | {"note": "not measured: no gender labels"}
    predicted, _ = head.predict(np.asarray(vectors)[labelled])
    right = predicted == genders[labelled]
    present = [g for g in GENDERS if np.any(genders[labelled] == g)]
    row["accuracy"] = float(right.mean())
    row["balanced_accuracy"] = float(np.mean([right[genders[labelled] == g].mean() for g in present]))
    trained = head.trained_on
    row["note"] = (f"the shipped head as is ({head.version}, trained on {trained.get('n_tracks', '?')} tracks of "
                   f"{trained.get('n_singers', '?')} singers)" + ("" if len(present) == 2 else f"; only {present[0]} voices labelled"))
    return row
