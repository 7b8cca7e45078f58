"""scikit-learn models logged with MLflow's sklearn flavor in skops' format: no pickle loaded.

Only ``serialization_format="skops"`` (``model.skops``) loads without an opt-in, after skops'
trusted-types check; pickle and cloudpickle saves are refused unless a platform team allowed the
model. ``model(x)`` is ``predict_proba(x)`` when the estimator has it (``(rows, classes)``),
else ``predict(x)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from graphops.errors import Where
from graphops.graph import ModelNode
from graphops.models._format import Artifacts, ModelFormat, register_format
from graphops.models._skops import (
    SKOPS,
    flavor_file,
    load_skops,
    missing_file,
    normalise_skops,
    serialization,
    skops_refusal,
)


class SklearnModel:
    """A scikit-learn estimator behind the numpy interface; ``.native`` is the estimator."""

    def __init__(self, estimator: Any) -> None:
        self.native = estimator
        self._method = getattr(estimator, "predict_proba", None) or estimator.predict

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        """``predict_proba`` (or ``predict``) on the first input, ``(rows, features)``."""
        x = np.asarray(arrays[0])
        return np.asarray(self._method(x if x.ndim == 2 else x.reshape(len(x), -1)))


@register_format
class SklearnFormat(ModelFormat):
    """MLflow's ``sklearn`` flavor saved with skops, checked against skops' trusted types."""

    name = "sklearn"
    flavor = "sklearn"
    extra = "sklearn"
    modules = ("sklearn", "skops")

    def pickled(self, artifacts: Artifacts) -> str | None:
        """A pickle or cloudpickle save; for skops, the types it holds that nobody trusted."""
        path = flavor_file(artifacts, "sklearn", "pickled_model")
        if serialization(artifacts, "sklearn") != SKOPS:
            return f"its {serialization(artifacts, 'sklearn')} file {path.name}"
        return skops_refusal(artifacts, "sklearn", path)

    def load(self, node: ModelNode, artifacts: Artifacts, *, gpu: bool) -> SklearnModel:
        """``skops.io.load`` (a pickle save only when the platform team allowed the model)."""
        where: Where = {"node": node.name, "file": node.file, "line": node.line}
        path = flavor_file(artifacts, "sklearn", "pickled_model")
        if not path.is_file():
            raise missing_file(artifacts, "sklearn", path, where)
        if serialization(artifacts, "sklearn") != SKOPS:
            return SklearnModel(_unpickle(path))  # detect() let it through: opt-in granted
        return SklearnModel(load_skops(artifacts, path, where))

    def normalise(self, directory: Path) -> None:
        """A skops save: ids, array files and timestamps made stable (`normalise_skops`)."""
        artifacts = Artifacts.read(directory, "")
        path = flavor_file(artifacts, "sklearn", "pickled_model")
        if serialization(artifacts, "sklearn") == SKOPS and path.is_file():
            normalise_skops(path)


def _unpickle(path: Path) -> Any:
    import pickle

    with path.open("rb") as f:
        return pickle.load(f)
