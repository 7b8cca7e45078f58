"""The model-format interface: which format reads which files, and pickled models refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from graphops import Model, RegistryError, model
from graphops.controller.render import application, versions
from graphops.environments import EnvironmentConfig, ReleaseEntry
from graphops.graph import ModelNode
from graphops.models import FORMATS, Artifacts, detect, format_of
from tests.fixtures.locks import lock


def _mlmodel(directory: Path, flavors: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "MLmodel").write_text(f"artifact_path: model\nflavors:\n{flavors}")
    return directory


@pytest.fixture
def node() -> ModelNode:
    def scores(features: np.ndarray, model: Model) -> np.ndarray:
        return model(features)

    return model("models:/churn/1")(scores)


def test_every_format_registers_under_its_name_and_imports_no_runtime() -> None:
    assert {"torch", "pyfunc"} <= set(FORMATS)
    assert all(name == fmt.name for name, fmt in FORMATS.items())
    # graphops.models is imported by every ingress and the CLI: no format's runtime with it.
    runtimes = ["torch", "onnxruntime", "xgboost", "lightgbm", "sklearn", "transformers", "mlflow"]
    code = f"import sys, graphops.models; print([m for m in {runtimes!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_pickled_flavor_is_refused_with_the_model_the_flavor_and_the_opt_in(
    tmp_path: Path, node: ModelNode
) -> None:
    flavors = (
        "  pytorch:\n    model_data: data\n  python_function:\n    loader_module: mlflow.pytorch\n"
    )
    artifacts = Artifacts.read(_mlmodel(tmp_path / "model", flavors), "models:/churn/1")
    with pytest.raises(RegistryError) as info:
        detect(artifacts, {"node": node.name})
    text = str(info.value)
    assert 'models:/churn/1 was logged with MLflow\'s "pytorch" flavor' in text
    assert "unpickling data" in text and 'add "churn" to models.pickle_allowed' in text
    assert info.value.node == "scores"
    # A platform team's grant: it loads through MLflow's own loader.
    assert detect(artifacts, {}, pickle_allowed=True).name == "pyfunc"
    assert format_of(tmp_path, "models:/churn/1") == "pyfunc"  # the MLmodel one folder down


def test_files_in_no_format_name_what_was_found(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"\0")
    with pytest.raises(
        RegistryError, match=r"in no model format graphops reads \(its files: weights.bin\)"
    ):
        detect(Artifacts.read(tmp_path, "models:/x/1"), {})


def test_render_carries_the_grant_only_for_the_graphs_own_models() -> None:
    entry = ReleaseEntry(lock=lock(), promoted_at="2026-12-01T00:00:00Z")  # type: ignore[arg-type]
    granted = EnvironmentConfig(
        name="dev",
        models={"pickle_allowed": ["digits", "other"]},  # type: ignore[arg-type]
    )
    app: dict[str, Any] = application(versions("valid", entry)[0], granted)
    assert app["args"]["pickle_allowed"] == ["digits"]
    plain = application(versions("valid", entry)[0], EnvironmentConfig(name="dev"))
    assert "pickle_allowed" not in plain["args"]  # the default is not written
