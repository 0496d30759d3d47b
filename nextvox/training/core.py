"""What every training loop shares: the learning-rate schedule, checkpoints, the step's bookkeeping, the report.

Each loop (:mod:`.timbre`, :mod:`.tcae`, :mod:`.separator`) keeps its own readable steps
in the manner of nanoGPT's ``train.py`` — make a batch, forward, loss — and hands the rest
to a :class:`Run`: the model's initial weights (:func:`new_model`), the step's learning rate
(:meth:`Run.start_step`), the optimiser's update (:meth:`Run.update`: zero the gradients,
backward, clip, step), counting steps, losses and seconds, saving a checkpoint every
``checkpoint_every`` steps, calling ``progress`` (:meth:`Run.step_done`), and at the end
writing ``train.json`` and ``loss.png`` (:meth:`Run.finish`).

A checkpoint holds everything needed to go on exactly where it stopped: the run's and the
model's config (plain dicts), each module's weights, the optimiser's state, the random
generator's state, the loss history and the seconds spent. It holds tensors and plain
Python values only, so it is read with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from nextvox.errors import NextvoxError
from nextvox.files import atomic_path, write_text_atomic

__all__ = [
    "CHECKPOINT", "SUMMARY", "LOSS_PLOT", "ProgressCallback", "TrainResult", "learning_rate", "config_from_dict",
    "start_or_resume", "new_model", "read_checkpoint", "Run", "plot_losses",
]  # fmt: skip

CHECKPOINT = "checkpoint.pt"  # everything needed to resume
SUMMARY = "train.json"
LOSS_PLOT = "loss.png"
FINAL_LOSS_FRACTION = 10  # the final loss is the mean over the last 1/10 of the steps

#: progress(step, steps, loss, crops per second)
ProgressCallback = Callable[[int, int, float, float], None]


@dataclass
class TrainResult:
    """What a run left: its folder's files, steps, time and loss."""

    out_dir: Path
    steps: int
    final_loss: float
    seconds: float
    crops_per_s: float
    n_excerpts: int
    losses: list[float]


def learning_rate(step: int, config) -> float:
    """Linear warm-up over ``config.warmup_steps``, then cosine decay from ``config.lr`` to
    ``config.min_lr`` at ``config.steps`` (as nanoGPT's ``get_lr``).

    >>> from types import SimpleNamespace
    >>> c = SimpleNamespace(lr=1.0, min_lr=0.1, warmup_steps=10, steps=110)
    >>> learning_rate(0, c), learning_rate(9, c), round(learning_rate(60, c), 3), learning_rate(110, c)
    (0.1, 1.0, 0.55, 0.1)
    """
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.min_lr + 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))) * (config.lr - config.min_lr)


def config_from_dict(config_type: type, model_type: type, stored: dict):
    """A run's config from its checkpoint's dict (the lists JSON-like storage made of tuples read back as tuples)."""
    model = {name: tuple(value) if isinstance(value, list) else value for name, value in stored["model"].items()}
    return config_type(**{**stored, "model": model_type(**model)})


def start_or_resume(out_dir: Path, config, *, resume: bool, module: str, model_type: type):
    """(checkpoint or None, the run's config, checked): with ``resume``, the checkpoint in
    ``out_dir`` and its own config (the one given is then ignored).

    Raises
    ------
    NextvoxError
        No checkpoint to resume, one of another model (without weights named ``module``), or a bad config.
    """
    checkpoint = read_checkpoint(Path(out_dir) / CHECKPOINT) if resume else None
    if checkpoint is not None:
        if module not in checkpoint:
            raise NextvoxError(f"{Path(out_dir) / CHECKPOINT} is the checkpoint of another model's training")
        config = config_from_dict(type(config), model_type, checkpoint["train_config"])
    if hasattr(config, "check"):
        config.check()
    return checkpoint, config


def new_model(model_type: type, config, *, checkpoint: dict | None,
              load: Callable[[Path], torch.nn.Module] | None = None) -> torch.nn.Module:  # fmt: skip
    """``model_type(config.model)``, its initial weights drawn with ``config.seed``; when a run
    starts (no ``checkpoint``) and ``config.init_weights`` names a file, fine-tuning: that file's
    weights, read with ``load``. A resumed run's weights come from its checkpoint (:class:`Run`).

    Raises
    ------
    NextvoxError
        When the file holds a model of another shape than ``config.model``.
    """
    torch.manual_seed(config.seed)  # initial weights
    model = model_type(config.model)
    init_weights = getattr(config, "init_weights", None)  # a run that never fine-tunes has no such field
    if checkpoint is None and init_weights:
        start = load(Path(init_weights))
        if start.config != model.config:
            raise NextvoxError(f"{init_weights} has another model shape than this run's config")
        model.load_state_dict(start.state_dict())
    return model


