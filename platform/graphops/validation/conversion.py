"""Conversion with proof: a model node's version exported to ONNX, registered, proved on validation data.

`export_onnx` converts the version a model node pins (torch in graphops' safetensors layout;
scikit-learn estimators through skl2onnx), registers the ONNX model as a new version of the same
registered model (tag ``graphops.converted_from``), then `prove_conversion` runs the graph's
nodes up to that node over the validation rows (the local runner), feeds both versions and
compares their outputs against the graph's declared `ConversionTolerance`. Only a proved version
gets the alias. Validation (`validate`) runs the same proof for a node pinned to a converted
version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pydantic import ValidationError

from graphops.errors import GraphOpsError, RegistryError, did_you_mean
from graphops.features import open_store, uses_features
from graphops.graph import (
    Batch,
    ConversionTolerance,
    GraphPackage,
    ModelNode,
    ModelURI,
    Node,
)
from graphops.models import Model
from graphops.models.export import to_onnx
from graphops.registry import Registry, ResolvedModel, where_of
from graphops.runtime import LocalRunner, read_rows, to_columns
from graphops.validation.results import ConversionParity

if TYPE_CHECKING:
    pass

CONVERTED_FROM_TAG = "graphops.converted_from"
"""Model version tag of a converted version: the original it was converted from, models:/name/N."""
CONVERSION_EXPERIMENT = "conversion/{graph}"
"""The MLflow experiment holding each proof of a graph's conversions."""
EXPORT_ROWS = 2
"""Rows of the example batch a model is exported with (its batch dimension stays dynamic)."""
_PROTOBUF_LIMIT = 2**31 - 1  # bytes: larger ONNX models keep their weights in an external file


@dataclass(frozen=True)
class Export:
    """What `export_onnx` did: the versions, the proof and whether the alias moved."""

    original: ResolvedModel
    converted: ResolvedModel
    alias: str
    parity: ConversionParity
    reused: bool
    """The converted version existed already (same ONNX bytes): it was not registered again."""

    @property
    def aliased(self) -> bool:
        """The alias points at the converted version (only when the proof passed)."""
        return self.parity.passed


def tolerance_of(
    package: GraphPackage,
    *,
    max_abs_diff: float | None = None,
    min_label_agreement: float | None = None,
) -> ConversionTolerance:
    """The graph's declared tolerance (``Validation.conversion``), with overrides applied.

    Raises:
        GraphOpsError: An override out of range (e.g. a label agreement above 1).
    """
    validation = package.graph.validation
    base = validation.conversion if validation is not None else ConversionTolerance()
    overrides: dict[str, float] = {}
    if max_abs_diff is not None:
        overrides["max_abs_diff"] = max_abs_diff
    if min_label_agreement is not None:
        overrides["min_label_agreement"] = min_label_agreement
    try:
        return ConversionTolerance(**(base.model_dump() | overrides))
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise GraphOpsError(
            f"Got {err.get('input')!r} for {field}. {err['msg']}.",
            fix="max_abs_diff must be >= 0 and min_label_agreement within 0..1 (a share of rows).",
            graph=package.name,
        ) from exc


def model_node(package: GraphPackage, name: str) -> ModelNode:
    """The model node ``name`` of the graph; a `GraphOpsError` naming the model nodes otherwise."""
    names = [n.name for n in package.graph.model_nodes]
    found = next((n for n in package.graph.model_nodes if n.name == name), None)
    if found is None:
        raise GraphOpsError(
            f"Graph '{package.name}' has no model node '{name}'.{did_you_mean(name, names)}",
            fix=f"Model nodes of {package.name}: {', '.join(names) or 'none'}.",
            graph=package.name,
        )
    return found


def node_inputs(
    package: GraphPackage,
    registry: Registry,
    node: ModelNode,
    pins: Mapping[str, ResolvedModel] | None = None,
) -> Batch:
    """The graph's validation rows run through every node ``node`` depends on (local runner).

    Upstream model nodes load at their pin (``pins``) or their alias resolved now; feature
    lookups read the embedded store.
    """
    graph = package.graph
    dataset = package.validation_dataset
    if dataset is None or not dataset.is_file():
        raise GraphOpsError(
            f"Graph '{package.name}' has no validation data to prove a conversion on.",
            fix="Declare validation=Validation(dataset=..., label=...) with a dataset file.",
            graph=package.name,
        )
    needed = _ancestors(package, node)
    columns, _ = to_columns(read_rows(dataset), graph.request, source=str(dataset))
    models = {
        n.name: registry.load(n, (pins or {}).get(n.name))
        for n in needed
        if isinstance(n, ModelNode)
    }
    store = open_store(None, package.path) if uses_features(needed) else None
    try:
        runner = LocalRunner(graph, models, nodes=needed, features=store)
        return runner.run(columns, batch_size=node.batching.offline_rows)
    finally:
        if store is not None:
            store.close()


