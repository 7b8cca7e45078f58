"""Exporting a loaded model to ONNX: torch's exporter, skl2onnx, and bytes stable across exports.

torch, onnx and skl2onnx are imported when a model is exported, not with this module.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from graphops.errors import GraphOpsError, RegistryError, Where
from graphops.graph import ModelNode
from graphops.models._format import Model
from graphops.models.onnx import OnnxModel
from graphops.models.torch import TorchModel

if TYPE_CHECKING:
    import onnx


def to_onnx(
    model: Model, examples: Sequence[np.ndarray], node: ModelNode, uri: str
) -> onnx.ModelProto:
    """``model`` (as loaded) as an ONNX model with a dynamic batch dimension, made deterministic.

    Raises:
        RegistryError: The model is ONNX already, or of a kind graphops does not convert.
    """
    where: Where = {"node": node.name, "file": node.file, "line": node.line}
    names = list(node.inputs) if len(node.inputs) == len(examples) else None
    names = names or [f"input_{i}" for i in range(len(examples))]
    if isinstance(model, TorchModel):
        proto = torch_to_onnx(model.module, examples, names, list(node.outputs)[:1])
    elif isinstance(model, OnnxModel):
        raise RegistryError(
            f"{uri} is an ONNX model already.",
            fix="Nothing to convert: point the node at it (or at the original and export that).",
            **where,
        )
    elif (estimator := _estimator(model)) is not None:
        proto = sklearn_to_onnx(estimator, examples, names)
    else:
        raise RegistryError(
            f"{uri} loads as {type(model).__name__}: graphops converts torch and scikit-learn "
            "models to ONNX.",
            fix="Export it with its framework's own ONNX exporter and log it with "
            "mlflow.onnx.log_model.",
            **where,
        )
    return stable(proto)


def torch_to_onnx(
    module: Any, examples: Sequence[np.ndarray], names: list[str], outputs: list[str]
) -> onnx.ModelProto:
    """A torch module exported by torch's exporter (dynamo), the batch dimension dynamic."""
    import torch

    module = module.to("cpu").eval()
    first = next(module.parameters(), None)
    dtype = first.dtype if first is not None else torch.float32
    tensors = []
    for array in examples:
        tensor = torch.as_tensor(np.array(array))
        tensors.append(tensor.to(dtype) if tensor.is_floating_point() else tensor)
    batch = torch.export.Dim("batch")
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # "torchvision is not installed. Skipping ..." x4
    try:
        program = _export(torch, module, tuple(tensors), names, outputs, batch)
    finally:
        exporter_log.setLevel(level)
    if program is None or program.model_proto is None:
        raise GraphOpsError(
            "torch.onnx.export returned no model.",
            fix="Check that the module exports with torch.onnx.export(..., dynamo=True).",
        )
    return program.model_proto


def _export(
    torch: Any,
    module: Any,
    tensors: tuple[Any, ...],
    names: list[str],
    outputs: list[str],
    batch: Any,
) -> Any:
    """Run the exporter (dynamo) with a dynamic first dimension on every input."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's own deprecation notices of torch internals
        return torch.onnx.export(
            module,
            tensors,
            dynamo=True,
            input_names=names,
            output_names=outputs,
            dynamic_shapes=tuple({0: batch} for _ in tensors),
            optimize=True,
            verbose=False,
        )


def sklearn_to_onnx(
    estimator: Any, examples: Sequence[np.ndarray], names: list[str]
) -> onnx.ModelProto:
    """A scikit-learn estimator converted by skl2onnx (inputs typed from ``examples``).

    Classifiers answer probabilities first (skl2onnx's second output, as a dense array, moved
    ahead of the labels): the converted model answers what ``predict_proba`` does.
    """
    from skl2onnx import to_onnx as skl_to_onnx
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, Int64TensorType

    kinds = {"f": FloatTensorType, "d": DoubleTensorType, "i": Int64TensorType}
    initial = []
    for name, array in zip(names, examples, strict=True):
        kind = "d" if array.dtype == np.float64 else array.dtype.kind
        initial.append((name, kinds.get(kind, FloatTensorType)([None, *array.shape[1:]])))
    classifier = hasattr(estimator, "predict_proba")
    options = {id(estimator): {"zipmap": False}} if classifier else None
    proto = skl_to_onnx(estimator, initial_types=initial, options=options, target_opset=None)
    if classifier and len(proto.graph.output) > 1:  # (label, probabilities): answer the latter
        outputs = list(proto.graph.output)
        del proto.graph.output[:]
        proto.graph.output.extend([outputs[1], outputs[0], *outputs[2:]])
    return proto


def _estimator(model: Model) -> Any | None:
    """The scikit-learn estimator behind a loaded model, if it is one."""
    try:
        from sklearn.base import BaseEstimator
    except ImportError:
        return None
    for attribute in ("estimator", "native", "model"):
        candidate = getattr(model, attribute, None)
        if isinstance(candidate, BaseEstimator):
            return candidate
    return model if isinstance(model, BaseEstimator) else None


def stable(proto: onnx.ModelProto) -> onnx.ModelProto:
    """``proto`` without what differs between exports of the same weights.

    torch's exporter records per node its Python stack trace (absolute paths of the checkout)
    and FX names in ``metadata_props``, and doc strings: dropped, so the same weights export to
    the same bytes wherever they are exported (the registry then reuses the version).
    """
    _clear(proto)
    _strip_graph(proto.graph)
    for function in proto.functions:
        _clear(function)
        for node in function.node:
            _strip_node(node)
    return proto


def _clear(message: Any) -> None:
    """Empty a protobuf message's ``doc_string`` and ``metadata_props``, where it has them."""
    fields = message.DESCRIPTOR.fields_by_name
    for name in ("doc_string", "metadata_props"):
        if name in fields:
            message.ClearField(name)  # absent, not empty: ONNX is proto2


def _strip_graph(graph: Any) -> None:
    _clear(graph)
    for value in (*graph.input, *graph.output, *graph.value_info, *graph.initializer):
        _clear(value)
    for node in graph.node:
        _strip_node(node)


def _strip_node(node: Any) -> None:
    _clear(node)
    for attribute in node.attribute:
        if attribute.HasField("g"):
            _strip_graph(attribute.g)
        for sub in attribute.graphs:
            _strip_graph(sub)
