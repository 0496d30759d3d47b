"""Training: the self-supervised timbre encoder and TCAE, and the mask separator.

One module a job, behind the names this package has always had (``from nextvox.training
import train_timbre`` ...):

:mod:`.core`       the learning-rate schedule, checkpoints, a step's bookkeeping, the report;
:mod:`.data`       a library's cached log-mels, and the excerpts a batcher draws from;
:mod:`.timbre`     the timbre encoder's contrastive loop (:func:`train_timbre`);
:mod:`.tcae`       the TCAE's loop (:func:`train_tcae`);
:mod:`.separator`  the mask separator's loop on songs with isolated vocals (:func:`train_separator`).
"""

from nextvox.training.core import CHECKPOINT, LOSS_PLOT, SUMMARY, ProgressCallback, TrainResult, learning_rate, plot_losses
from nextvox.training.data import library_log_mels
from nextvox.training.separator import SeparatorTrainConfig, SeparatorTrainResult, Stem, load_stems, train_separator
from nextvox.training.tcae import TCAE_WEIGHTS, MelodyViews, TCAETrainConfig, default_tcae_init, train_tcae
from nextvox.training.timbre import WEIGHTS, ContrastiveBatch, TrainConfig, default_init, train_timbre

__all__ = [
    "CHECKPOINT", "LOSS_PLOT", "SUMMARY", "ProgressCallback", "TrainResult", "learning_rate", "plot_losses",
    "library_log_mels",
    "TrainConfig", "ContrastiveBatch", "WEIGHTS", "train_timbre", "default_init",
    "TCAETrainConfig", "MelodyViews", "TCAE_WEIGHTS", "train_tcae", "default_tcae_init",
    "SeparatorTrainConfig", "SeparatorTrainResult", "Stem", "load_stems", "train_separator",
]  # fmt: skip