def run_node(package: GraphPackage, node: ModelNode, model: Model, columns: Batch) -> Batch:
    """``node``'s output columns over ``columns``, computed with ``model``."""
    runner = LocalRunner(package.graph, {node.name: model}, nodes=[node])
    out = runner.run(columns, batch_size=node.batching.offline_rows)
    return {c: out[c] for c in node.outputs}


def compare(
    original: Batch, converted: Batch, tolerance: ConversionTolerance
) -> tuple[int, float, float, float]:
    """(rows, max abs diff, mean abs diff, label agreement) of two nodes' output columns.

    Numeric columns are compared element by element; a row's label agrees when, in every
    column, the argmax over the last axis is equal (outputs of 2+ dimensions) or the values are
    equal within ``tolerance.max_abs_diff`` (1-D outputs). Other columns must be equal.
    """
    rows = len(next(iter(original.values()))) if original else 0
    agree = np.ones(rows, dtype=bool)
    largest, total, count = 0.0, 0.0, 0
    for column, a_values in original.items():
        a, b = np.asarray(a_values), np.asarray(converted[column])
        if a.shape != b.shape:
            raise GraphOpsError(
                f'Column "{column}": the original answers shape {a.shape}, the converted '
                f"{b.shape}.",
                fix="Export the model with the inputs the node passes it (same rows, same columns).",
            )
        if a.dtype.kind not in "biuf" or b.dtype.kind not in "biuf":
            agree &= np.all((a == b).reshape(rows, -1), axis=1)
            continue
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        if diff.size:
            largest = max(largest, float(np.nanmax(diff)) if not np.isnan(diff).all() else np.inf)
            total, count = total + float(diff.sum()), count + diff.size
        if np.isnan(diff).any():
            largest = np.inf
        if a.ndim >= 2:
            same = np.argmax(a, axis=-1) == np.argmax(b, axis=-1)
            agree &= np.all(same.reshape(rows, -1), axis=1)
        else:
            agree &= diff <= tolerance.max_abs_diff
    agreement = float(agree.mean()) if rows else 1.0
    return rows, largest, total / count if count else 0.0, agreement


def prove_conversion(
    package: GraphPackage,
    registry: Registry,
    node: ModelNode,
    original: ResolvedModel,
    converted: ResolvedModel,
    tolerance: ConversionTolerance,
    *,
    columns: Batch | None = None,
    pins: Mapping[str, ResolvedModel] | None = None,
    record: bool = True,
) -> ConversionParity:
    """Run ``node`` with both versions on the validation data, compare, and record the proof.

    Args:
        package: The graph package (its validation data and nodes).
        registry: Where both versions load from (digests verified) and where the proof is recorded.
        node: The model node both versions run as.
        original: The version converted from.
        converted: The converted version.
        tolerance: The declared tolerance (`tolerance_of`).
        columns: The node's input columns, when computed already (`node_inputs`).
        pins: Pins of upstream model nodes (when ``columns`` must be computed).
        record: Write the proof as an MLflow run in ``conversion/<graph>``.
    """
    inputs = columns if columns is not None else node_inputs(package, registry, node, pins)
    before = run_node(package, node, registry.load(node, original), inputs)
    after = run_node(package, node, registry.load(node, converted), inputs)
    rows, largest, mean, agreement = compare(before, after, tolerance)
    parity = ConversionParity(
        node=node.name,
        original=original.uri,
        converted=converted.uri,
        rows=rows,
        max_abs_diff=largest,
        mean_abs_diff=mean,
        label_agreement=agreement,
        tolerance_max_abs_diff=tolerance.max_abs_diff,
        min_label_agreement=tolerance.min_label_agreement,
    )
    if record:
        parity.run_id = registry.record_run(
            experiment=CONVERSION_EXPERIMENT.format(graph=package.name),
            run_name=f"convert-{node.name}",
            tags={
                "graphops.graph": package.name,
                "graphops.version": package.graph.version,
                "graphops.node": node.name,
                "graphops.original": original.uri,
                "graphops.converted": converted.uri,
                "graphops.original.digest": original.digest,
                "graphops.converted.digest": converted.digest,
                "graphops.status": "passed" if parity.passed else "failed",
            },
            params={
                "tolerance.max_abs_diff": tolerance.max_abs_diff,
                "tolerance.min_label_agreement": tolerance.min_label_agreement,
            },
            metrics={
                "max_abs_diff": largest if np.isfinite(largest) else 1e308,
                "mean_abs_diff": mean if np.isfinite(mean) else 1e308,
                "label_agreement": agreement,
                "rows": rows,
                "passed": float(parity.passed),
            },
            passed=parity.passed,
        )
    return parity


def converted_from(registry: Registry, pin: ResolvedModel) -> ResolvedModel | None:
    """The original of a converted version (its ``graphops.converted_from`` tag), pinned; or None."""
    source = registry.version_tags(pin.name, pin.version).get(CONVERTED_FROM_TAG)
    return registry.resolve(ModelURI.parse(source)) if source else None


