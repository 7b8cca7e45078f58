"""The main job's validation step: every graph on Ray Data, or its passed validation reused.

A re-run of the main job does not validate a lock (code, models, data) that already passed: it
says so and shows that run, so the summary's Validation and Live tables agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from graphops._views import console, validation_table
from graphops.demo.job import DemoJob
from graphops.errors import GraphOpsError

if TYPE_CHECKING:
    from graphops.validation import GraphValidation, ValidationReport


def validate_step(job: DemoJob, names: list[str], revalidate: bool = False) -> ValidationReport:
    """`graphops validate`: Ray Data, gates, parity with Serve, MLflow record, Markdown report.

    A graph whose lock (code, models, data) already passed is not validated again unless
    ``revalidate``: its record is reused, so the Validation and Live tables name the same run.
    """
    from graphops.validation import (
        ValidationReport,
        validate_graphs,
        validated_commit,
        write_markdown,
    )

    with job.step("Validate every graph offline on Ray Data and record it in MLflow"):
        reused = {} if revalidate else _reusable(job, names)
        fresh = validate_graphs(
            job.root,
            [n for n in names if n not in reused],
            job.registry,
            commit=validated_commit(job.root),
            selection="All graphs (demo).",
        )
        done = {g.graph: g for g in fresh.graphs} | reused
        report = ValidationReport(
            graphs=[done[n] for n in names],
            selection=fresh.selection,
            tracking_uri=fresh.tracking_uri,
        )
        console.print(validation_table(report))
        path = job.registry.work_dir / "reports" / "validation.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        *pictures, _ = write_markdown(report, path)
        console.print(f"Markdown report: {path}")
        for picture in pictures:
            console.print(f"Plan picture: {picture}")
    return report


def _reusable(job: DemoJob, names: list[str]) -> dict[str, GraphValidation]:
    """The graphs whose exact lock already passed a validation, as that validation."""
    from graphops.graph import load_graph
    from graphops.validation.validate import passed_validation, reused_validation

    out = {}
    for name in names:
        try:
            package = load_graph(job.root, name)
            record = passed_validation(job.registry, package)
        except GraphOpsError:
            continue  # validating it reports the problem with its fix
        if record is not None:
            out[name] = reused_validation(package, record)
            console.print(
                f"{name}: a passed validation of this code and these models exists (run "
                f"{record.run_id}); reused. --revalidate forces a new one."
            )
    return out
