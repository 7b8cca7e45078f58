"""The new user's path: models logged with MLflow's own flavors, no graphops code, served.

A plain script (no graphops import) trains with the data of a graph ``graphops new --template
tabular`` generated, and logs models with ``mlflow.<flavor>.log_model(...,
registered_model_name=...)``. The graph's model node points at ``models:/<name>/1``, its
train.py deleted: validate records the digest at first use and passes, promote to dev writes the
lock, the online runtime answers over HTTP. A LightGBM Booster and a scikit-learn model saved
with skops load and answer alike; models that MLflow pickled are refused, naming the model, the
flavor and the opt-in.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import git
import numpy as np
import pytest
import requests
import yaml

from graphops import Model, Resources, model
from graphops.errors import RegistryError
from graphops.graph import ModelNode, ModelURI, load_graph
from graphops.graph._metrics import BUILTIN_METRICS
from graphops.registry import Registry
from graphops.registry._integrity import DIGEST_TAG
from graphops.runtime import read_rows, run_local
from graphops.scaffold import scaffold

pytestmark = pytest.mark.usefixtures("ray_cluster")

REPO = Path(__file__).resolve().parents[2]
GRAPH = "card_risk"
LOG = """
import runpy, sys
import lightgbm, mlflow, numpy as np, xgboost
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

data = runpy.run_path(sys.argv[1])  # the graph's data.py: numpy and pyarrow only
x, y = data["training_set"]()
mlflow.set_experiment("data-science")
pip = ["numpy"]
with mlflow.start_run():
    clf = xgboost.XGBClassifier(n_estimators=100, max_depth=3, n_jobs=1, random_state=0)
    mlflow.xgboost.log_model(clf.fit(x, y), name="model", registered_model_name="risk_xgb",
                             pip_requirements=pip)
    booster = lightgbm.train({"objective": "binary", "verbose": -1, "num_threads": 1, "seed": 0},
                             lightgbm.Dataset(x, label=y), num_boost_round=50)
    mlflow.lightgbm.log_model(booster, name="lgb", registered_model_name="risk_lgb",
                              pip_requirements=pip)
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    mlflow.sklearn.log_model(pipe, name="sk", registered_model_name="risk_sklearn",
                             serialization_format="skops", pip_requirements=pip)
    mlflow.sklearn.log_model(pipe, name="pickled", registered_model_name="risk_pickled",
                             serialization_format="cloudpickle", pip_requirements=pip)
    lgbm = lightgbm.LGBMClassifier(n_estimators=10, verbose=-1).fit(x, y)
    mlflow.lightgbm.log_model(lgbm, name="lgbm", registered_model_name="risk_lgbm_pickled",
                              serialization_format="cloudpickle", pip_requirements=pip)
