"""Tests of the XGBoost, LightGBM and scikit-learn (skops) formats on files MLflow's flavors save.

Real ``mlflow.<flavor>.save_model`` output on local disk (no tracking server, no Ray): what
loads, what it returns, what is refused as pickled, and that skops saves are byte-identical.
"""

from __future__ import annotations

import hashlib
import operator
import subprocess
import sys
from pathlib import Path

import lightgbm
import mlflow.lightgbm
import mlflow.sklearn
import mlflow.xgboost
import numpy as np
import pytest
import xgboost
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import LinearSVC

from graphops import Model, Resources, model
from graphops.errors import RegistryError
from graphops.models import PICKLE_OPT_IN, Artifacts, detect, load_model
from graphops.models.lightgbm import LightGBMModel
from graphops.models.sklearn import SklearnModel, normalise_skops
from graphops.models.xgboost import XGBoostModel

PIP = ["numpy"]  # skips MLflow's requirement inference (slow, and irrelevant to loading)


@model("models:/tabular/1", resources=Resources(cpus=0.5))
def score(x: np.ndarray, model: Model) -> np.ndarray:
    """The model node the tests load for."""
    return model(x)


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)


def _save(flavor: str, obj: object, directory: Path, **kwargs: object) -> Path:
    module = {"xgboost": mlflow.xgboost, "lightgbm": mlflow.lightgbm, "sklearn": mlflow.sklearn}
    module[flavor].save_model(obj, str(directory), pip_requirements=PIP, **kwargs)
    return directory


def _load(directory: Path, *, allowed: bool = False) -> Model:
    return load_model(score, directory, "models:/tabular/1", pickle_allowed=allowed)


@pytest.mark.parametrize("model_format", ["ubj", "json"])
def test_xgboost_booster_loads_and_returns_probabilities(tmp_path: Path, model_format: str) -> None:
    x, y = _data()
    booster = xgboost.train(
        {"objective": "binary:logistic", "nthread": 1, "seed": 0},
        xgboost.DMatrix(x, label=y),
        num_boost_round=10,
    )
    loaded = _load(_save("xgboost", booster, tmp_path / "m", model_format=model_format))
    assert isinstance(loaded, XGBoostModel)
    out = loaded(x)
    assert out.shape == (len(x),)
    np.testing.assert_allclose(out, booster.predict(xgboost.DMatrix(x)), rtol=1e-6)
    assert loaded.native.get_fscore()  # the booster itself, trees and all
    assert ((out > 0.5) == y).mean() > 0.9


def test_xgboost_sklearn_wrapper_loads_as_its_booster(tmp_path: Path) -> None:
    x, y = _data()
    clf = xgboost.XGBClassifier(n_estimators=10, n_jobs=1, random_state=0).fit(x, y)
    loaded = _load(_save("xgboost", clf, tmp_path / "m"))
    np.testing.assert_allclose(loaded(x), clf.predict_proba(x)[:, 1], rtol=1e-6)
    assert isinstance(loaded.native, xgboost.Booster)  # type: ignore[attr-defined]


def test_xgboost_pickled_data_file_is_refused(tmp_path: Path) -> None:
    x, y = _data()
    directory = _save("xgboost", xgboost.XGBClassifier(n_estimators=2).fit(x, y), tmp_path / "m")
    mlmodel = directory / "MLmodel"
    data = next(directory.glob("model.*"))
    data.rename(directory / "model.pkl")
    mlmodel.write_text(mlmodel.read_text().replace(data.name, "model.pkl"))
    with pytest.raises(RegistryError, match=r"model\.pkl") as caught:
        _load(directory)
    assert PICKLE_OPT_IN in caught.value.fix


def test_lightgbm_text_booster_loads(tmp_path: Path) -> None:
    x, y = _data()
    booster = lightgbm.train(
        {"objective": "binary", "num_threads": 1, "verbose": -1, "seed": 0},
        lightgbm.Dataset(x, label=y),
        num_boost_round=10,
    )
    directory = _save("lightgbm", booster, tmp_path / "m")
    assert (directory / "model.lgb").is_file()
    loaded = _load(directory)
    assert isinstance(loaded, LightGBMModel) and loaded.threads == 1
    np.testing.assert_allclose(loaded(x), booster.predict(x), rtol=1e-9)


def test_lightgbm_sklearn_api_model_saved_with_skops_loads_its_booster(tmp_path: Path) -> None:
    x, y = _data()
    clf = lightgbm.LGBMClassifier(n_estimators=5, verbose=-1, random_state=0).fit(x, y)
    directory = _save("lightgbm", clf, tmp_path / "m")  # MLflow 3.17's default: skops
    assert (directory / "model.skops").is_file()
    np.testing.assert_allclose(_load(directory)(x), clf.predict_proba(x)[:, 1], rtol=1e-9)


def test_lightgbm_sklearn_api_model_pickled_is_refused(tmp_path: Path) -> None:
    x, y = _data()
    clf = lightgbm.LGBMClassifier(n_estimators=3, verbose=-1).fit(x, y)
    directory = _save("lightgbm", clf, tmp_path / "m", serialization_format="cloudpickle")
    with pytest.raises(RegistryError, match=r'"lightgbm" flavor.*model\.pkl') as caught:
        _load(directory)
    assert '"tabular"' in caught.value.fix and PICKLE_OPT_IN in caught.value.fix
    np.testing.assert_allclose(_load(directory, allowed=True)(x), clf.predict_proba(x)[:, 1])


