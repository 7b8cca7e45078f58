"""The ONNX Runtime format and the conversion gate: tiny ONNX models built here, no Ray, no MLflow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from graphops import Batching, ConversionTolerance, Resources, Validation, model
from graphops.errors import GraphOpsError, RegistryError
from graphops.models import FORMATS, Artifacts, OnnxModel, detect, load_model
from graphops.models.export import stable
from graphops.models.onnx import THREADS_ENV, providers_for, session_threads
from graphops.validation.conversion import compare
from graphops.validation.results import ConversionParity

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


@model("models:/tiny@champion", batching=Batching(max_batch_size=8), resources=Resources(cpus=2.5))
def scores(features: np.ndarray, model: OnnxModel) -> np.ndarray:
    """Scores from the tiny ONNX model."""
    return model(features)


def _tiny(directory: Path, *, weights: np.ndarray | None = None) -> Path:
    """``y = x @ W + 1`` (x: float32 [batch, 3], W: 3x2) saved as MLflow's onnx flavor lays it out."""
    w = np.arange(6, dtype=np.float32).reshape(3, 2) if weights is None else weights
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["xw"]),
            helper.make_node("Add", ["xw", "one"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        initializer=[
            helper.make_tensor("w", TensorProto.FLOAT, [3, 2], w.ravel().tolist()),
            helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0]),
        ],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(directory / "model.onnx"))
    (directory / "MLmodel").write_text(
        "flavors:\n  onnx:\n    data: model.onnx\n    onnx_version: 1.17.0\n"
        "  python_function:\n    loader_module: mlflow.onnx\n"
    )
    return directory


def test_an_onnx_flavor_is_detected_and_answers_like_its_graph(tmp_path: Path) -> None:
    root = _tiny(tmp_path / "m")
    artifacts = Artifacts.read(root, "models:/tiny/1")
    assert detect(artifacts, {}) is FORMATS["onnx"]
    loaded = load_model(scores, root, "models:/tiny/1")
    assert isinstance(loaded, OnnxModel)
    x = np.array([[1, 2, 3], [0, 0, 0]], dtype=np.float64)  # cast to the declared float32
    expected = x.astype(np.float32) @ np.arange(6, dtype=np.float32).reshape(3, 2) + 1
    out = loaded(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected)
    # Ray hands read-only, non-contiguous views: they are copied, not refused.
    view = np.asfortranarray(np.tile(x, (4, 1)))
    view.flags.writeable = False
    np.testing.assert_allclose(loaded(view), np.tile(expected, (4, 1)))
    assert loaded.providers == ["CPUExecutionProvider"]


