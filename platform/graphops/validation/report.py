"""Validation reports: Markdown (for $GITHUB_STEP_SUMMARY and MLflow) and JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from graphops.validation.results import TIMED_PARTS, GraphValidation, ValidationReport

_ICON = {"passed": "✅ passed", "failed": "❌ failed", "error": "💥 error"}


def graph_markdown(result: GraphValidation, picture: str | None = None) -> str:
    """One graph's section: status, gates table, models, timings, problems, plan.

    Args:
        result: The graph's validation.
        picture: Relative link to the plan's SVG picture, when one is written beside the report.
    """
    title = f"### `{result.graph}` {result.version or ''} — {_ICON[result.status]}"
    lines = [title, ""]
    facts = [
        ("content hash", f"`{result.content_hash[:19]}`" if result.content_hash else "-"),
        ("commit", f"`{result.commit[:12]}`" if result.commit else "-"),
        ("MLflow run", f"`{result.run_id}`" if result.run_id else "-"),
        ("baseline run", f"`{result.baseline_run}`" if result.baseline_run else "-"),
    ]
    lines.append(" · ".join(f"{k}: {v}" for k, v in facts))
    lines.append("")
    if result.gates:
        lines += [
            "| metric | column | value | gate | baseline | result |",
            "|---|---|---:|---|---:|---|",
        ]
        for g in result.gates:
            baseline = f"{g.baseline:.4f} (±{g.tolerance:g})" if g.baseline is not None else "-"
            verdict = "pass" if g.passed else ("**regressed**" if g.regressed else "**FAIL**")
            lines.append(
                f"| {g.metric} | {g.column} | {g.value:.4f} | {g.gate or '-'} | {baseline} | {verdict} |"
            )
        lines.append("")
    if result.models:
        lines += ["| model node | version | format | digest |", "|---|---|---|---|"]
        for node, uri in result.models.items():
            fmt = result.formats.get(node, "-").replace("unpickled", "**unpickled**")
            digest = result.digests.get(node, "")[:19]
            lines.append(f"| {node} | `{uri}` | {fmt} | `{digest}` |")
        lines.append("")
    if result.rows:
        stages = ", ".join(f"{k} {v:.3f} s" for k, v in result.stage_seconds.items())
        lines += [
            f"{result.rows} rows in {result.seconds:.1f} s (compute per stage: {stages}).",
            "",
        ]
    if result.timings:
        lines += [breakdown_line(result), ""]
    if result.parity is not None:
        p = result.parity
        verdict = "equal" if p.passed else f"**{p.mismatches} rows differ**"
        lines += [
            f"Online parity (Ray Serve over HTTP, {p.requests} requests): {p.rows} rows {verdict}; "
            f"largest float difference {p.max_abs_diff:.3g} (tolerance {p.tolerance:g}).",
            "",
        ]
    if result.conversions:
        lines += [
            "| converted node | original | converted | rows | max abs diff | mean abs diff "
            "| label agreement | result |",
            "|---|---|---|---:|---:|---:|---:|---|",
        ]
        for c in result.conversions:
            verdict = "pass" if c.passed else "**FAIL**"
            lines.append(
                f"| {c.node} | `{c.original}` | `{c.converted}` | {c.rows} "
                f"| {c.max_abs_diff:.3g} (<= {c.tolerance_max_abs_diff:g}) | {c.mean_abs_diff:.3g} "
                f"| {c.label_agreement:.4f} (>= {c.min_label_agreement:g}) | {verdict} |"
            )
        lines.append("")
    for problem in result.problems:
        lines.append(f"> {problem}")
    if result.problems:
        lines.append("")
    if result.plan:
        if picture:
            lines += [f"Plan picture: [{picture}]({picture})", ""]
        lines += [
            "<details><summary>Plan: stages, nodes and the columns between them</summary>",
            "",
            "```mermaid",
            result.plan.rstrip("\n"),
            "```",
            "",
            "</details>",
            "",
        ]
    return "\n".join(lines)


def breakdown_line(result: GraphValidation) -> str:
    """``Validation took N s end to end: Ray start a s, ...`` from `GraphValidation.timings`."""
    t = result.timings
    parts = ", ".join(f"{TIMED_PARTS[k]} {t[k]:.1f} s" for k in TIMED_PARTS if k in t)
    recorded = "" if "mlflow_record" in t else " (this copy was written during the MLflow record)"
    return f"Validation took {t.get('total', 0.0):.1f} s end to end{recorded}: {parts}."


def graph_json(result: GraphValidation) -> str:
    """One graph's result as indented JSON."""
    return result.model_dump_json(indent=2) + "\n"


def markdown(report: ValidationReport, pictures: Mapping[str, str] | None = None) -> str:
    """The whole report: a summary table then one section per graph.

    Args:
        report: The validation report.
        pictures: Graph name -> relative link to its plan's SVG (see `write_markdown`).
    """
    pictures = pictures or {}
    lines = ["## graphops validation", ""]
    if report.selection:
        lines += [report.selection, ""]
    lines += ["| graph | version | status | run |", "|---|---|---|---|"]
    for g in report.graphs:
        lines.append(
            f"| `{g.graph}` | {g.version or '-'} | {_ICON[g.status]} | `{g.run_id or '-'}` |"
        )
    lines.append("")
    lines += [graph_markdown(g, pictures.get(g.graph)) for g in report.graphs]
    lines.append(f"Records in MLflow: `{report.tracking_uri}` (experiments `validation/<graph>`).")
    return "\n".join(lines) + "\n"


def to_json(report: ValidationReport) -> str:
    """The whole report as indented JSON (with the exit code)."""
    data = report.model_dump(mode="json")
    data["exit_code"] = report.exit_code
    return json.dumps(data, indent=2) + "\n"


def write_markdown(report: ValidationReport, path: Path) -> list[Path]:
    """Write the Markdown report to ``path`` and each plan's SVG beside it, linked from it.

    Each graph whose plan is known gets ``<graph>.plan.svg`` in the report's folder.

    Returns:
        The files written: the pictures, then the report.
    """
    written, pictures = [], {}
    for g in report.graphs:
        if g.plan_svg:
            picture = path.parent / f"{g.graph}.plan.svg"
            picture.write_text(g.plan_svg, encoding="utf-8")
            written.append(picture)
            pictures[g.graph] = picture.name
    path.write_text(markdown(report, pictures), encoding="utf-8")
    return [*written, path]