def conversions(
    package: GraphPackage,
    registry: Registry,
    pins: Mapping[str, ResolvedModel],
    *,
    record: bool = True,
) -> list[ConversionParity]:
    """The proof of every model node pinned to a converted version, against its original.

    What validation adds for such nodes: the same check as `export_onnx`, with the graph's
    declared tolerance, on the validation data (upstream model nodes at their pins).
    """
    proofs = []
    for node in package.graph.model_nodes:
        pin = pins.get(node.name)
        original = converted_from(registry, pin) if pin is not None else None
        if pin is None or original is None:
            continue
        proofs.append(
            prove_conversion(
                package,
                registry,
                node,
                original,
                pin,
                tolerance_of(package),
                pins=pins,
                record=record,
            )
        )
    return proofs


def export_onnx(
    package: GraphPackage,
    node_name: str,
    registry: Registry,
    *,
    alias: str | None = None,
    max_abs_diff: float | None = None,
    min_label_agreement: float | None = None,
) -> Export:
    """Convert ``node_name``'s pinned model to ONNX, register it, prove it, alias it if proved.

    The ONNX version is a new version of the same registered model (MLflow's onnx flavor),
    tagged ``graphops.converted_from`` = the original's ``models:/name/N``; exporting the same
    original again reuses it (the exported bytes are made deterministic). The alias (default
    ``<original alias>-onnx``) is set only when the proof passes.

    Raises:
        GraphOpsError: Unknown node, bad tolerance, no validation data, a model already in
            ONNX or of a kind graphops does not convert, a failed export.
    """
    node = model_node(package, node_name)
    tolerance = tolerance_of(
        package, max_abs_diff=max_abs_diff, min_label_agreement=min_label_agreement
    )
    where = where_of(node)
    original = registry.resolve(node.uri, where=where)
    if CONVERTED_FROM_TAG in registry.version_tags(original.name, original.version):
        raise RegistryError(
            f"{original.uri} (what {node.uri} points at) is itself converted from "
            f"{registry.version_tags(original.name, original.version)[CONVERTED_FROM_TAG]}.",
            fix="Point the node at the original version (e.g. its champion alias) and export that.",
            **where,
        )
    target = alias or f"{node.uri.alias or f'v{original.version}'}-onnx"
    columns = node_inputs(package, registry, node)
    model = registry.load(node, original)
    examples = _inputs_of(package, node, model, columns)
    proto = to_onnx(model, examples, node, original.uri)
    converted = registry.register_flavor(
        name=original.name,
        flavor="onnx",
        model=proto,
        alias=None,
        params={"converted_from": original.uri, "graph": package.name, "node": node.name},
        description=f"ONNX export of {original.uri} ({package.name}.{node.name}), by "
        "graphops export onnx",
        pip_requirements=_requirements(),
        save_as_external_data=proto.ByteSize() > _PROTOBUF_LIMIT,
    )
    tags = registry.version_tags(converted.name, converted.version)
    reused = tags.get(CONVERTED_FROM_TAG) == original.uri
    if not reused:
        registry.set_version_tags(
            converted.name, converted.version, {CONVERTED_FROM_TAG: original.uri}
        )
    parity = prove_conversion(
        package, registry, node, original, converted, tolerance, columns=columns
    )
    if parity.passed:
        registry.set_alias(converted.name, target, converted.version)
    return Export(
        original=original, converted=converted, alias=target, parity=parity, reused=reused
    )


# -- conversion ----------------------------------------------------------------------------------


class _Recording:
    """A model that remembers the arrays it was called with (what the node passes it)."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.calls: list[tuple[np.ndarray, ...]] = []

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        self.calls.append(tuple(np.asarray(a) for a in arrays))
        return self.model(*arrays)


def _inputs_of(
    package: GraphPackage, node: ModelNode, model: Model, columns: Batch
) -> tuple[np.ndarray, ...]:
    """The arrays the node hands its model for the first `EXPORT_ROWS` rows."""
    recording = _Recording(model)
    head = {k: v[:EXPORT_ROWS] for k, v in columns.items()}
    LocalRunner(package.graph, {node.name: recording}, nodes=[node]).run_batch(head)
    if len(recording.calls) != 1:
        raise GraphOpsError(
            f"Model node {node.name} called its model {len(recording.calls)} times for one batch.",
            fix="graphops exports models a node calls once per batch (model(columns...)).",
            node=node.name,
            file=node.file,
            line=node.line,
        )
    return recording.calls[0]


def _requirements() -> list[str]:
    """The runtime the ONNX version needs (skips MLflow's slow requirement inference)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return [f"onnxruntime=={version('onnxruntime')}", f"onnx=={version('onnx')}"]
    except PackageNotFoundError:
        return ["onnxruntime", "onnx"]


def _ancestors(package: GraphPackage, node: Node) -> list[Node]:
    """The nodes ``node`` depends on, in the graph's topological order."""
    graph = package.graph
    seen: set[str] = set()
    pending = list(graph.upstream(node))
    while pending:
        current = pending.pop()
        if current.name not in seen:
            seen.add(current.name)
            pending.extend(graph.upstream(current))
    return [n for n in graph.order if n.name in seen]
