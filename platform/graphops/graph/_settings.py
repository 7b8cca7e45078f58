"""Typed per-node and per-graph settings: resources, scaling, batching, validation."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import ConfigDict, Field, model_validator

from graphops._models import FrozenModel

MiB = 1024**2
"""One mebibyte in bytes, for ``Resources(memory=512 * MiB)``."""
GiB = 1024**3
"""One gibibyte in bytes, for ``Resources(memory=2 * GiB)``."""


class Resources(FrozenModel):
    """What one replica of a node (or of the stage it is fused into) reserves.

    These are what production gets; an environment without GPUs overrides them in its own config.
    """

    cpus: Annotated[float, Field(ge=0, description="Logical CPUs, fractions allowed.")] = 1.0
    gpus: Annotated[float, Field(ge=0, description="GPUs, fractions allowed.")] = 0.0
    memory: Annotated[
        int | None,
        Field(ge=0, description="Memory in bytes (use MiB/GiB), or None for no reservation."),
    ] = None

    @property
    def needs_gpu(self) -> bool:
        """Whether the node asks for any GPU."""
        return self.gpus > 0


class Scaling(FrozenModel):
    """How many replicas run a node's stage; bounds enable autoscaling."""

    replicas: Annotated[
        int, Field(ge=1, description="Replicas when autoscaling is off; initial otherwise.")
    ] = 1
    min_replicas: Annotated[int | None, Field(ge=0, description="Autoscaling lower bound.")] = None
    max_replicas: Annotated[int | None, Field(ge=1, description="Autoscaling upper bound.")] = None
    target_ongoing_requests: Annotated[
        float, Field(gt=0, description="Autoscaling target of in-flight requests per replica.")
    ] = 2.0
    offline_replicas: Annotated[
        int | None,
        Field(
            ge=1,
            description="Actors of the stage's pool in offline runs (Ray Data); None: one at "
            "first, growing to what the cluster's CPUs (or GPUs) hold, or the autoscaling bounds.",
        ),
    ] = None

    @model_validator(mode="after")
    def _bounds(self) -> Scaling:
        if (self.min_replicas is None) != (self.max_replicas is None):
            raise ValueError("set both min_replicas and max_replicas to autoscale, or neither")
        low, high = self.min_replicas, self.max_replicas
        if low is not None and high is not None and not low <= self.replicas <= high:
            raise ValueError(
                f"replicas={self.replicas} must lie within min_replicas={self.min_replicas} "
                f"and max_replicas={self.max_replicas}"
            )
        return self

    @property
    def autoscaling(self) -> bool:
        """Whether bounds were given."""
        return self.max_replicas is not None


OFFLINE_BATCH_ROWS = 1024
"""Default rows per offline batch of a model node: large batches, since no request waits."""


class Batching(FrozenModel):
    """Dynamic batching of a model node: concurrent requests are grouped up to a size.

    Online, a request to an idle model runs at once; requests that arrive while a batch runs
    form the next batch, which may wait ``max_wait_ms`` (from its oldest request) to fill.
    """

    max_batch_size: Annotated[
        int, Field(ge=1, description="Largest batch handed to the model.")
    ] = 32
    max_wait_ms: Annotated[
        float,
        Field(
            ge=0,
            description="Under load only, longest a batch waits to fill, in milliseconds from its "
            "oldest request (an idle model never waits).",
        ),
    ] = 5.0
    offline_batch_size: Annotated[
        int | None,
        Field(
            ge=1,
            description="Rows per batch in offline runs (Ray Data), where no request waits for "
            "a batch to fill; None: the larger of max_batch_size and OFFLINE_BATCH_ROWS (1024).",
        ),
    ] = None

    @property
    def offline_rows(self) -> int:
        """Rows per batch the offline runtime hands this model."""
        return self.offline_batch_size or max(self.max_batch_size, OFFLINE_BATCH_ROWS)