def test_missing_or_corrupt_files_and_wrong_input_counts_name_the_model(tmp_path: Path) -> None:
    root = _tiny(tmp_path / "m")
    (root / "model.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(RegistryError, match=r"cannot load models:/tiny/1 \(model.onnx\)") as bad:
        load_model(scores, root, "models:/tiny/1")
    assert "re-export" in (bad.value.fix or "") and bad.value.node == "scores"
    (root / "model.onnx").unlink()
    with pytest.raises(RegistryError, match=r"has no ONNX model file model\.onnx"):
        load_model(scores, root, "models:/tiny/1")
    loaded = load_model(scores, _tiny(tmp_path / "ok"), "models:/tiny/2")
    with pytest.raises(RegistryError, match=r"takes 1 input\(s\) \(x\), but the node passed 2"):
        loaded(np.zeros((1, 3)), np.zeros((1, 3)))


def test_threads_follow_the_node_and_cuda_only_where_asked_and_present(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert session_threads(scores) == 3  # 2.5 CPUs rounded up
    monkeypatch.setenv(THREADS_ENV, "1")
    assert session_threads(scores) == 1
    monkeypatch.setenv(THREADS_ENV, "many")
    with pytest.raises(RegistryError, match=f'Got "many" for {THREADS_ENV}'):
        session_threads(scores)
    cuda = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert providers_for(cuda, gpu=True) == cuda
    assert providers_for(cuda, gpu=False) == ["CPUExecutionProvider"]
    assert providers_for(["CPUExecutionProvider"], gpu=True) == ["CPUExecutionProvider"]


def test_the_tolerance_is_declared_with_defaults_and_checked() -> None:
    default = Validation(dataset=Path("v.parquet"), label="y").conversion
    assert (default.max_abs_diff, default.min_label_agreement) == (1e-4, 0.999)
    with pytest.raises(ValueError, match="less than or equal to 1"):
        ConversionTolerance(min_label_agreement=1.5)
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        ConversionTolerance(max_abs_diff=-1)


def test_the_gate_reports_differences_and_label_agreement() -> None:
    tolerance = ConversionTolerance(max_abs_diff=1e-3, min_label_agreement=0.75)
    logits = np.array([[0.0, 1.0], [2.0, 0.0], [0.0, 3.0], [1.0, 0.5]], dtype=np.float32)
    near = logits + np.float32(1e-5)
    rows, largest, mean, agreement = compare({"y": logits}, {"y": near}, tolerance)
    assert rows == 4 and largest == pytest.approx(1e-5, rel=1e-2) and agreement == 1.0
    assert mean == pytest.approx(1e-5, rel=1e-2)
    flipped = logits.copy()
    flipped[3] = [0.5, 1.0]  # one label of four changes
    rows, largest, _, agreement = compare({"y": logits}, {"y": flipped}, tolerance)
    assert largest == pytest.approx(0.5) and agreement == 0.75
    parity = ConversionParity(
        node="n",
        original="models:/m/1",
        converted="models:/m/2",
        rows=rows,
        max_abs_diff=largest,
        mean_abs_diff=0.25,
        label_agreement=agreement,
        tolerance_max_abs_diff=tolerance.max_abs_diff,
        min_label_agreement=tolerance.min_label_agreement,
    )
    assert not parity.passed and parity.why() == "max abs diff 0.5 > 0.001"
    assert parity.model_dump()["passed"] is False
    # 1-D outputs agree when equal within the tolerance; NaN never passes.
    _, _, _, agreement = compare(
        {"p": np.array([0.1, 0.2])}, {"p": np.array([0.1, 0.3])}, tolerance
    )
    assert agreement == 0.5
    _, largest, _, _ = compare({"p": np.array([0.1])}, {"p": np.array([np.nan])}, tolerance)
    assert largest == np.inf
    with pytest.raises(GraphOpsError, match="shape"):
        compare({"y": logits}, {"y": logits[:, :1]}, tolerance)


def test_stable_drops_what_differs_between_exports(tmp_path: Path) -> None:
    root = _tiny(tmp_path / "m")
    proto = onnx.load(str(root / "model.onnx"))
    proto.doc_string = "exported at /home/someone/checkout"
    node = proto.graph.node[0]
    node.doc_string = "trace"
    entry = node.metadata_props.add()
    entry.key, entry.value = "pkg.torch.onnx.stack_trace", 'File "/home/someone/network.py"'
    cleaned = stable(proto).SerializeToString()
    assert b"/home/someone" not in cleaned
    reference = onnx.load(str(root / "model.onnx")).SerializeToString()
    assert cleaned == reference


def test_a_scikit_learn_estimator_converts_with_probabilities_as_its_output() -> None:
    import onnxruntime as ort
    from sklearn.linear_model import LogisticRegression

    from graphops.models.export import to_onnx

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)
    estimator = LogisticRegression(max_iter=500).fit(x, y)

    class Loaded:  # what a scikit-learn format's model exposes: the estimator behind it
        def __init__(self) -> None:
            self.estimator = estimator

        def __call__(self, *arrays: np.ndarray) -> np.ndarray:
            return np.asarray(estimator.predict_proba(arrays[0]))

    proto = to_onnx(Loaded(), (x[:2],), scores, "models:/tiny/1")
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["features"]
    probabilities = session.run(None, {"features": x})[0]
    np.testing.assert_allclose(probabilities, estimator.predict_proba(x), atol=1e-5)


def test_models_graphops_cannot_convert_are_refused_by_name(tmp_path: Path) -> None:
    from graphops.models.export import to_onnx

    loaded = load_model(scores, _tiny(tmp_path / "m"), "models:/tiny/1")
    with pytest.raises(RegistryError, match=r"models:/tiny/1 is an ONNX model already"):
        to_onnx(loaded, (np.zeros((2, 3), np.float32),), scores, "models:/tiny/1")
    with pytest.raises(RegistryError, match="loads as function: graphops converts torch and"):
        to_onnx(lambda *a: a[0], (np.zeros((2, 3)),), scores, "models:/tiny/1")


def test_the_validation_report_shows_each_conversion_proof() -> None:
    from graphops.validation.report import markdown, to_json
    from graphops.validation.results import GraphValidation, ValidationReport

    proof = ConversionParity(
        node="logits",
        original="models:/digits/1",
        converted="models:/digits/2",
        rows=360,
        max_abs_diff=9.5e-6,
        mean_abs_diff=1.1e-6,
        label_agreement=1.0,
        tolerance_max_abs_diff=1e-4,
        min_label_agreement=0.999,
    )
    g = GraphValidation(graph="digits", status="passed", version="1.0.0", conversions=[proof])
    text = markdown(ValidationReport(graphs=[g]))
    assert (
        "| logits | `models:/digits/1` | `models:/digits/2` | 360 | 9.5e-06 (<= 0.0001) "
        "| 1.1e-06 | 1.0000 (>= 0.999) | pass |" in text
    )
    failed = proof.model_copy(update={"label_agreement": 0.99})
    g = g.model_copy(update={"conversions": [failed], "status": "failed"})
    assert "| 0.9900 (>= 0.999) | **FAIL** |" in markdown(ValidationReport(graphs=[g]))
    assert '"passed": false' in to_json(ValidationReport(graphs=[g]))
