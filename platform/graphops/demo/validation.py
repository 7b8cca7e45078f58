"""The main job's validation step: every graph on Ray Data, or its passed validation reused.

A re-run of the main job does not validate a lock (code, models, data) that already passed: it
says so and shows that run, so the summary's Validation and Live tables agree. The reuse is
`graphops validate`'s own (`validate_graphs` with ``reuse``): one rule for both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from graphops._views import console, validation_table
from graphops.demo.job import DemoJob

if TYPE_CHECKING:
    from graphops.validation import ValidationReport


def validate_step(job: DemoJob, names: list[str], revalidate: bool = False) -> ValidationReport:
    """`graphops validate`: Ray Data, gates, parity with Serve, MLflow record, Markdown report.

    A graph whose lock (code, models, data) already passed is not validated again unless
    ``revalidate``: its record is reused, so the Validation and Live tables name the same run.
    """
    from graphops.validation import validate_graphs, validated_commit, write_markdown

    with job.step("Validate every graph offline on Ray Data and record it in MLflow"):
        report = validate_graphs(
            job.root,
            names,
            job.registry,
            commit=validated_commit(job.root),
            selection="All graphs (demo).",
            reuse=not revalidate,
        )
        console.print(validation_table(report, again="--revalidate"))
        path = job.registry.work_dir / "reports" / "validation.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        *pictures, _ = write_markdown(report, path)
        console.print(f"Markdown report: {path}")
        for picture in pictures:
            console.print(f"Plan picture: {picture}")
    return report
