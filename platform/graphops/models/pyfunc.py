"""Pickled models a platform team allowed: loaded through MLflow's ``python_function`` flavor.

Reached only for a model listed in ``models.pickle_allowed`` (`environment.yaml`); every other
model whose flavor loads by unpickling is refused by `graphops.models.detect`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graphops.graph import ModelNode
from graphops.models._format import Artifacts, ModelFormat, register_format


class PyfuncModel:
    """An MLflow pyfunc model behind the numpy interface: ``model(array) -> array``."""

    def __init__(self, pyfunc: Any) -> None:
        self.native = pyfunc

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        """``predict`` on the first input (pyfunc models take one table)."""
        return np.asarray(self.native.predict(np.asarray(arrays[0])))


@register_format
class PyfuncFormat(ModelFormat):
    """Any MLflow flavor, through ``mlflow.pyfunc.load_model``: only when pickle is allowed."""

    name = "pyfunc"
    flavor = "python_function"
    modules = ("mlflow",)

    def matches(self, artifacts: Artifacts) -> bool:
        """Never chosen by matching: `detect` falls back to it for an allowed pickled model."""
        return False

    def load(self, node: ModelNode, artifacts: Artifacts, *, gpu: bool) -> PyfuncModel:
        """MLflow's own loader (it unpickles what the flavor saved)."""
        import mlflow.pyfunc

        return PyfuncModel(mlflow.pyfunc.load_model(str(artifacts.directory)))
