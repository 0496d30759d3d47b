"""NT-Xent, the contrastive loss of SimCLR, with the extra negatives of Yakura et al.

Chen, Kornblith, Norouzi and Hinton, "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020, eq. (1): for a batch of N items seen twice (2N views), each
view's positive is the other view of its item and its negatives are the 2N - 2 other views:

    l(i, j) = -log( exp(sim(z_i, z_j) / t) / sum_{k != i} exp(sim(z_i, z_k) / t) )

averaged over all 2N anchors, with sim the cosine similarity and t the temperature.

Yakura, Watanabe and Goto, "Self-Supervised Contrastive Learning for Singing Voices",
IEEE/ACM TASLP 30 (2022): a pitch-shifted (or time-stretched) copy of an item is added as an
*extra negative*, so the embedding must tell a voice from the same voice transposed (the
formants moved: timbre) or sung at another speed (expression). Extra negatives join every
anchor's denominator and are never anchors themselves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["NTXentLoss"]


class NTXentLoss(nn.Module):
    """Normalised temperature-scaled cross entropy over two views, plus optional extra negatives.

    Parameters
    ----------
    temperature : float
        t in eq. (1); SimCLR's 0.1 (section B.9: lower is better with a normalised output).

    Examples
    --------
    >>> z = torch.eye(3)  # three items, orthogonal, each seen twice identically
    >>> round(float(NTXentLoss(0.1)(z, z)), 5)  # log(1 + 4 e^-10): the positive dominates
    0.00018
    """

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        self.temperature = temperature

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor, extra_negatives: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Mean loss over the 2N anchors.

        Parameters
        ----------
        z_a, z_b : torch.Tensor, shape (N, D)
            The two views' projections, unit length; row i of both is item i.
        extra_negatives : list of torch.Tensor, each (M, D), optional
            Unit-length projections that are a negative of every anchor (the transformed copies).

        Returns
        -------
        torch.Tensor, scalar
        """
        n = z_a.shape[0]
        anchors = torch.cat([z_a, z_b])  # (2N, D)
        candidates = torch.cat([anchors, *(extra_negatives or [])])  # (2N + M, D)
        logits = anchors @ candidates.T / self.temperature  # (2N, 2N + M)
        self_mask = torch.eye(2 * n, candidates.shape[0], dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(self_mask, float("-inf"))  # a view is not its own negative
        positives = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(logits.device)  # (2N,)
        return F.cross_entropy(logits, positives)
