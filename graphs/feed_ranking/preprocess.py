"""Preprocessing shared by the graph's node and training: feature crosses and normalization."""

from __future__ import annotations

import numpy as np

TENURE_SCALE = 365.0
ACTIVITY_SCALE = 10.0
AGE_SCALE = 30.0
POPULARITY_SCALE = 5.0


def pair_features(
    member_topics: np.ndarray,
    member_activity: np.ndarray,
    member_tenure_days: np.ndarray,
    item_topics: np.ndarray,
    item_quality: np.ndarray,
    item_popularity: np.ndarray,
    item_age_days: np.ndarray,
) -> np.ndarray:
    """``(rows, candidates, 3 * topics + 7)`` float32 inputs of the ranker.

    Member columns are ``(rows, ...)``, item columns ``(rows, candidates, ...)``; member features
    are broadcast to every candidate. Crosses: the topic-wise product and its sum (the dot
    product of taste and topic mix), and popularity x activity.
    """
    candidates = item_topics.shape[1]
    member = np.repeat(member_topics[:, None, :], candidates, axis=1)
    cross = member * item_topics
    activity = np.log1p(np.asarray(member_activity, np.float32)) / np.log1p(ACTIVITY_SCALE)
    activity = np.repeat(activity[:, None], candidates, axis=1)
    tenure = np.repeat((member_tenure_days / TENURE_SCALE)[:, None], candidates, axis=1)
    popularity = item_popularity / POPULARITY_SCALE
    scalars = np.stack(
        [
            cross.sum(-1),
            item_quality,
            popularity,
            item_age_days / AGE_SCALE,
            activity,
            tenure,
            popularity * activity,
        ],
        axis=-1,
    )
    return np.concatenate([cross, member, item_topics, scalars], axis=-1).astype(np.float32)
