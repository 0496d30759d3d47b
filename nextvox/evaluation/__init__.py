"""Retrieval quality of every embedding, beside baselines, on a labelled library.

Three questions are asked of each embedding, all from the labels CSV (labels are used here
only, never in training):

singer retrieval
    Every labelled track queries all the others; relevant = the same singer. Reported as
    mean average precision (mAP) and precision at 5.
melody retrieval
    The queries are the tracks whose melody another singer also sang; the query singer's
    own tracks are left out of the ranking; relevant = the same melody. Reported as mAP.
gender
    A small classifier (logistic regression) trained on the embedding, tested on singers it
    never saw (leave one singer out): accuracy and balanced accuracy.

Each metric has its chance level: the expected value of a random ranking (computed
exactly, see :func:`expected_random_average_precision`) or of always guessing the
majority gender.

One module a job, behind the names this package has always had:

:mod:`.metrics`    similarity, average precision, precision at k and their chance levels;
:mod:`.baselines`  MFCC, resemblyzer and chroma vectors, their worker processes and cache;
:mod:`.library`    :func:`evaluate_library`, the whole ``nextvox evaluate``;
:mod:`.table`      :func:`format_table`, the Markdown table it prints.
"""

from nextvox.constants import GENDERS
from nextvox.evaluation.baselines import (
    BASELINE_VERSIONS, BASELINES, BaselineCache, ProgressCallback, chroma_baseline, mfcc_baseline, resemblyzer_baseline,
)
from nextvox.evaluation.library import evaluate_library, project_embeddings, sequence_similarity_matrix
from nextvox.evaluation.metrics import (
    PRECISION_K, QueryScores, cosine_similarity, expected_random_average_precision, melody_retrieval, ranking_scores,
    singer_retrieval, transposition_invariant_similarity,
)
from nextvox.evaluation.table import format_table
from nextvox.gender import gender_cross_validation
from nextvox.labels import Labels, read_labels

__all__ = [
    "BASELINES", "BASELINE_VERSIONS", "BaselineCache", "GENDERS", "PRECISION_K", "Labels", "QueryScores",
    "ProgressCallback", "cosine_similarity", "transposition_invariant_similarity", "ranking_scores",
    "expected_random_average_precision", "singer_retrieval", "melody_retrieval", "gender_cross_validation",
    "mfcc_baseline", "chroma_baseline", "resemblyzer_baseline", "read_labels", "evaluate_library",
    "project_embeddings", "sequence_similarity_matrix", "format_table",
]  # fmt: skip
