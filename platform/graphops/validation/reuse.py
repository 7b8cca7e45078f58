"""Reusing a validation: a passed record of exactly this lock stands for running it again.

The same lock is the same graph version and content hash, the same model artifacts (by digest)
and the same validation data (by digest). `validate_graphs` asks here before it runs a graph;
in CI's trusted job only a trusted record of a commit in the checkout's history counts.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from graphops._git import in_history
from graphops.diagram import mermaid, svg
from graphops.errors import GraphOpsError
from graphops.graph import GraphPackage, MetricResult, load_graph
from graphops.planner import plan
from graphops.registry import TRUSTED_ENV, Registry, ValidationRecord
from graphops.validation.parity import ParityResult
from graphops.validation.results import GraphValidation, MetricGate

PARITY_METRIC = "parity.mismatches"
"""Metric of a validation run that checked online/offline parity (rows that differed)."""


def file_digest(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes."""
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def reusable(
    repo: Path, name: str, registry: Registry, *, parity: bool = True
) -> GraphValidation | None:
    """The passed validation of ``name``'s lock as it is now, shown again; None when there is none.

    Asked for ``parity``, only a record whose validation checked parity counts. A record of a
    commit outside ``repo``'s history does not count (promotion trusts no such record: the same
    code validated on another branch is validated again here). In the trusted job (`TRUSTED_ENV`), the record
    must also be the trusted job's: it must not lean on a pull request's own run.
    """
    try:
        package = load_graph(repo, name)
        record = passed_validation(
            registry,
            package,
            parity=parity,
            trusted_in=repo if os.environ.get(TRUSTED_ENV) == "1" else None,
            history=repo,
        )
    except GraphOpsError:
        return None  # validating it reports the problem, with its fix
    return reused_validation(package, record) if record is not None else None


def passed_validation(
    registry: Registry,
    package: GraphPackage,
    *,
    parity: bool = False,
    trusted_in: Path | None = None,
    history: Path | None = None,
) -> ValidationRecord | None:
    """The newest passed validation of exactly this lock, if the registry holds one.

    The same lock means the same graph version and content hash (code and validation data),
    the same model artifacts (each model node's URI resolved now, compared by digest) and the
    same validation data digest.

    Args:
        registry: The MLflow registry (models, validation records).
        package: The graph package as it is now.
        parity: Only a record whose validation also checked online/offline parity.
        trusted_in: Only a trusted record (`TRUSTED_TAG`) of a commit in this repository's
            history (None: any record).
        history: No record of a commit outside this repository's history (None: any record;
            a record that names no commit, made outside git, counts).

    Raises:
        RegistryError: A model node's URI cannot be resolved (nothing to compare with).
    """
    g = package.graph
    digests = {n.name: registry.resolve(n.uri).digest for n in g.model_nodes}
    dataset = package.validation_dataset
    data = file_digest(dataset) if dataset is not None and dataset.is_file() else None
    for past in registry.validations(g.name, g.version):
        if (
            past.status == "passed"
            and past.content_hash == package.content_hash
            and past.digests == digests
            and past.dataset_digest == data
            and (not parity or PARITY_METRIC in past.metrics)
            and (trusted_in is None or _trusted(past, trusted_in))
            and (history is None or past.commit is None or in_history(history, past.commit))
        ):
            return past
    return None


def _trusted(record: ValidationRecord, repo: Path) -> bool:
    """Written by the trusted job, of a commit in ``repo``'s history."""
    return record.trusted and record.commit is not None and in_history(repo, record.commit)


def reused_validation(package: GraphPackage, record: ValidationRecord) -> GraphValidation:
    """A passed validation record shown as a `GraphValidation` (gates and parity from its metrics)."""
    gates = []
    validation = package.graph.validation
    for metric in validation.metrics if validation else []:
        value = record.metrics.get(metric.name)
        if value is None:
            continue
        held = record.metrics.get(f"gate.{metric.name}.passed", 1.0) == 1.0
        gates.append(
            MetricGate(
                metric=metric.name,
                column=metric.column,
                value=value,
                gate=MetricResult(metric=metric, value=value).gate,
                passed=held,
                gate_passed=held,
                tolerance=metric.tolerance,
            )
        )
    the_plan = plan(package.graph)
    checked = PARITY_METRIC in record.metrics
    rows = int(record.metrics.get("rows", 0))
    parity = (
        ParityResult(
            rows=int(record.metrics.get("parity.rows", rows)),
            requests=int(record.metrics.get("parity.requests", 0)),
            mismatches=int(record.metrics[PARITY_METRIC]),
            max_abs_diff=record.metrics.get("parity.max_abs_diff", 0.0),
            tolerance=validation.parity_tolerance if validation else 0.0,
        )
        if checked
        else None
    )
    return GraphValidation(
        graph=package.name,
        status="passed",
        version=record.version,
        content_hash=record.content_hash,
        commit=record.commit,
        models=dict(record.models),
        digests=dict(record.digests),
        formats=dict(record.formats),
        gates=gates,
        rows=rows,
        seconds=record.metrics.get("seconds", 0.0),
        run_id=record.run_id,
        parity=parity,
        reused=True,
        plan=mermaid(the_plan),
        plan_svg=svg(the_plan),
    )
