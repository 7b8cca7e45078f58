"""Ranking metrics over ``(rows, candidates)`` scores and graded relevance."""

from __future__ import annotations

import numpy as np


def ndcg_at_10(scores: np.ndarray, relevance: np.ndarray) -> float:
    """Mean NDCG@10 (gain ``2**rel - 1``); rows without any relevant candidate count as 1.

    Both arguments are ``(rows, candidates)`` arrays: graphops hands metrics list columns dense.
    """
    s, rel = np.asarray(scores, dtype=float), np.asarray(relevance, dtype=float)
    k = min(10, s.shape[1])
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    gains = (2.0 ** np.take_along_axis(rel, order, axis=1) - 1.0) @ discounts
    ideal = (2.0 ** -np.sort(-rel, axis=1)[:, :k] - 1.0) @ discounts
    return float(np.mean(np.where(ideal > 0, gains / np.where(ideal > 0, ideal, 1.0), 1.0)))
