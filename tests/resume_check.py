"""The check every training loop's checkpoints must pass: a run stopped and resumed ends as one
that ran straight through."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from nextvox.training import CHECKPOINT


def assert_resumes_exactly(train: Callable, config, resume_config, excerpts: list, out_root: Path, *, module: str) -> dict:
    """Run ``train(config, excerpts)`` straight through, and again stopped by Ctrl-C after step 2
    and resumed with ``resume_config`` (ignored: the checkpoint's own config must be used); assert
    the same losses and the same weights of ``module``. Returns the straight run's checkpoint."""
    straight = train(config, excerpts, out_dir=out_root / "straight")

    def stop_after_two(step, steps, loss, rate):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, excerpts, out_dir=out_root / "cut", progress=stop_after_two)
    resumed = train(resume_config, excerpts, out_dir=out_root / "cut", resume=True)
    assert resumed.losses == straight.losses and len(resumed.losses) == config.steps
    a = torch.load(out_root / "straight" / CHECKPOINT, weights_only=True)
    b = torch.load(out_root / "cut" / CHECKPOINT, weights_only=True)
    assert all(torch.equal(a[module][k], b[module][k]) for k in a[module])
    return a
