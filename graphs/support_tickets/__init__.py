"""support_tickets: route a ticket to a queue. normalize text -> tiny BERT (MLflow) -> queue + confidence."""

from __future__ import annotations

from typing import Annotated, TypedDict

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from graphops import Batching, Graph, Metric, Model, Resources, Validation, model, node

from .data import QUEUES

MAX_CHARS = 1000
"""Longest ticket text a request may hold (the model reads its first tokens only)."""


class TicketRequest(BaseModel):
    """One support ticket's text."""

    model_config = ConfigDict(extra="forbid")

    text: Annotated[
        str,
        Field(
            min_length=1, max_length=MAX_CHARS, description="The ticket as the customer wrote it."
        ),
    ]


class TicketResponse(BaseModel):
    """The queue the ticket goes to and the model's confidence in it."""

    queue: Annotated[str, Field(description=f"One of: {', '.join(QUEUES)}.")]
    confidence: Annotated[float, Field(ge=0, le=1, description="Softmax probability of the queue.")]


@node(resources=Resources(cpus=0.25))
def normalized(text: np.ndarray) -> np.ndarray:
    """Collapse whitespace and lowercase (the tokenizer lowercases too; this keeps logs tidy)."""
    return np.array([" ".join(str(t).split()).lower() for t in text], dtype=object)


@model(
    "models:/support_tickets@champion",
    batching=Batching(max_batch_size=32, max_wait_ms=5),
    resources=Resources(cpus=0.5),
)
def logits(normalized: np.ndarray, model: Model) -> np.ndarray:
    """Queue logits from the registered tokenizer + classifier."""
    return model(normalized)


class Routing(TypedDict):
    """Output columns of `routing`."""

    queue: np.ndarray
    confidence: np.ndarray


@node(resources=Resources(cpus=0.25))
def routing(logits: np.ndarray) -> Routing:
    """The most likely queue and its softmax probability."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = shifted / shifted.sum(axis=1, keepdims=True)
    return {
        "queue": np.asarray(QUEUES, dtype=object)[probs.argmax(axis=1)],
        "confidence": probs.max(axis=1),
    }


graph = Graph(
    name="support_tickets",
    version="1.0.0",
    description="Support ticket router (synthetic tickets, WordPiece tokenizer + tiny BERT trained here).",
    request=TicketRequest,
    response=TicketResponse,
    nodes=[normalized, logits, routing],
    validation=Validation(
        dataset="validation.parquet",
        label="true_queue",
        metrics=[Metric(name="accuracy", column="queue", min=0.9)],
    ),
)