"""


@pytest.fixture(scope="module")
def new_user(tmp_path_factory: pytest.TempPathFactory, repo_copy: Path, registry: Registry) -> Path:
    """A git repo with a tabular graph pointing at a model logged by a plain MLflow script."""
    repo = tmp_path_factory.mktemp("new_user") / "repo"
    shutil.copytree(repo_copy, repo)
    rendered = shutil.ignore_patterns("serve.yaml", "rayservice.yaml", "release.yaml")
    shutil.copytree(REPO / "environments", repo / "environments", ignore=rendered)
    scaffold(repo, GRAPH, "tabular")
    package = repo / "graphs" / GRAPH
    (package / "train.py").unlink()  # no graphops-specific model code
    init = package / "__init__.py"
    init.write_text(init.read_text().replace(f"models:/{GRAPH}@champion", "models:/risk_xgb/1"))
    dev = repo / "environments" / "dev" / "environment.yaml"
    env = yaml.safe_load(dev.read_text())
    env["code"] |= {"store": f"file://{repo.parent / 'packages'}"}  # not /var/tmp
    dev.write_text(yaml.safe_dump(env))

    script = subprocess.run(
        [sys.executable, "-c", LOG, str(package / "data.py")],
        env=os.environ | {"MLFLOW_TRACKING_URI": registry.tracking_uri},
        cwd=repo.parent,  # the script's default artifact root (./mlruns) lands beside the repo
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert script.returncode == 0, script.stderr[-3000:]
    with git.Repo.init(repo, initial_branch="main") as r:
        with r.config_writer() as config:
            config.set_value("user", "name", "new").set_value("user", "email", "new@example.com")
        r.git.add(A=True)
        r.index.commit(f"{GRAPH}: a model logged with mlflow.xgboost")
    return repo


def test_validate_promote_and_serve_a_model_logged_with_mlflow_xgboost(
    new_user: Path, registry: Registry, serve_port: int
) -> None:
    from graphops.controller.promote import promote
    from graphops.runtime.online import deploy, undeploy
    from graphops.validation import validate_graph

    logged = registry.client.get_model_version("risk_xgb", "1")
    assert logged.source.startswith("models:/m-") and DIGEST_TAG not in (logged.tags or {})

    commit = git.Repo(new_user).head.commit.hexsha
    result = validate_graph(new_user, GRAPH, registry, commit=commit, parity=False)
    assert result.status == "passed", result.problems
    assert result.models == {"probability": "models:/risk_xgb/1"}
    [gate] = result.gates
    assert (gate.metric, gate.passed) == ("auc", True)
    digest = registry.client.get_model_version("risk_xgb", "1").tags[DIGEST_TAG]  # first use

    promoted = promote(new_user, GRAPH, "dev", registry)
    assert promoted.lock.models["probability"].digest == digest
    assert promoted.lock.models["probability"].version == 1
    assert "environments/dev/release.yaml" in promoted.files

    package = load_graph(new_user, GRAPH)
    assert package.validation_dataset is not None
    rows = read_rows(package.validation_dataset)
    local = run_local(package, registry, rows)
    online = deploy(package, registry, port=serve_port, name=GRAPH)
    try:
        body = [
            {k: rows[i][k] for k in ("account_id", "amount", "hour", "foreign")} for i in range(8)
        ]
        answer = requests.post(online.url, json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        for got, want in zip(answer.json(), local.responses, strict=False):
            assert got["flagged"] == want["flagged"]
            np.testing.assert_allclose(got["probability"], want["probability"], atol=1e-6)
    finally:
        undeploy(online.name)


@model("models:/placeholder/1", resources=Resources(cpus=0.25))
def probability(inputs: np.ndarray, model: Model) -> np.ndarray:
    """A model node like the graph's, re-pointed per test."""
    return model(inputs)


def _node(uri: str) -> ModelNode:
    """The same node, pointed at another registered model."""
    return dataclasses.replace(probability, uri=ModelURI.parse(uri))


def _inputs(new_user: Path) -> tuple[np.ndarray, np.ndarray]:
    import runpy

    data = runpy.run_path(str(new_user / "graphs" / GRAPH / "data.py"))
    table, rows = data["accounts"](), data["make_rows"](300, 2)
    ids = rows["account_id"]
    x = data["model_inputs"](
        rows["amount"],
        rows["hour"],
        rows["foreign"],
        *(table[k][ids] for k in ("avg_amount", "age_days", "chargebacks")),
    )
    return x, rows["label"]


@pytest.mark.parametrize("name", ["risk_lgb", "risk_sklearn"])
def test_a_lightgbm_booster_and_a_skops_model_load_and_answer(
    new_user: Path, registry: Registry, name: str
) -> None:
    x, y = _inputs(new_user)
    loaded = registry.load(_node(f"models:/{name}/1"))
    scores = loaded(x)
    if scores.ndim == 2:  # scikit-learn: predict_proba
        scores = scores[:, 1]
    assert scores.shape == (len(x),) and BUILTIN_METRICS["auc"](scores, y) > 0.85


@pytest.mark.parametrize(
    ("name", "flavor"), [("risk_pickled", "sklearn"), ("risk_lgbm_pickled", "lightgbm")]
)
def test_models_mlflow_pickled_are_refused_naming_model_flavor_and_opt_in(
    new_user: Path, registry: Registry, name: str, flavor: str
) -> None:
    with pytest.raises(RegistryError) as caught:
        registry.load(_node(f"models:/{name}/1"))
    assert f'models:/{name}/1 was logged with MLflow\'s "{flavor}" flavor' in caught.value.what
    assert f'"{name}"' in caught.value.fix and "models.pickle_allowed" in caught.value.fix


def test_registering_an_identical_skops_model_reuses_the_version(registry: Registry) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    y = (x[:, 0] > 0).astype(int)

    def register(pipe: object) -> int:
        return registry.register_flavor(
            name="skops_twice",
            flavor="sklearn",
            model=pipe,
            alias="champion",
            serialization_format="skops",
            pip_requirements=["scikit-learn", "skops"],
        ).version

    # Two equal fits, both alive: their arrays are other Python objects, and skops names each
    # array file by id(), so only the normalised saves are byte-identical.
    first, second = (make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y) for _ in "ab")
    assert register(first) == register(second)
