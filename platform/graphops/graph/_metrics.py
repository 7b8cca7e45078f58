"""Validation metrics over numpy columns, and the gates they must pass."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphops.graph._settings import Metric, Validation


def _accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(predictions) == np.asarray(labels)))


def _mae(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(predictions, float) - np.asarray(labels, float))))


def _rmse(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(
        np.sqrt(np.mean((np.asarray(predictions, float) - np.asarray(labels, float)) ** 2))
    )


BUILTIN_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": _accuracy,
    "mae": _mae,
    "rmse": _rmse,
}
"""Metrics usable by name in `Metric` without a custom ``fn``."""


@dataclass(frozen=True)
class MetricResult:
    """One computed metric and whether it passed its gate."""

    metric: Metric
    value: float

    @property
    def passed(self) -> bool:
        """Whether the value lies within the metric's min/max gate."""
        low, high = self.metric.min, self.metric.max
        return (low is None or self.value >= low) and (high is None or self.value <= high)

    @property
    def gate(self) -> str:
        """The gate as text, e.g. ``">= 0.95"``; empty when the metric is informative only."""
        parts = []
        if self.metric.min is not None:
            parts.append(f">= {self.metric.min:g}")
        if self.metric.max is not None:
            parts.append(f"<= {self.metric.max:g}")
        return " and ".join(parts)


def metric_function(metric: Metric) -> Callable[[Any, Any], float]:
    """The function computing ``metric``: its own ``fn`` or the built-in of that name."""
    return metric.fn or BUILTIN_METRICS[metric.name]


def evaluate(validation: Validation, columns: Mapping[str, np.ndarray]) -> list[MetricResult]:
    """Compute every metric of ``validation`` from output ``columns`` (which include the label)."""
    labels = columns[validation.label]
    return [
        MetricResult(m, float(metric_function(m)(columns[m.column], labels)))
        for m in validation.metrics
    ]
