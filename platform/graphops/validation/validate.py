"""Offline validation of a graph: run it on Ray Data over its validation data, gate, record.

The MLflow run written for each validation (passed, failed or error) is the evidence promotion
checks later; its tags pin exactly what was validated: graph version, content hash, commit, model
versions and digests, dataset digest and platform version.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import graphops
from graphops.diagram import mermaid, svg
from graphops.environments import environment_names, load_release
from graphops.errors import GraphOpsError
from graphops.graph import GraphPackage, MetricResult, evaluate, load_graph
from graphops.planner import plan
from graphops.registry import TRUSTED_ENV, TRUSTED_TAG, Registry, ValidationRecord, where_of
from graphops.runtime import read_rows
from graphops.validation.conversion import conversions
from graphops.validation.parity import check_parity
from graphops.validation.report import graph_json, graph_markdown
from graphops.validation.results import (
    TIMED_PARTS,
    GraphValidation,
    MetricGate,
    Status,
    ValidationReport,
)
from graphops.validation.reuse import (
    PARITY_METRIC,
    file_digest,
    passed_validation,
    reusable,
    reused_validation,
)


def pinned_baseline(repo: Path, graph: str) -> str | None:
    """Validation run id of the version of ``graph`` pinned furthest downstream, if any.

    Reads each environment's ``release.yaml`` (the lock's ``validation_run``), preferring prod
    over staging over dev, then any other environment.
    """
    names = environment_names(repo)
    ordered: list[str] = [n for n in ("prod", "staging", "dev") if n in names]
    ordered += [n for n in names if n not in ordered]
    for env in ordered:
        entry = load_release(repo, env).graphs.get(graph)
        if entry is not None and entry.lock.validation_run:
            return entry.lock.validation_run
    return None


def validate_graph(
    repo: Path,
    name: str,
    registry: Registry,
    *,
    commit: str | None = None,
    fuse: bool = True,
    record: bool = True,
    parity: bool = True,
) -> GraphValidation:
    """Validate one graph; never raises for a broken graph (the result says ``error``).

    Args:
        repo: Repository root.
        name: Graph name.
        registry: Where models come from and where the validation run is recorded.
        commit: The commit validated (recorded).
        fuse: Validate the fused plan.
        record: Write the MLflow validation run.
        parity: Also serve the graph on Ray Serve and check its answers equal the offline ones.
    """
    from graphops.runtime.offline import run_offline  # Ray only when a graph actually runs

    begun = time.perf_counter()
    timings: dict[str, float] = {}
    try:
        package = load_graph(repo, name)
    except GraphOpsError as exc:
        return GraphValidation(graph=name, status="error", problems=[str(exc)], commit=commit)
    result = GraphValidation(
        graph=name,
        status="passed",
        version=package.graph.version,
        content_hash=package.content_hash,
        commit=commit,
    )
    try:
        validated_plan = plan(package.graph, fuse=fuse)
    except GraphOpsError:
        pass  # the offline run below reports the same error with its fix
    else:
        result.plan, result.plan_svg = mermaid(validated_plan), svg(validated_plan)
    dataset = package.validation_dataset
    digest = file_digest(dataset) if dataset is not None and dataset.is_file() else None

    def finish(status: Status, problems: list[str]) -> GraphValidation:
        result.status, result.problems = status, problems
        timings["total"] = time.perf_counter() - begun  # the MLflow copy: up to the record
        result.timings = _breakdown(timings)
        recording = time.perf_counter()
        done = _recorded(result, registry, package, digest, record)
        timings["mlflow_record"] = time.perf_counter() - recording
        timings["total"] = time.perf_counter() - begun
        done.timings = _breakdown(timings)
        return done

    if dataset is None or package.graph.validation is None:
        return finish(
            "error",
            [
                f"Graph '{name}' declares no validation (dataset, label, metrics). "
                "Add validation=Validation(...) to the Graph."
            ],
        )
    bump = _needs_version_bump(registry, package)
    if bump:
        return finish("failed", [bump])
    started = time.perf_counter()
    try:
        # Resolved here, each with its node's file and line, so a refused model names them.
        pins = {
            n.name: registry.resolve(n.uri, where=where_of(n)) for n in package.graph.model_nodes
        }
        timings["model_resolve"] = time.perf_counter() - started
        run = run_offline(package, registry, dataset, pins=pins, fuse=fuse)
        timings["ray_start"] = run.phases.get("ray_start", 0.0)
        timings["model_resolve"] += run.phases.get("model_resolve", 0.0)
        timings["data_run"] = run.phases.get("data_run", 0.0)
    except GraphOpsError as exc:
        return finish("error", [str(exc)])
    except Exception as exc:  # Ray failing in a way no node reported
        return finish("error", [f"The offline run failed: {type(exc).__name__}: {exc}"])
    result.seconds = time.perf_counter() - started
    result.rows, result.stage_seconds = run.rows, run.stage_seconds
    result.models = {node: pin.uri for node, pin in run.pins.items()}
    result.digests = {node: pin.digest for node, pin in run.pins.items()}
    result.formats = {
        node: registry.formats[pin.uri]
        for node, pin in run.pins.items()
        if pin.uri in registry.formats
    }
    metrics = evaluate(package.graph.validation, run.columns)
    try:
        baseline = _baseline(registry, repo, package, digest)
    except GraphOpsError as exc:
        return finish("error", [f"The pinned baseline cannot be read: {exc}"])
    result.baseline_run = baseline.run_id if baseline else None
    result.gates = [_gate(m, baseline) for m in metrics]
    problems = [_why(g) for g in result.gates if not g.passed]
    proving = time.perf_counter()
    try:
        result.conversions = conversions(package, registry, run.pins, record=record)
    except GraphOpsError as exc:
        return finish("error", [f"The conversion proof could not run: {exc}"])
    if result.conversions:
        timings["conversion_proof"] = time.perf_counter() - proving
    problems += [
        f"Model node {c.node} is pinned to {c.converted}, converted from {c.original}, which "
        f"it does not answer like within the declared tolerance ({c.why()}) on {c.rows} "
        "validation rows. Pin the original, re-export, or declare the tolerance "
        "(Validation(conversion=ConversionTolerance(...)))."
        for c in result.conversions
        if not c.passed
    ]
    if parity:
        serving = time.perf_counter()
        try:
            result.parity = check_parity(
                package, registry, read_rows(dataset), run.columns, run.pins, fuse=fuse
            )
        except GraphOpsError as exc:
            return finish("error", [f"The parity check could not run: {exc}"])
        finally:
            timings["parity_serve"] = time.perf_counter() - serving
        if not result.parity.passed:
            p = result.parity
            problems.append(
                f"Online answers differ from offline ones in {p.mismatches} of {p.rows} rows "
                f"(largest float difference {p.max_abs_diff:.3g}, tolerance {p.tolerance:g}): "
                + "; ".join(p.examples)
                + ". Make the nodes deterministic and independent of batch composition."
            )
    return finish("failed", problems) if problems else finish("passed", [])


def validate_graphs(
    repo: Path,
    names: Sequence[str],
    registry: Registry,
    *,
    commit: str | None = None,
    fuse: bool = True,
    record: bool = True,
    parity: bool = True,
    selection: str = "",
    reuse: bool = False,
) -> ValidationReport:
    """Validate each graph in turn; one broken graph never hides the others' results.

    With ``reuse``, a graph whose lock already has a passed validation (`passed_validation`)
    is not run again: that record is shown (``reused`` is set, ``run_id`` names it). A fused,
    default validation only: ``fuse=False`` always runs.
    """
    graphs = []
    for name in names:
        again = reusable(repo, name, registry, parity=parity) if reuse and fuse else None
        graphs.append(
            again
            or validate_graph(
                repo, name, registry, commit=commit, fuse=fuse, record=record, parity=parity
            )
        )
    return ValidationReport(graphs=graphs, selection=selection, tracking_uri=registry.tracking_uri)


def _breakdown(timings: dict[str, float]) -> dict[str, float]:
    """``total`` and the parts in `TIMED_PARTS` order; ``other`` is what the parts leave over."""
    parts = {k: timings[k] for k in TIMED_PARTS if k in timings and k != "other"}
    total = timings.get("total", 0.0)
    return {"total": total, **parts, "other": max(total - sum(parts.values()), 0.0)}


def _needs_version_bump(registry: Registry, package: GraphPackage) -> str | None:
    """The "bump the version" failure, when this version already passed at another content hash."""
    g = package.graph
    for past in registry.validations(g.name, g.version):
        if past.status == "passed" and past.content_hash != package.content_hash:
            return (
                f"Version {g.version} of '{g.name}' was already validated at content hash "
                f"{past.content_hash[:19]} (run {past.run_id}) and its files changed since "
                f"({package.content_hash[:19]}): bump the version in graphs/{g.name}/__init__.py."
            )
    return None


def _baseline(
    registry: Registry, repo: Path, package: GraphPackage, dataset_digest: str | None
) -> ValidationRecord | None:
    """The pinned version's validation record, when it was measured on the same data."""
    run_id = pinned_baseline(repo, package.name)
    if run_id is None:
        return None
    record = registry.validation(run_id)
    if record.status != "passed":
        raise GraphOpsError(
            f"The validation run {run_id} pinned for '{package.name}' did not pass ({record.status}).",
            fix="Pin a version whose validation passed (release.yaml validation_run).",
            graph=package.name,
        )
    return record if record.dataset_digest == dataset_digest else None


