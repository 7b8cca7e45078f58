"""The main job's validation step: every graph on Ray Data (or reused), and an ONNX export proved.

A re-run of the main job does not validate a lock (code, models, data) that already passed: it
says so and shows that run, so the summary's Validation and Live tables agree. The reuse is
`graphops validate`'s own (`validate_graphs` with ``reuse``): one rule for both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from graphops._views import console, conversion_table, error_panel, errors, validation_table
from graphops.demo.job import DemoJob
from graphops.demo.names import ONNX_GRAPH, ONNX_NODE
from graphops.errors import GraphOpsError

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


def export_step(job: DemoJob) -> None:
    """`graphops export onnx`: `ONNX_GRAPH`'s model as ONNX, proved on its validation data.

    The converted version gets the alias ``champion-onnx`` only when it answers like the torch
    model within the graph's tolerance; a re-run finds the same bytes and reuses the version.
    """
    from graphops.graph import load_graph
    from graphops.validation.conversion import export_onnx

    with job.step(f"{ONNX_GRAPH}: export the model of {ONNX_NODE} to ONNX, proved on its data"):
        try:
            done = export_onnx(load_graph(job.root, ONNX_GRAPH), ONNX_NODE, job.registry)
        except GraphOpsError as exc:  # said with its fix; the main job goes on
            errors.print(error_panel(exc))
            job.problems.append(f"ONNX export: {exc.what.splitlines()[0]}")
            return
        console.print(conversion_table(ONNX_GRAPH, ONNX_NODE, done))
        if not done.parity.passed:
            job.problems.append(f"ONNX export of {ONNX_GRAPH}.{ONNX_NODE}: {done.parity.why()}")
            return
        console.print(
            f"models:/{done.converted.name}@{done.alias} -> {done.converted.uri}, served by ONNX "
            f"Runtime once the node {ONNX_GRAPH}.{ONNX_NODE} points at it (`graphops export "
            "onnx`, docs/models.md)."
        )
