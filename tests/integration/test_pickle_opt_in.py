"""Pickled models: refused unless a platform team allowed them (`models.pickle_allowed`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from graphops import Model, RegistryError, model
from graphops.environments import pickle_allowed
from graphops.graph import ModelNode
from graphops.registry import Registry, ResolvedModel, load_pinned

NAME = "legacy_churn"

LOG = """
import sys

import mlflow
import numpy as np
from sklearn.linear_model import LogisticRegression


class Doubler(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):
        return np.asarray(model_input) * 2


rng = np.random.default_rng(0)
x = rng.random((80, 3))
estimator = LogisticRegression().fit(x, (x[:, 0] > 0.5).astype(int))
with mlflow.start_run():
    mlflow.sklearn.log_model(estimator, name="model", registered_model_name="legacy_churn",
                             serialization_format="cloudpickle", pip_requirements=["scikit-learn"])
    mlflow.pyfunc.log_model(name="doubler", python_model=Doubler(),
                            registered_model_name="custom_doubler", pip_requirements=["numpy"])
np.save(sys.argv[1], x)
"""
"""A team's own script (no graphops): a cloudpickled sklearn model and a custom Python model."""


@pytest.fixture(scope="module")
def logged(
    registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> tuple[LogisticRegression, np.ndarray]:
    """What the script logged (in its own process: MLflow's global tracking URI stays there)."""
    folder = tmp_path_factory.mktemp("pickled")
    done = subprocess.run(
        [sys.executable, "-c", LOG, str(folder / "x.npy")],
        env=os.environ | {"MLFLOW_TRACKING_URI": registry.tracking_uri},
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    x = np.load(folder / "x.npy")
    estimator = LogisticRegression().fit(x, (x[:, 0] > 0.5).astype(int))  # the script's fit
    return estimator, x


@pytest.fixture(scope="module")
def churn_node() -> ModelNode:
    def churn(features: np.ndarray, model: Model) -> np.ndarray:
        return model(features)

    return model(f"models:/{NAME}/1")(churn)


def test_a_pickled_model_is_refused_naming_model_flavor_and_opt_in(
    registry: Registry, logged: object, churn_node: ModelNode
) -> None:
    with pytest.raises(RegistryError) as info:
        registry.resolve(f"models:/{NAME}/1")
    text = str(info.value)
    assert f"models:/{NAME}/1" in text and '"sklearn" flavor' in text and "cloudpickle" in text
    assert f'add "{NAME}" to models.pickle_allowed' in text
    # Nothing was trusted on the way: no digest recorded for a model that was refused.
    assert "graphops.digest" not in registry.client.get_model_version(NAME, "1").tags
    with pytest.raises(RegistryError, match=r"models\.pickle_allowed"):
        registry.load(churn_node)


def test_an_allowed_pickled_model_loads_by_its_format_and_is_reported(
    registry: Registry,
    logged: tuple[LogisticRegression, np.ndarray],
    churn_node: ModelNode,
) -> None:
    estimator, x = logged
    allowed = Registry(registry.work_dir, registry.tracking_uri, pickle_allowed=[NAME])
    pin = allowed.resolve(f"models:/{NAME}/1")
    assert allowed.formats[pin.uri] == "sklearn (unpickled: models.pickle_allowed)"
    loaded = allowed.load(churn_node, pin)
    # The same answers as the model saved safely (skops): the sklearn format's probabilities.
    np.testing.assert_allclose(loaded(x), estimator.predict_proba(x))
    # A worker (no tracking client) needs the same grant, which the spec carries.
    with pytest.raises(RegistryError, match=r"models\.pickle_allowed"):
        load_pinned(churn_node, pin, registry.tracking_uri)
    worker = load_pinned(churn_node, pin, registry.tracking_uri, pickle_allowed=True)
    np.testing.assert_allclose(worker(x), estimator.predict_proba(x))
    assert isinstance(pin, ResolvedModel) and pin.digest.startswith("sha256:")


def test_a_custom_python_model_loads_through_mlflow_only_when_allowed(
    registry: Registry, logged: object
) -> None:
    with pytest.raises(RegistryError, match='"python_function" flavor') as info:
        registry.resolve("models:/custom_doubler/1")
    assert 'add "custom_doubler" to models.pickle_allowed' in str(info.value)
    allowed = Registry(registry.work_dir, registry.tracking_uri, pickle_allowed=["custom_doubler"])
    pin = allowed.resolve("models:/custom_doubler/1")
    assert allowed.formats[pin.uri] == "pyfunc (unpickled: models.pickle_allowed)"

    def doubled(features: np.ndarray, model: Model) -> np.ndarray:
        return model(features)

    loaded = allowed.load(model("models:/custom_doubler/1")(doubled), pin)
    np.testing.assert_array_equal(loaded(np.arange(4.0)), np.arange(4.0) * 2)


def test_the_grant_is_read_from_the_base_environment(tmp_path: Path) -> None:
    assert pickle_allowed(tmp_path) == ()
    base = tmp_path / "environments" / "base"
    base.mkdir(parents=True)
    (base / "environment.yaml").write_text(f"models:\n  pickle_allowed: [{NAME}]\n")
    assert pickle_allowed(tmp_path) == (NAME,)