def _gate(result: MetricResult, baseline: ValidationRecord | None) -> MetricGate:
    m = result.metric
    before = baseline.metrics.get(m.name) if baseline else None
    regressed = False
    if before is not None and m.min is not None:
        regressed = result.value < before - m.tolerance
    elif before is not None and m.max is not None:
        regressed = result.value > before + m.tolerance
    return MetricGate(
        metric=m.name,
        column=m.column,
        value=result.value,
        gate=result.gate,
        passed=result.passed and not regressed,
        gate_passed=result.passed,
        regressed=regressed,
        baseline=before,
        tolerance=m.tolerance,
    )


def _why(gate: MetricGate) -> str:
    if not gate.gate_passed:
        return f"{gate.metric} = {gate.value:.4f} fails its gate {gate.gate}."
    return (
        f"{gate.metric} = {gate.value:.4f} regressed from the pinned {gate.baseline:.4f} "
        f"beyond the tolerance {gate.tolerance:g}."
    )


def _recorded(
    result: GraphValidation,
    registry: Registry,
    package: GraphPackage,
    dataset_digest: str | None,
    record: bool,
) -> GraphValidation:
    """Write the MLflow run for ``result`` (when ``record``) and return it with its run id."""
    if not record:
        return result
    tags = {
        "graphops.graph": result.graph,
        "graphops.version": result.version or "",
        "graphops.content_hash": result.content_hash or "",
        "graphops.commit": result.commit or "",
        "graphops.platform_version": graphops.__version__,
    }
    if os.environ.get(TRUSTED_ENV) == "1":
        tags[TRUSTED_TAG] = "1"
    if dataset_digest:
        tags["graphops.dataset_digest"] = dataset_digest
    for node, uri in result.models.items():
        tags[f"graphops.model.{node}"] = uri
        tags[f"graphops.model.{node}.digest"] = result.digests[node]
        if node in result.formats:
            tags[f"graphops.model.{node}.format"] = result.formats[node]
    metrics = {g.metric: g.value for g in result.gates}
    metrics.update({f"gate.{g.metric}.passed": float(g.passed) for g in result.gates})
    metrics.update({"rows": result.rows, "seconds": result.seconds})
    metrics.update({f"seconds.{k}": v for k, v in result.timings.items()})
    if result.parity is not None:
        metrics[PARITY_METRIC] = result.parity.mismatches
        metrics["parity.max_abs_diff"] = result.parity.max_abs_diff
        metrics["parity.rows"] = result.parity.rows
        metrics["parity.requests"] = result.parity.requests
    for c in result.conversions:
        metrics[f"conversion.{c.node}.max_abs_diff"] = min(c.max_abs_diff, 1e308)
        metrics[f"conversion.{c.node}.label_agreement"] = c.label_agreement
        metrics[f"conversion.{c.node}.passed"] = float(c.passed)

    def reports(run_id: str) -> dict[str, str]:
        result.run_id = run_id
        picture = "plan.svg" if result.plan_svg else None
        texts = {"report.md": graph_markdown(result, picture), "report.json": graph_json(result)}
        if result.plan_svg:
            texts["plan.svg"] = result.plan_svg
        return texts

    validation = package.graph.validation
    registry.record_validation(
        graph=package.name,
        tags=tags,
        params={"dataset": f"graphs/{package.name}/{validation.dataset}" if validation else ""},
        metrics=metrics,
        status=result.status,
        artifacts=reports,
    )
    return result


# `reuse`'s names stay importable from here, where they were first.
__all__ = [
    "PARITY_METRIC",
    "file_digest",
    "passed_validation",
    "pinned_baseline",
    "reusable",
    "reused_validation",
    "validate_graph",
    "validate_graphs",
]