def test_sklearn_skops_pipeline_returns_predict_proba(tmp_path: Path) -> None:
    x, y = _data()
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    loaded = _load(_save("sklearn", pipe, tmp_path / "m", serialization_format="skops"))
    assert isinstance(loaded, SklearnModel)
    np.testing.assert_allclose(loaded(x), pipe.predict_proba(x))
    assert loaded(x).shape == (len(x), 2)


def test_sklearn_without_predict_proba_returns_predict(tmp_path: Path) -> None:
    x, y = _data()
    svc = LinearSVC(random_state=0).fit(x, y)
    loaded = _load(_save("sklearn", svc, tmp_path / "m", serialization_format="skops"))
    np.testing.assert_array_equal(loaded(x), svc.predict(x))


@pytest.mark.parametrize("serialization", ["cloudpickle", "pickle"])
def test_sklearn_pickle_saves_are_refused_unless_allowed(
    tmp_path: Path, serialization: str
) -> None:
    x, y = _data()
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    directory = _save("sklearn", pipe, tmp_path / "m", serialization_format=serialization)
    with pytest.raises(
        RegistryError, match=rf'models:/tabular/1.*"sklearn" flavor.*{serialization}'
    ):
        _load(directory)
    np.testing.assert_allclose(_load(directory, allowed=True)(x), pipe.predict_proba(x))


def _declare(directory: Path, declared: list[str]) -> Path:
    """Rewrite the ``skops_trusted_types`` MLmodel records (as whoever logged it could)."""
    mlmodel = directory / "MLmodel"
    meta = yaml.safe_load(mlmodel.read_text())
    meta["flavors"]["sklearn"]["skops_trusted_types"] = declared
    mlmodel.write_text(yaml.safe_dump(meta))
    return directory


def _clipping_pipeline(tmp_path: Path, trusted: list[str]) -> tuple[Path, object]:
    x, y = _data()
    clip = FunctionTransformer(np.clip, kw_args={"a_min": -2.0, "a_max": 2.0})
    pipe = make_pipeline(clip, LogisticRegression()).fit(x, y)
    directory = _save(
        "sklearn", pipe, tmp_path / "m", serialization_format="skops", skops_trusted_types=trusted
    )
    return directory, pipe


def test_skops_types_outside_the_defaults_load_only_when_declared(tmp_path: Path) -> None:
    directory, pipe = _clipping_pipeline(tmp_path, ["numpy.clip"])
    x, _ = _data()
    # MLflow's own list names numpy.clip (outside skops' defaults): honoured, the model loads.
    np.testing.assert_allclose(_load(directory)(x), pipe.predict_proba(x))  # type: ignore[attr-defined]
    _declare(directory, [])
    with pytest.raises(
        RegistryError, match=r"types skops does not trust \(numpy\.clip\)"
    ) as caught:
        _load(directory)
    assert PICKLE_OPT_IN in caught.value.fix
    np.testing.assert_allclose(_load(directory, allowed=True)(x), pipe.predict_proba(x))  # type: ignore[attr-defined]


def test_declared_types_outside_the_libraries_are_not_honoured(tmp_path: Path) -> None:
    x, y = _data()
    pipe = make_pipeline(FunctionTransformer(operator.neg), LogisticRegression()).fit(x, y)
    directory = _save(
        "sklearn",
        pipe,
        tmp_path / "m",
        serialization_format="skops",
        skops_trusted_types=["_operator.neg"],  # MLflow's save accepts what its logger declares
    )
    with pytest.raises(RegistryError, match=r"_operator\.neg"):
        detect(Artifacts.read(directory, "models:/tabular/1"), {})
    assert (
        detect(Artifacts.read(directory, "models:/x/1"), {}, pickle_allowed=True).name == "sklearn"
    )


_SAVE = """
import sys
import numpy as np, skops.io
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
rng = np.random.default_rng(0)
x = rng.normal(size=(100, 4)); y = (x[:, 0] > 0).astype(int)
junk = [object() for _ in range(int(sys.argv[2]))]  # other ids: skops names arrays by id()
skops.io.dump(make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y), sys.argv[1])
"""


def test_normalised_skops_saves_are_byte_identical_across_processes(tmp_path: Path) -> None:
    digests = []
    for i, junk in enumerate((0, 5000)):
        path = tmp_path / f"{i}.skops"
        subprocess.run([sys.executable, "-c", _SAVE, str(path), str(junk)], check=True)
        raw = hashlib.sha256(path.read_bytes()).hexdigest()
        normalise_skops(path)
        digests.append((raw, hashlib.sha256(path.read_bytes()).hexdigest()))
        import skops.io

        assert skops.io.load(path).predict(np.zeros((1, 4))).shape == (1,)
    assert digests[0][0] != digests[1][0]  # skops alone differs from one process to the next
    assert digests[0][1] == digests[1][1]