_METRIC_NAME = re.compile(r"^[A-Za-z0-9_\-. :/]+$")

MetricFn = Callable[[Any, Any], float]
"""A user metric: ``fn(predictions, labels) -> float`` over numpy arrays."""


class Metric(FrozenModel):
    """A validation metric over one predicted column, with the gate it must pass."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    name: Annotated[
        str, Field(description="Built-in metric name (accuracy, auc, mae, rmse) or a label.")
    ]
    column: Annotated[str, Field(description="Output column holding the predictions.")]
    fn: Annotated[
        MetricFn | None,
        Field(description="Custom fn(predictions, labels) -> float; None for a built-in."),
    ] = None
    min: Annotated[float | None, Field(description="Gate: the value must be at least this.")] = None
    max: Annotated[float | None, Field(description="Gate: the value must be at most this.")] = None
    tolerance: Annotated[
        float,
        Field(
            ge=0,
            description="Largest regression allowed against the version pinned in an environment "
            "(absolute; direction from the gate: higher is better with min, lower with max).",
        ),
    ] = 0.0
    beats: Annotated[
        str | None,
        Field(
            description="Column of the validation dataset holding a reference's predictions "
            "(e.g. a popularity ranking): the gate also requires this metric to be strictly "
            "better on `column` than on that column."
        ),
    ] = None

    @property
    def higher_is_better(self) -> bool:
        """Direction of the metric: lower is better only when the gate is a bare ``max``."""
        return not (self.max is not None and self.min is None)

    @model_validator(mode="after")
    def _known(self) -> Metric:
        if not _METRIC_NAME.fullmatch(self.name):
            raise ValueError(
                f'Got "{self.name}" for name. Metric names are recorded in MLflow, which allows '
                "only letters, digits and _ - . : / and spaces (e.g. ndcg_at_10)"
            )
        builtins = (
            "accuracy",
            "auc",
            "mae",
            "rmse",
        )  # kept in step with _metrics.BUILTIN_METRICS (tested)
        if self.fn is None and self.name not in builtins:
            raise ValueError(
                f'Got "{self.name}" for name, which is no built-in metric ({", ".join(builtins)}). '
                "Pass fn=your_function(predictions, labels) -> float for a custom metric"
            )
        return self


class ConversionTolerance(FrozenModel):
    """How closely a converted model (e.g. torch -> ONNX) must answer like its original.

    Checked on the graph's validation data by `graphops export onnx` and by validation, for a
    model node pinned to a version converted from another (model version tag
    ``graphops.converted_from``).
    """

    max_abs_diff: Annotated[
        float,
        Field(
            ge=0,
            description="Largest absolute difference allowed between the two models' outputs, "
            "over every element of every validation row.",
        ),
    ] = 1e-4
    min_label_agreement: Annotated[
        float,
        Field(
            ge=0,
            le=1,
            description="Smallest share of validation rows whose label must agree: the argmax "
            "over the last axis for outputs of two or more dimensions; for 1-D outputs, values "
            "equal within max_abs_diff.",
        ),
    ] = 0.999


class Validation(FrozenModel):
    """How a graph is validated offline: data, labels, metrics and gates."""

    dataset: Annotated[
        Path,
        Field(
            description="Validation data (Parquet or JSON lines), relative to the graph package."
        ),
    ]
    label: Annotated[str, Field(description="Column of the dataset holding the true labels.")]
    metrics: Annotated[
        tuple[Metric, ...], Field(description="Metrics to compute, with their gates.")
    ] = ()
    parity_tolerance: Annotated[
        float,
        Field(
            ge=0,
            description="Largest absolute difference allowed between online (Serve) and offline "
            "answers for float response fields; other fields must be equal.",
        ),
    ] = 1e-5
    conversion: Annotated[
        ConversionTolerance,
        Field(
            description="Tolerance of a converted model against its original (max_abs_diff, "
            "min_label_agreement), proved on this validation data.",
        ),
    ] = ConversionTolerance()