def read_checkpoint(path: Path) -> dict:
    """A run's checkpoint, to go on from it (tensors and plain values only: ``weights_only=True``).

    Raises
    ------
    NextvoxError
        No checkpoint there, or one this nextvox cannot read (written by an older one).
    """
    path = Path(path)
    if not path.is_file():
        raise NextvoxError(f"nothing to resume: {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError ... for a foreign or damaged file
        raise NextvoxError(f"cannot resume from {path} ({type(error).__name__}); start the run again without --resume") from None


class Run:
    """The bookkeeping of one training run; the loop around it stays in the caller.

    Parameters
    ----------
    out_dir : Path
        Holds ``checkpoint.pt``, the weights, ``train.json`` and ``loss.png``.
    config : dataclass
        The run's config, with ``steps``, ``lr``, ``min_lr``, ``warmup_steps``, ``weight_decay``,
        ``seed``, ``checkpoint_every`` and ``model`` (a dataclass); saved in every checkpoint.
    modules : dict of str to nn.Module
        What is trained (one AdamW over all their parameters: :attr:`optimizer`) and what the
        checkpoint holds weights of, by name. :attr:`generator`, seeded with ``config.seed``,
        is for every random draw of the data; its state goes into the checkpoint.
    save_weights : callable()
        Writes the shipped form of the weights (at every checkpoint).
    checkpoint : dict, optional
        One read by :func:`read_checkpoint` to go on from (weights, optimiser, generator,
        step, losses and seconds are restored from it).
    progress : callable(step, steps, loss, crops_per_s), optional
    """

    def __init__(self, *, out_dir: Path, config, modules: dict[str, torch.nn.Module], save_weights: Callable[[], None],
                 checkpoint: dict | None = None, progress: ProgressCallback | None = None):  # fmt: skip
        self.out_dir = Path(out_dir)
        self.config, self.modules, self.save_weights, self.progress = config, modules, save_weights, progress
        self.parameters = [p for module in modules.values() for p in module.parameters()]
        self.optimizer = torch.optim.AdamW(self.parameters, lr=config.lr, weight_decay=config.weight_decay)
        self.generator = torch.Generator().manual_seed(config.seed)  # every random draw of the data and augmentations
        self.step, self.losses, self.elapsed_s, self.crops = 0, [], 0.0, 0
        self.step_started = 0.0  # time.perf_counter() at the start of the step under way
        if checkpoint is not None:
            for name, module in modules.items():
                module.load_state_dict(checkpoint[name])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.generator.set_state(checkpoint["rng"])
            self.step, self.losses, self.elapsed_s = checkpoint["step"], list(checkpoint["losses"]), checkpoint["elapsed_s"]
            self.crops = checkpoint.get("crops", 0)

    @property
    def running(self) -> bool:
        """Whether steps remain."""
        return self.step < self.config.steps

    def start_step(self) -> float:
        """Begin a step: set its learning rate (:func:`learning_rate`) on every parameter group and
        start its clock (read by :meth:`step_done`); returns the rate."""
        self.step_started = time.perf_counter()
        rate = learning_rate(self.step, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = rate
        return rate

    def update(self, loss: torch.Tensor, *, clip_norm: float | None = None) -> None:
        """The optimiser's step on ``loss``'s gradients (their norm clipped to ``clip_norm`` when given)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.parameters, clip_norm)
        self.optimizer.step()

    def step_done(self, loss: torch.Tensor, *, crops: int) -> None:
        """Count the step begun by :meth:`start_step` as done, checkpoint when due, report progress."""
        seconds = time.perf_counter() - self.step_started
        self.step += 1
        self.losses.append(float(loss.detach()))
        self.elapsed_s += seconds
        self.crops += crops
        if self.step % self.config.checkpoint_every == 0 or self.step == self.config.steps:
            self.save()
        if self.progress:
            self.progress(self.step, self.config.steps, self.losses[-1], crops / seconds if seconds else 0.0)

    def save(self) -> None:
        """Write the checkpoint (atomically) and the weights."""
        with atomic_path(self.out_dir / CHECKPOINT) as part:
            torch.save({
                "model_config": asdict(self.config.model), "train_config": asdict(self.config),
                **{name: module.state_dict() for name, module in self.modules.items()},
                "optimizer": self.optimizer.state_dict(), "step": self.step, "rng": self.generator.get_state(),
                "losses": self.losses, "elapsed_s": self.elapsed_s, "crops": self.crops,
            }, part)  # fmt: skip
        self.save_weights()

    def finish(self, *, n_excerpts: int, summary: dict, title: str, ylabel: str) -> TrainResult:
        """Write ``train.json`` (``summary`` with the run's config, steps, loss and speed) and ``loss.png``."""
        tail = self.losses[-max(1, len(self.losses) // FINAL_LOSS_FRACTION) :]
        crops_per_s = self.crops / self.elapsed_s if self.elapsed_s else 0.0
        result = TrainResult(self.out_dir, self.step, float(np.mean(tail)) if tail else float("nan"), self.elapsed_s,
                             crops_per_s, n_excerpts, self.losses)  # fmt: skip
        write_text_atomic(self.out_dir / SUMMARY, json.dumps({
            "train_config": asdict(self.config), "steps": self.step, "final_loss": result.final_loss,
            "seconds": round(self.elapsed_s, 1), "crops_per_s": round(crops_per_s, 1),
            "torch_threads": torch.get_num_threads(), **summary,
        }, indent=1) + "\n")  # fmt: skip
        plot_losses(self.losses, self.out_dir / LOSS_PLOT, title=title, ylabel=ylabel)
        return result


def plot_losses(losses: list[float], path: Path, *, title: str, ylabel: str = "NT-Xent loss") -> None:
    """The loss curve (each step, and a running mean over 20) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(np.arange(1, len(losses) + 1), losses, color="0.75", linewidth=0.8, label="step")
    if len(losses) >= 20:
        smooth = np.convolve(losses, np.ones(20) / 20, mode="valid")
        ax.plot(np.arange(20, len(losses) + 1), smooth, color="C0", label="mean of 20")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
