"""digits: classify 8x8 handwritten digits. normalize pixels -> DigitsNet (MLflow) -> label + confidence."""

from __future__ import annotations

from typing import Annotated, TypedDict

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from graphops import Batching, Graph, Metric, Resources, TorchModel, Validation, model, node

from .network import DigitsNet


class DigitsRequest(BaseModel):
    """One 8x8 grayscale image, row by row."""

    model_config = ConfigDict(extra="forbid")

    pixels: Annotated[
        list[Annotated[float, Field(ge=0, le=16)]],
        Field(
            min_length=64,
            max_length=64,
            description="64 pixel intensities, 0 (white) to 16 (black).",
        ),
    ]


class DigitsResponse(BaseModel):
    """The predicted digit and the model's confidence in it."""

    label: Annotated[int, Field(ge=0, le=9, description="Predicted digit.")]
    confidence: Annotated[float, Field(ge=0, le=1, description="Softmax probability of the label.")]


@node(resources=Resources(cpus=0.5))
def features(pixels: np.ndarray) -> np.ndarray:
    """Scale pixel intensities from 0..16 to 0..1."""
    return pixels.astype(np.float32) / 16.0


@model(
    "models:/digits@champion",
    architecture=DigitsNet,
    batching=Batching(max_batch_size=64, max_wait_ms=5),
    resources=Resources(cpus=1, gpus=1),
)
def logits(features: np.ndarray, model: TorchModel) -> np.ndarray:
    """Class logits from the registered classifier."""
    return model(features)


class Prediction(TypedDict):
    """Output columns of `prediction`."""

    label: np.ndarray
    confidence: np.ndarray


@node(resources=Resources(cpus=0.5))
def prediction(logits: np.ndarray) -> Prediction:
    """Most likely digit and its softmax probability."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = shifted / shifted.sum(axis=1, keepdims=True)
    return {"label": probs.argmax(axis=1), "confidence": probs.max(axis=1)}


graph = Graph(
    name="digits",
    version="1.0.0",
    description="Handwritten digit classifier (scikit-learn digits, torch MLP).",
    request=DigitsRequest,
    response=DigitsResponse,
    nodes=[features, logits, prediction],
    validation=Validation(
        dataset="validation.parquet",
        label="digit",
        metrics=[Metric(name="accuracy", column="label", min=0.95)],
    ),
)
