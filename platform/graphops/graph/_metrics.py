"""Validation metrics over numpy columns, and the gates they must pass."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphops.errors import InputDataError
from graphops.graph._columns import dense_columns
from graphops.graph._settings import Metric, Validation


def _accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(predictions) == np.asarray(labels)))


def _mae(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(predictions, float) - np.asarray(labels, float))))


def _rmse(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(
        np.sqrt(np.mean((np.asarray(predictions, float) - np.asarray(labels, float)) ** 2))
    )


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for 0/1 ``labels`` (Mann-Whitney; ties count half).

    A ``(rows, 2)`` score array (``predict_proba``) is scored by its positive column.
    """
    s = np.asarray(scores, float)
    s = s[:, -1] if s.ndim == 2 else s.reshape(-1)
    positive = np.asarray(labels).reshape(-1).astype(bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise InputDataError(
            f"AUC needs both classes among the labels; got {n_pos} positive and {n_neg} negative.",
            fix="Validate on a dataset holding examples of both classes.",
        )
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts  # average ranks within ties
    ranks = (first + (counts + 1) / 2.0)[inverse]
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


BUILTIN_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": _accuracy,
    "auc": _auc,
    "mae": _mae,
    "rmse": _rmse,
}
"""Metrics usable by name in `Metric` without a custom ``fn``."""


@dataclass(frozen=True)
class MetricResult:
    """One computed metric and whether it passed its gate.

    ``reference`` is the same metric on the ``beats`` column, when the metric declares one.
    """

    metric: Metric
    value: float
    reference: float | None = None

    @property
    def passed(self) -> bool:
        """Whether the value lies within the min/max gate and beats the reference, if any."""
        low, high = self.metric.min, self.metric.max
        within = (low is None or self.value >= low) and (high is None or self.value <= high)
        if self.reference is None:
            return within
        better = (
            self.value > self.reference
            if self.metric.higher_is_better
            else self.value < self.reference
        )
        return within and better

    @property
    def gate(self) -> str:
        """The gate as text, e.g. ``">= 0.95"``; empty when the metric is informative only."""
        parts = []
        if self.metric.min is not None:
            parts.append(f">= {self.metric.min:g}")
        if self.metric.max is not None:
            parts.append(f"<= {self.metric.max:g}")
        if self.metric.beats is not None:
            sign = ">" if self.metric.higher_is_better else "<"
            shown = f" ({self.reference:.4f})" if self.reference is not None else ""
            parts.append(f"{sign} {self.metric.beats}{shown}")
        return " and ".join(parts)


def metric_function(metric: Metric) -> Callable[[Any, Any], float]:
    """The function computing ``metric``: its own ``fn`` or the built-in of that name."""
    return metric.fn or BUILTIN_METRICS[metric.name]


def evaluate(validation: Validation, columns: Mapping[str, np.ndarray]) -> list[MetricResult]:
    """Compute every metric of ``validation`` from output ``columns`` (which include the label).

    List columns reach metrics dense (see `dense_columns`): a metric over fixed-length lists gets
    a ``(rows, length)`` array, whichever runner produced the columns.
    """
    columns = dense_columns(columns)
    labels = columns[validation.label]
    out = []
    for m in validation.metrics:
        fn = metric_function(m)
        reference = None
        if m.beats is not None:
            if m.beats not in columns:
                raise InputDataError(
                    f'Metric "{m.name}" must beat the column "{m.beats}", which the validation '
                    f"data lacks (it has {', '.join(sorted(columns))}).",
                    fix=f'Add a "{m.beats}" column to the validation dataset, or drop beats=.',
                )
            reference = float(fn(columns[m.beats], labels))
        out.append(MetricResult(m, float(fn(columns[m.column], labels)), reference))
    return out
