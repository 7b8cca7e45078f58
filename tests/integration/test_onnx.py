"""ONNX export with proof: digits' torch model converted, registered, proved, served and validated.

Real MLflow (the session's sqlite store), the digits model trained by its own entry point, the
local runner and Ray Data on the session's cluster.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from graphops.errors import GraphOpsError
from graphops.graph import GraphPackage, ModelNode, load_graph
from graphops.models import OnnxModel, TorchModel
from graphops.registry import Registry, ResolvedModel
from graphops.runtime import read_rows, run_local
from graphops.validation.conversion import (
    CONVERTED_FROM_TAG,
    Export,
    converted_from,
    export_onnx,
    node_inputs,
    prove_conversion,
    tolerance_of,
)
from graphops.validation.validate import validate_graph


@pytest.fixture(scope="module")
def exported(digits: GraphPackage, registry: Registry, champion: ResolvedModel) -> Export:
    return export_onnx(digits, "logits", registry)


def _logits(digits: GraphPackage) -> ModelNode:
    node = digits.graph.node("logits")
    assert isinstance(node, ModelNode)
    return node


def _pointed_at(repo_copy: Path, tmp_path: Path, alias: str, version: str) -> Path:
    """A copy of the graphs whose digits model node points at ``digits@alias`` (own version)."""
    root = tmp_path / f"repo-{alias}"
    shutil.copytree(repo_copy / "graphs", root / "graphs")
    init = root / "graphs" / "digits" / "__init__.py"
    text = init.read_text()
    assert '"models:/digits@champion"' in text and 'version="1.0.0"' in text
    text = text.replace('"models:/digits@champion"', f'"models:/digits@{alias}"')
    init.write_text(text.replace('version="1.0.0"', f'version="{version}"'))
    return root


def test_export_proves_parity_and_sets_the_alias(
    exported: Export, digits: GraphPackage, registry: Registry, champion: ResolvedModel
) -> None:
    p = exported.parity
    print(  # the figures, for the report (pytest -s)
        f"digits logits torch -> ONNX: rows {p.rows}, max abs diff {p.max_abs_diff:.3g}, "
        f"mean abs diff {p.mean_abs_diff:.3g}, label agreement {p.label_agreement:.4f}"
    )
    assert exported.original == champion
    assert exported.converted.name == "digits" and exported.converted.version != champion.version
    assert p.rows == 360 and p.passed and p.run_id
    assert p.max_abs_diff <= 1e-4 and p.label_agreement >= 0.999
    assert exported.aliased and exported.alias == "champion-onnx"
    aliases = registry.client.get_registered_model("digits").aliases
    assert int(aliases["champion-onnx"]) == exported.converted.version
    assert int(aliases["champion"]) == champion.version  # the original keeps its alias
    tags = registry.version_tags("digits", exported.converted.version)
    assert tags[CONVERTED_FROM_TAG] == champion.uri
    assert converted_from(registry, exported.converted) == champion.model_copy(
        update={"alias": None}
    )
    run = registry.client.get_run(p.run_id)
    assert run.data.tags["graphops.converted"] == exported.converted.uri
    assert run.data.metrics["label_agreement"] == p.label_agreement


def test_exporting_again_reuses_the_version(
    exported: Export, digits: GraphPackage, registry: Registry
) -> None:
    again = export_onnx(digits, "logits", registry)
    assert again.reused and again.converted == exported.converted


def test_the_onnx_version_loads_and_answers_like_torch(
    exported: Export, digits: GraphPackage, registry: Registry, champion: ResolvedModel
) -> None:
    node = _logits(digits)
    onnx_model = registry.load(node, exported.converted)
    torch_model = registry.load(node, champion)
    assert isinstance(onnx_model, OnnxModel) and isinstance(torch_model, TorchModel)
    features = node_inputs(digits, registry, node)["features"]
    np.testing.assert_allclose(onnx_model(features), torch_model(features), atol=1e-4)
    assert (onnx_model(features).argmax(1) == torch_model(features).argmax(1)).all()


def test_out_of_tolerance_is_refused_without_the_alias(
    exported: Export, digits: GraphPackage, registry: Registry
) -> None:
    strict = export_onnx(digits, "logits", registry, alias="strict-onnx", max_abs_diff=0.0)
    assert strict.parity.max_abs_diff > 0  # float32 kernels differ: a zero tolerance fails
    assert not strict.parity.passed and not strict.aliased
    assert "max abs diff" in strict.parity.why()
    assert "strict-onnx" not in registry.client.get_registered_model("digits").aliases
    with pytest.raises(GraphOpsError, match=r"Got 1\.5 for min_label_agreement"):
        export_onnx(digits, "logits", registry, min_label_agreement=1.5)
    with pytest.raises(GraphOpsError, match="has no model node 'logit'"):
        export_onnx(digits, "logit", registry)


def test_a_perturbed_conversion_fails_its_proof_and_validation(
    exported: Export,
    digits: GraphPackage,
    registry: Registry,
    champion: ResolvedModel,
    repo_copy: Path,
    tmp_path: Path,
    ray_cluster: dict[str, float],
) -> None:
    import onnx
    from mlflow.artifacts import download_artifacts
    from onnx import numpy_helper

    path = download_artifacts(
        artifact_uri=exported.converted.source,
        dst_path=str(tmp_path / "download"),
        tracking_uri=registry.tracking_uri,
    )
    proto = onnx.load(str(next(Path(path).rglob("model.onnx"))))
    weight = proto.graph.initializer[0]
    values = numpy_helper.to_array(weight).copy()
    values += 0.05  # every weight: the top-left pixel alone is always 0 in digits
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    bad = registry.register_flavor(
        name="digits", flavor="onnx", model=proto, alias="perturbed", pip_requirements=["onnx"]
    )
    registry.set_version_tags("digits", bad.version, {CONVERTED_FROM_TAG: champion.uri})
    node = _logits(digits)
    proof = prove_conversion(
        digits, registry, node, champion, bad, tolerance_of(digits), record=False
    )
    assert not proof.passed and proof.max_abs_diff > 1e-4
    repo = _pointed_at(repo_copy, tmp_path, "perturbed", "9.0.1")
    result = validate_graph(repo, "digits", registry, parity=False)
    assert result.status == "failed", result.problems
    assert [c.converted for c in result.conversions] == [bad.uri]
    assert any(f"converted from {champion.uri}" in p for p in result.problems), result.problems


def test_validate_and_the_runtimes_run_digits_on_the_onnx_version(
    exported: Export,
    registry: Registry,
    repo_copy: Path,
    tmp_path: Path,
    ray_cluster: dict[str, float],
) -> None:
    from graphops.runtime.offline import run_offline

    repo = _pointed_at(repo_copy, tmp_path, "champion-onnx", "9.0.0")
    package = load_graph(repo, "digits")
    assert package.validation_dataset is not None
    local = run_local(package, registry, read_rows(package.validation_dataset))
    assert local.pins["logits"].version == exported.converted.version
    assert local.metrics and all(m.passed for m in local.metrics), local.metrics
    offline = run_offline(package, registry, package.validation_dataset)
    assert offline.pins["logits"].uri == exported.converted.uri
    assert offline.rows == 360
    np.testing.assert_array_equal(offline.columns["label"], local.columns["label"])
    result = validate_graph(repo, "digits", registry, parity=False)
    assert result.status == "passed", result.problems
    assert result.models["logits"] == exported.converted.uri
    [proof] = result.conversions
    assert proof.passed and proof.original == exported.original.uri and proof.rows == 360
