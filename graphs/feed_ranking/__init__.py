"""feed_ranking: rank a member's candidate items. features -> crosses -> ranker (MLflow) -> top-k."""

from __future__ import annotations

from typing import Annotated, TypedDict

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from graphops import (
    Batching,
    Feature,
    FeatureTable,
    Graph,
    Metric,
    Resources,
    TorchModel,
    Validation,
    lookup,
    model,
    node,
)

from .data import TOPICS
from .metrics import ndcg_at_10
from .network import RankerNet
from .preprocess import pair_features

TOP_K = 10


class RankingRequest(BaseModel):
    """A member and the candidate items to rank for them."""

    model_config = ConfigDict(extra="forbid")

    member_id: Annotated[int, Field(ge=0, description="The member to rank for.")]
    candidate_ids: Annotated[
        list[Annotated[int, Field(ge=0)]],
        Field(min_length=1, max_length=500, description="Candidate item ids, any order."),
    ]


class RankingResponse(BaseModel):
    """Scores of every candidate (request order) and the top-k items, best first."""

    scores: Annotated[list[float], Field(description="Engagement logit per candidate.")]
    top_items: Annotated[list[int], Field(description=f"Up to {TOP_K} item ids, best first.")]
    top_scores: Annotated[list[float], Field(description="Their scores, descending.")]


MEMBERS = FeatureTable(
    name="members",
    key="member_id",
    source="features/members.parquet",
    features={
        "topics": Feature(dtype="float32", shape=(TOPICS,), default=0.0),
        "activity": Feature(dtype="float32", default=0.0),
        "tenure_days": Feature(dtype="float32", default=0.0),
    },
)
ITEMS = FeatureTable(
    name="items",
    key="item_id",
    source="features/items.parquet",
    features={
        "topics": Feature(dtype="float32", shape=(TOPICS,), default=0.0),
        "quality": Feature(dtype="float32", default=0.0),
        "popularity": Feature(dtype="float32", default=0.0),
        "age_days": Feature(dtype="float32", default=30.0),
    },
)

member_features = lookup(
    "member_features",
    table=MEMBERS,
    key="member_id",
    prefix="member_",
    timeout_ms=50,
    resources=Resources(cpus=0.25),
)
item_features = lookup(
    "item_features",
    table=ITEMS,
    key="candidate_ids",
    prefix="item_",
    timeout_ms=50,
    resources=Resources(cpus=0.25),
)


# The ranker's inputs, built by the very function training uses (no forwarding wrapper needed).
pairs = node(pair_features, name="pairs", resources=Resources(cpus=0.25))


@model(
    "models:/feed_ranking@champion",
    architecture=RankerNet,
    batching=Batching(max_batch_size=32, max_wait_ms=2),
    resources=Resources(cpus=0.5),
)
def scores(pairs: np.ndarray, model: TorchModel) -> np.ndarray:
    """One engagement logit per candidate: ``(rows, candidates)``."""
    return model(pairs)


class Ranking(TypedDict):
    """Output columns of `ranking`."""

    top_items: np.ndarray
    top_scores: np.ndarray


@node(resources=Resources(cpus=0.25))
def ranking(scores: np.ndarray, candidate_ids: np.ndarray) -> Ranking:
    """The best ``TOP_K`` candidates per row, best first (ties: earlier candidate first)."""
    k = min(TOP_K, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return {
        "top_items": np.take_along_axis(np.asarray(candidate_ids), order, axis=1),
        "top_scores": np.take_along_axis(scores, order, axis=1),
    }


graph = Graph(
    name="feed_ranking",
    version="1.0.1",
    description="Personalized feed ranking: member + item features, crosses, torch ranker, top-k.",
    request=RankingRequest,
    response=RankingResponse,
    nodes=[member_features, item_features, pairs, scores, ranking],
    validation=Validation(
        dataset="validation.parquet",
        label="relevance",
        metrics=[
            Metric(
                name="ndcg_at_10",
                column="scores",
                fn=ndcg_at_10,
                min=0.7,
                beats="popularity_scores",
            )
        ],
        parity_tolerance=1e-4,
    ),
)
