"""The three graph shapes of the scale benchmark's monorepo, as templates of ``__init__.py``.

Taken from the repository's own graphs: fraud's lookup -> features -> model -> decision
(``lookup``), two models blended (``blend``), a model then post-processing (``topk``). The
placeholders are filled per graph by `benchmarks._monorepo.write_graph`.
"""

from __future__ import annotations

SHAPES = ("lookup", "blend", "topk")

_LOOKUP = '''"""{name}: lookup -> features -> classifier -> decision (a fraud-like shape)."""

from __future__ import annotations

from typing import Annotated, TypedDict

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from graphops import (
    Batching, Feature, FeatureTable, Graph, Metric, Model, Resources, Validation, lookup,
    model, node,
)

THRESHOLD = {threshold}


class Request(BaseModel):
    """One event to score."""

    model_config = ConfigDict(extra="forbid")

    account_id: Annotated[int, Field(ge=0, description="The account.")]
    amount: Annotated[float, Field(gt=0, description="Amount.")]
    hour: Annotated[int, Field(ge=0, le=23, description="Hour.")]


class Response(BaseModel):
    """Score and decision."""

    score: Annotated[float, Field(description="Probability.")]
    flagged: Annotated[bool, Field(description="score >= THRESHOLD.")]


ACCOUNTS = FeatureTable(
    name="accounts",
    key="account_id",
    source="accounts.parquet",
    features={{"avg": Feature(dtype="float32", default=0.0)}},
)
account = lookup(
    "account", table=ACCOUNTS, key="account_id", prefix="account_", timeout_ms=50,
    resources=Resources(cpus={cpus}),
)


@node(resources=Resources(cpus={cpus}))
def features(amount: np.ndarray, hour: np.ndarray, account_avg: np.ndarray) -> np.ndarray:
    """``(rows, 4)`` float32 inputs of the classifier."""
    a = np.asarray(amount, np.float64)
    h = np.asarray(hour, np.float64)
    avg = np.asarray(account_avg, np.float64)
    return np.stack([np.log1p(a), h / 23.0, np.log1p(avg), a / np.maximum(avg, 1.0)], 1).astype(
        np.float32
    )


@model("models:/{model}@champion", batching=Batching(max_batch_size={batch}, max_wait_ms=2),
       resources=Resources(cpus={cpus}))
def score(features: np.ndarray, model: Model) -> np.ndarray:
    """Probability of the positive class."""
    return np.asarray(model(features))[:, 1]


class Decision(TypedDict):
    """Output of `decision`."""

    flagged: np.ndarray


@node(resources=Resources(cpus={cpus}))
def decision(score: np.ndarray) -> Decision:
    """Flag scores at or above THRESHOLD."""
    return {{"flagged": np.asarray(score) >= THRESHOLD}}


graph = Graph(
    name="{name}",
    version="{version}",
    description="Synthetic {shape} graph of the scale benchmark.",
    request=Request,
    response=Response,
    nodes=[account, features, score, decision],
    validation=Validation(
        dataset="validation.parquet", label="truth", metrics=[Metric(name="auc", column="score")]
    ),
)
'''

_BLEND = '''"""{name}: features -> two classifiers -> blend (a two-model shape)."""

from __future__ import annotations

from typing import Annotated, TypedDict

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from graphops import Batching, Graph, Metric, Model, Resources, Validation, model, node

WEIGHT = {threshold}


class Request(BaseModel):
    """Four measurements."""

    model_config = ConfigDict(extra="forbid")

    x: Annotated[list[float], Field(min_length=4, max_length=4, description="Inputs.")]


class Response(BaseModel):
    """The blended score."""

    blended: Annotated[float, Field(description="Weighted mean of both scores.")]


@node(resources=Resources(cpus={cpus}))
def features(x: np.ndarray) -> np.ndarray:
    """``(rows, 4)`` float32."""
    return np.asarray(x, np.float32).reshape(-1, 4)


@model("models:/scale_a@champion", batching=Batching(max_batch_size={batch}, max_wait_ms=2),
       resources=Resources(cpus={cpus}))
def first(features: np.ndarray, model: Model) -> np.ndarray:
    """First classifier's probability."""
    return np.asarray(model(features))[:, 1]


@model("models:/scale_b@champion", resources=Resources(cpus={cpus}))
def second(features: np.ndarray, model: Model) -> np.ndarray:
    """Second classifier's probability."""
    return np.asarray(model(features))[:, 1]


class Blend(TypedDict):
    """Output of `blend`."""

    blended: np.ndarray


@node(resources=Resources(cpus={cpus}))
def blend(first: np.ndarray, second: np.ndarray) -> Blend:
    """WEIGHT * first + (1 - WEIGHT) * second."""
    return {{"blended": WEIGHT * np.asarray(first) + (1 - WEIGHT) * np.asarray(second)}}


graph = Graph(
    name="{name}",
    version="{version}",
    description="Synthetic {shape} graph of the scale benchmark.",
    request=Request,
    response=Response,
    nodes=[features, first, second, blend],
    validation=Validation(
        dataset="validation.parquet", label="truth", metrics=[Metric(name="auc", column="blended")]
    ),
)
'''

_TOPK = '''"""{name}: features -> classifier -> calibrated label (a post-processing shape)."""

from __future__ import annotations

from typing import Annotated, TypedDict

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from graphops import Graph, Metric, Model, Resources, Scaling, Validation, model, node

TEMPERATURE = {threshold}


class Request(BaseModel):
    """Four measurements."""

    model_config = ConfigDict(extra="forbid")

    x: Annotated[list[float], Field(min_length=4, max_length=4, description="Inputs.")]


class Response(BaseModel):
    """Calibrated probability and label."""

    probability: Annotated[float, Field(description="Tempered probability.")]
    label: Annotated[int, Field(description="1 when probability >= 0.5.")]


@node(resources=Resources(cpus={cpus}))
def features(x: np.ndarray) -> np.ndarray:
    """``(rows, 4)`` float32."""
    return np.asarray(x, np.float32).reshape(-1, 4)


@model("models:/{model}@champion", resources=Resources(cpus={cpus}),
       scaling=Scaling(min_replicas=1, max_replicas={replicas}))
def raw(features: np.ndarray, model: Model) -> np.ndarray:
    """Probability of the positive class."""
    return np.asarray(model(features))[:, 1]


class Calibrated(TypedDict):
    """Output of `calibrate`."""

    probability: np.ndarray
    label: np.ndarray


@node(resources=Resources(cpus={cpus}))
def calibrate(raw: np.ndarray) -> Calibrated:
    """Temper the logit, then threshold."""
    p = np.clip(np.asarray(raw, np.float64), 1e-6, 1 - 1e-6)
    q = 1 / (1 + np.exp(-np.log(p / (1 - p)) / TEMPERATURE))
    return {{"probability": q, "label": (q >= 0.5).astype(np.int64)}}


graph = Graph(
    name="{name}",
    version="{version}",
    description="Synthetic {shape} graph of the scale benchmark.",
    request=Request,
    response=Response,
    nodes=[features, raw, calibrate],
    validation=Validation(
        dataset="validation.parquet", label="truth",
        metrics=[Metric(name="auc", column="probability")],
    ),
)
'''
TEMPLATES = {"lookup": _LOOKUP, "blend": _BLEND, "topk": _TOPK}
