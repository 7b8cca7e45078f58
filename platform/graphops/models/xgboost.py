"""XGBoost boosters logged with MLflow's xgboost flavor (JSON or UBJSON): loaded, never unpickled.

xgboost is imported when such a model is loaded, not with this module. ``model(x)`` is the
booster's ``inplace_predict``: for ``binary:logistic`` the probability of the positive class
``(rows,)``, for ``multi:softprob`` ``(rows, classes)``, for regression the prediction.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graphops.errors import RegistryError, Where
from graphops.graph import ModelNode
from graphops.models._format import Artifacts, ModelFormat, register_format
from graphops.models._skops import flavor_file, missing_file, threads_for

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
"""Data files that would be unpickled: refused. JSON, UBJSON and legacy binary are parsed by XGBoost."""


class XGBoostModel:
    """An ``xgboost.Booster`` behind the numpy interface; ``.native`` is the booster."""

    def __init__(self, booster: Any) -> None:
        self.native = booster

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        """``inplace_predict`` on the first input, ``(rows, features)``."""
        x = np.asarray(arrays[0])
        return np.asarray(self.native.inplace_predict(x if x.ndim == 2 else x.reshape(len(x), -1)))


@register_format
class XGBoostFormat(ModelFormat):
    """MLflow's ``xgboost`` flavor: a booster file XGBoost parses itself.

    A model saved from an sklearn wrapper (``XGBClassifier``) is loaded as its booster: the
    wrapper is never rebuilt, so nothing is unpickled; ``model(x)`` returns what the booster
    predicts (class-1 probability for a binary classifier, not the label).
    """

    name = "xgboost"
    flavor = "xgboost"
    extra = "xgboost"
    modules = ("xgboost",)

    def pickled(self, artifacts: Artifacts) -> str | None:
        """The data file when it is a pickle (``.pkl``...); JSON, UBJSON and legacy binary are not."""
        path = flavor_file(artifacts, self.flavor or "")
        if path.suffix.lower() in PICKLE_SUFFIXES:
            return f"its data file {path.name}"
        return None

    def load(self, node: ModelNode, artifacts: Artifacts, *, gpu: bool) -> XGBoostModel:
        """Parse the booster file; ``nthread`` from the node's CPUs; ``device=cuda`` on a GPU."""
        import xgboost

        where: Where = {"node": node.name, "file": node.file, "line": node.line}
        path = flavor_file(artifacts, "xgboost")
        if not path.is_file():
            raise missing_file(artifacts, "xgboost", path, where)
        booster = xgboost.Booster()
        try:
            booster.load_model(str(path))
        except xgboost.core.XGBoostError as exc:
            raise RegistryError(
                f"{artifacts.uri}: XGBoost cannot read {path.name}: {str(exc).splitlines()[0]}",
                fix="Log the model with mlflow.xgboost.log_model (model_format 'ubj' or 'json') "
                "from an XGBoost version no newer than the one installed here.",
                **where,
            ) from exc
        booster.set_param({"nthread": threads_for(node), "device": "cuda" if gpu else "cpu"})
        return XGBoostModel(booster)
