"""SimCLR's projection head g(h) (Chen et al. 2020, section 2.1), shared by the self-supervised models.

The contrastive loss is taken on g(h), not on the representation h: the head absorbs what
the loss discards, and is used in training only (the shipped weights do not hold it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ProjectionHead"]


class ProjectionHead(nn.Module):
    """Linear, ReLU, linear, then unit length: (B, in_features) -> (B, out_features) float32.

    >>> [round(n, 5) for n in ProjectionHead(8, 16, 4)(torch.ones(2, 8)).norm(dim=1).tolist()]
    [1.0, 1.0]
    """

    def __init__(self, in_features: int, hidden_features: int, out_features: int):
        super().__init__()
        # One Sequential named net: the checkpoints' keys (net.0.*, net.2.*) depend on it.
        self.net = nn.Sequential(nn.Linear(in_features, hidden_features), nn.ReLU(inplace=True), nn.Linear(hidden_features, out_features))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(h).float(), dim=1)  # unit length, as NT-Xent wants
