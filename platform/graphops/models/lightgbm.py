"""LightGBM models logged with MLflow's lightgbm flavor: a text Booster, or skops, never pickle.

A ``lightgbm.Booster`` is saved as LightGBM's text model (``model.lgb``). A scikit-learn-API
model (``LGBMClassifier``...) is saved by MLflow 3.17 with skops (``model.skops``, checked like
the sklearn format) or, when asked, pickled (``model.pkl``: refused unless a platform team allowed
it). ``model(x)`` is the booster's ``predict``: for a binary objective the probability of the
positive class ``(rows,)``, for multiclass ``(rows, classes)``, for regression the value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from graphops.errors import RegistryError, Where
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
    threads_for,
)

TEXT_SUFFIXES = (".lgb", ".txt")


class LightGBMModel:
    """A ``lightgbm.Booster`` behind the numpy interface; ``.native`` is the booster."""

    def __init__(self, booster: Any, threads: int) -> None:
        self.native = booster
        self.threads = threads

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        """``Booster.predict`` on the first input, ``(rows, features)``."""
        x = np.asarray(arrays[0])
        x = x if x.ndim == 2 else x.reshape(len(x), -1)
        return np.asarray(self.native.predict(x, num_threads=self.threads))


@register_format
class LightGBMFormat(ModelFormat):
    """MLflow's ``lightgbm`` flavor: LightGBM's text model, or an sklearn-API model in skops."""

    name = "lightgbm"
    flavor = "lightgbm"
    extra = "lightgbm"
    modules = ("lightgbm",)

    def pickled(self, artifacts: Artifacts) -> str | None:
        """A pickled sklearn-API model's file; for skops, the types it holds nobody trusted."""
        path = flavor_file(artifacts, "lightgbm")
        if path.suffix.lower() in TEXT_SUFFIXES:
            return None
        if serialization(artifacts, "lightgbm") == SKOPS:
            return skops_refusal(artifacts, "lightgbm", path)
        return f"its data file {path.name} (a scikit-learn-API LightGBM model)"

    def load(self, node: ModelNode, artifacts: Artifacts, *, gpu: bool) -> LightGBMModel:
        """The text model with ``lightgbm.Booster(model_file=...)``; a skops save's booster."""
        import lightgbm

        where: Where = {"node": node.name, "file": node.file, "line": node.line}
        path = flavor_file(artifacts, "lightgbm")
        if not path.is_file():
            raise missing_file(artifacts, "lightgbm", path, where)
        if path.suffix.lower() not in TEXT_SUFFIXES:
            if serialization(artifacts, "lightgbm") == SKOPS:
                estimator = load_skops(artifacts, path, where)
            else:  # detect() let a pickle through: a platform team allowed this model
                import pickle

                with path.open("rb") as f:
                    estimator = pickle.load(f)
            return LightGBMModel(estimator.booster_, threads_for(node))
        try:
            booster = lightgbm.Booster(model_file=str(path))
        except lightgbm.basic.LightGBMError as exc:
            raise RegistryError(
                f"{artifacts.uri}: LightGBM cannot read {path.name}: {exc}",
                fix="Log a lightgbm.Booster with mlflow.lightgbm.log_model (saved as text).",
                **where,
            ) from exc
        return LightGBMModel(booster, threads_for(node))

    def normalise(self, directory: Path) -> None:
        """An sklearn-API model saved with skops: made stable (`normalise_skops`)."""
        path = flavor_file(Artifacts.read(directory, ""), "lightgbm")
        if path.suffix == ".skops" and path.is_file():
            normalise_skops(path)
