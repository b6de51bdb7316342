"""Batch-hard triplet loss (Hermans et al. 2017) on L2-normalised embeddings (METHOD 1.3)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fpforensics.defaults import DEFAULTS


@dataclass
class TripletStats:
    loss: torch.Tensor
    valid_fraction: float  # anchors that have at least one positive and one negative in the batch
    active_fraction: float  # valid anchors whose hardest triplet still violates the margin


def batch_hard_triplet(embeddings: torch.Tensor, labels: torch.Tensor,
                       margin: float = float(DEFAULTS["triplet_margin"])) -> TripletStats:
    """For each anchor: hardest positive (farthest same label), hardest negative (closest other label).

    Distances are Euclidean between L2-normalised embeddings (0..2), so the margin means the same
    thing whatever the embedding size, and matches the cosine similarity used for attribution.
    Anchors without a positive or without a negative are not valid triplets and are left out; the
    share of valid ones is reported (it is ~0 when models are drawn at random, 1 with P x K batches).
    """
    emb = F.normalize(embeddings.float(), dim=1)
    sq = (2.0 - 2.0 * emb @ emb.t()).clamp_min(0.0)
    dist = torch.sqrt(sq + 1e-12)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos_mask = same & ~eye
    neg_mask = ~same
    valid = pos_mask.any(dim=1) & neg_mask.any(dim=1)
    n = len(labels)
    if not bool(valid.any()):
        return TripletStats(embeddings.sum() * 0.0, 0.0, 0.0)
    hardest_pos = dist.masked_fill(~pos_mask, float("-inf")).max(dim=1).values
    hardest_neg = dist.masked_fill(~neg_mask, float("inf")).min(dim=1).values
    per_anchor = F.relu(hardest_pos - hardest_neg + margin)[valid]
    return TripletStats(per_anchor.mean(), float(valid.sum()) / n,
                        float((per_anchor > 0).sum()) / max(1, int(valid.sum())))
