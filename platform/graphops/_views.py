"""Rich renderings shared by the CLI commands and the demo, and the consoles they print to."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from graphops.errors import GraphOpsError

if TYPE_CHECKING:  # the CLI imports numpy, MLflow and torch only for commands that need them
    from graphops.graph import Catalog, MetricResult
    from graphops.planner import Operator, Plan
    from graphops.registry import ResolvedModel
    from graphops.runtime import LocalRun
    from graphops.runtime.schema import DeploymentSpec
    from graphops.runtime.split import SplitReport
    from graphops.validation import GraphValidation, ValidationReport
    from graphops.validation.conversion import Export

# Without a terminal (CI logs, pipes) Rich would wrap tables at 80 columns; give them room.
_WIDTH = None if sys.stdout.isatty() else 160
console = Console(width=_WIDTH)
errors = Console(stderr=True, width=_WIDTH)
_STATUS = {"passed": "[green]passed[/]", "failed": "[red]FAILED[/]", "error": "[red]ERROR[/]"}


def error_panel(exc: GraphOpsError) -> Panel:
    """An error as a red panel: what, where, fix."""
    lines = [f"[bold]{escape(exc.what)}[/]"]
    parts = [
        p
        for p in (exc.graph and f"graph {exc.graph}", exc.node and f"node {exc.node}", exc.location)
        if p
    ]
    if parts:
        lines.append(f"[dim]where:[/] {escape(', '.join(parts))}")
    if exc.fix:
        lines.append(f"[green]fix:[/] {escape(exc.fix)}")
    return Panel(
        "\n".join(lines),
        title=f"[red]{type(exc).__name__}[/]",
        title_align="left",
        border_style="red",
    )


def catalog_table(catalog: Catalog) -> Group:
    """Graphs found under ``graphs/`` and the failures, each failure with file:line."""
    table = Table(title=f"Graphs in {catalog.repo / 'graphs'}", title_justify="left")
    for column in ("graph", "version", "nodes", "models", "content hash", "description"):
        table.add_column(column)
    for pkg in catalog.packages:
        g = pkg.graph
        table.add_row(
            f"[bold]{g.name}[/]",
            g.version,
            str(len(g.nodes)),
            ", ".join(str(n.uri) for n in g.model_nodes) or "-",
            pkg.content_hash[:19],
            escape(g.description),
        )
    parts: list[Any] = [table]
    for failure in catalog.failures:
        parts.append(error_panel(failure.error))
    return Group(*parts)


def plan_table(plan: Plan) -> Table:
    """Stages of a plan with nodes, resources, scaling, batching and columns."""
    from graphops.diagram import describe_resources

    g = plan.graph
    fused = "fused" if plan.fused else "unfused (one stage per node, explicit stage= groups kept)"
    table = Table(
        title=f"Plan of {g.name} {g.version}: {len(plan.stages)} stages, {fused}",
        title_justify="left",
    )
    for column in (
        "#",
        "stage",
        "kind",
        "nodes",
        "resources",
        "scaling",
        "batching",
        "reads -> writes",
    ):
        table.add_column(column)
    for i, stage in enumerate(plan.stages, start=1):
        s = stage.scaling
        scaling = (
            f"{s.min_replicas}..{s.max_replicas} (autoscale)"
            if s.autoscaling
            else f"{s.replicas} replica(s)"
        )
        b = stage.batching
        table.add_row(
            str(i),
            f"[bold]{stage.name}[/]",
            stage.kind.value,
            " -> ".join(n.name for n in stage.nodes),
            describe_resources(stage.resources),
            scaling,
            f"≤{b.max_batch_size} / {b.max_wait_ms:g} ms" if b else "-",
            f"{', '.join(stage.inputs)} -> {', '.join(stage.outputs)}",
        )
    return table


def operators_table(operators: Sequence[Operator], cpus: float, gpus: float = 0.0) -> Table:
    """Offline operators (Ray Data ``map_batches``): stages co-located, tasks or actor pool."""
    from graphops.diagram import describe_resources
    from graphops.planner import pool_size

    table = Table(
        title=f"Offline: {len(operators)} Ray Data operator(s) (pools as on a cluster of "
        f"{cpus:g} CPUs, {gpus:g} GPUs)",
        title_justify="left",
    )
    for column in ("#", "operator", "stages", "runs as", "resources", "rows per batch", "outputs"):
        table.add_column(column)
    tasks = sum(o.resources.cpus for o in operators if not o.actors)
    for i, op in enumerate(operators, start=1):
        if op.actors:
            low, high = pool_size(op, cpus, gpus, others=tasks)
            runs = f"actors {low}" if low == high else f"actors {low}..{high}"
        else:
            runs = "tasks"
        stages = " + ".join(
            f"{s.name} (co-located)" if s.name in op.colocated else s.name for s in op.stages
        )
        table.add_row(
            str(i),
            f"[bold]{op.name}[/]",
            stages,
            runs,
            describe_resources(op.resources),
            str(op.batch_size),
            ", ".join(op.outputs),
        )
    return table


def pins_table(pins: dict[str, ResolvedModel]) -> Table:
    """Model node -> exact registry version and digest."""
    table = Table(title="Models (resolved in the registry)", title_justify="left")
    for column in ("node", "reference", "version", "digest"):
        table.add_column(column)
    for node, p in pins.items():
        ref = f"models:/{p.name}@{p.alias}" if p.alias else p.uri
        table.add_row(node, ref, p.uri, p.digest[:19])
    return table


def metrics_table(results: Sequence[MetricResult]) -> Table:
    """Metrics with their gate and pass/fail."""
    table = Table(title="Validation metrics", title_justify="left")
    for column in ("metric", "column", "value", "gate", "result"):
        table.add_column(column)
    for r in results:
        verdict = "[green]pass[/]" if r.passed else "[red]FAIL[/]"
        table.add_row(r.metric.name, r.metric.column, f"{r.value:.4f}", r.gate or "-", verdict)
    return table


def run_tables(run: LocalRun, fields: Sequence[str], limit: int) -> list[Any]:
    """First rows of a run's output, its timings, and its metrics when labelled."""
    rows = Table(
        title=f"Output (first {min(limit, len(run.responses))} of {len(run.responses)} rows)",
        title_justify="left",
    )
    for f in fields:
        rows.add_column(f)
    for i in range(min(limit, len(run.responses))):
        rows.add_row(*(_cell(run.columns[f][i]) for f in fields))
    timing = Table(title="Timing", title_justify="left")
    timing.add_column("node")
    timing.add_column("seconds", justify="right")
    for node, seconds in run.stats.node_seconds.items():
        timing.add_row(node, f"{seconds:.4f}")
    timing.add_row("[bold]total[/]", f"{run.stats.seconds:.4f}", end_section=True)
    timing.caption = f"{run.stats.rows} rows, {run.stats.rows_per_second:,.0f} rows/s"
    out: list[Any] = [pins_table(run.pins)] if run.pins else []
    out += [rows, timing]
    if run.metrics:
        out.append(metrics_table(run.metrics))
    return out


def _cell(value: Any) -> str:
    import numpy as np

    array = np.asarray(value)
    if array.ndim:  # a list cell (scores per candidate, top-k ids): its first few values
        shown = ", ".join(_cell(v) for v in array[:5])
        return f"[{shown}{', ...' if len(array) > 5 else ''}]"
    if array.dtype.kind == "f":
        return f"{float(value):.4f}"
    return escape(str(value))


def validation_table(report: ValidationReport, again: str = "--force") -> Group:
    """Validation outcome per graph (gates, rows, time, MLflow run) and every problem.

    A reused validation is said so under the table, with its run and ``again``: the option
    that validates anyway.
    """
    table = Table(
        title="Validation (offline on Ray Data; parity online on Serve)", title_justify="left"
    )
    for column in (
        "graph",
        "version",
        "status",
        "models",
        "gates",
        "parity",
        "rows",
        "seconds",
        "MLflow run",
    ):
        table.add_column(column)
    for g in report.graphs:
        gates = ", ".join(f"{x.metric}={x.value:.4f} {x.gate}" for x in g.gates) or "-"
        p = g.parity
        parity = (
            "-"
            if p is None
            else f"[green]{p.rows} rows equal[/]"
            if p.passed
            else f"[red]{p.mismatches}/{p.rows} differ[/]"
        )
        formats = sorted({g.formats.get(n, "?") for n in g.models})
        table.add_row(
            g.graph,
            g.version or "-",
            _STATUS[g.status] + (" (reused)" if g.reused else ""),
            escape(", ".join(formats)) or "-",
            gates,
            parity,
            str(g.rows),
            f"{g.seconds:.1f}",
            g.run_id or "-",
        )
    from graphops.validation.report import breakdown_line

    times = [f"{g.graph}: {escape(breakdown_line(g))}" for g in report.graphs if g.timings]
    reused = [Text(reuse_line(g, again)) for g in report.graphs if g.reused]
    problems = [f"[red]{g.graph}:[/] {escape(p)}" for g in report.graphs for p in g.problems]
    return Group(table, *times, *reused, *problems)


def conversion_table(graph: str, node: str, done: Export) -> Table:
    """The proof of one conversion: its figures against the graph's declared tolerance."""
    p = done.parity
    table = Table(
        title=f"{graph}.{node}: {done.original.uri} -> {done.converted.uri} (ONNX"
        f"{', reused' if done.reused else ''}) on {p.rows} validation rows",
        title_justify="left",
    )
    for column in ("figure", "value", "tolerance", "result"):
        table.add_column(column, justify="right" if column != "figure" else "left")

    def verdict(ok: bool) -> str:
        return "[green]pass[/]" if ok else "[red]FAIL[/]"

    table.add_row(
        "max abs diff",
        f"{p.max_abs_diff:.3g}",
        f"<= {p.tolerance_max_abs_diff:g}",
        verdict(p.max_abs_diff <= p.tolerance_max_abs_diff),
    )
    table.add_row("mean abs diff", f"{p.mean_abs_diff:.3g}", "-", "")
    table.add_row(
        "label agreement",
        f"{p.label_agreement:.4f}",
        f">= {p.min_label_agreement:g}",
        verdict(p.label_agreement >= p.min_label_agreement),
    )
    return table


def reuse_line(g: GraphValidation, again: str = "--force") -> str:
    """The line saying that ``g`` is a passed validation reused, naming its MLflow run."""
    return (
        f"{g.graph}: a passed validation of this code, these models and this data exists "
        f"(MLflow run {g.run_id}); reused. {again} validates again."
    )


def deployments_table(specs: Sequence[DeploymentSpec], title: str) -> Table:
    """Serve deployments of a graph application: what each runs, with what resources."""
    table = Table(title=title, title_justify="left")
    for column in (
        "deployment",
        "stages (nodes)",
        "CPUs",
        "GPUs",
        "replicas",
        "max ongoing",
        "batching",
    ):
        table.add_column(column)
    for d in specs:
        s = d.scaling
        replicas = f"{s.min_replicas}..{s.max_replicas}" if s.autoscaling else str(s.replicas)
        batching = (
            f"≤{d.max_batch_size} / {d.batch_wait_timeout_s * 1000:g} ms"
            if d.max_batch_size and d.batch_wait_timeout_s is not None
            else "-"
        )
        table.add_row(
            f"[bold]{d.name}[/]",
            ", ".join(d.nodes) or "(HTTP only)",
            f"{d.cpus:g}",
            f"{d.gpus:g}",
            replicas,
            str(d.max_ongoing_requests),
            batching,
        )
    return table


def report_table(report: SplitReport) -> Table:
    """A split's report as a Rich table: one row per arm (the stable first), then the mirror."""
    sticky = report.sticky_key or "none (random)"
    table = Table(
        title=f"{report.purpose.capitalize()} {report.name} · sticky key: {sticky}",
        title_justify="left",
    )
    for column in ("arm", "weight", "requests", "rows", "errors", "p50 ms", "p99 ms", "output"):
        table.add_column(column, justify="right" if column != "output" else "left")
    table.add_column("agreement", justify="right")
    for arm in report.arms:
        f = arm.figures
        share = f"mirror {arm.weight:g}%" if arm.role == "mirror" else f"{arm.weight:g}%"
        table.add_row(
            arm.version,
            share,
            str(f.get("requests", 0)),
            str(f.get("rows", 0)),
            str(f.get("errors", 0)),
            _ms(f.get("p50_ms")),
            _ms(f.get("p99_ms")),
            _output(f),
            f"{f['agreement']:.1%}" if "agreement" in f else "",
        )
    return table


def _ms(value: float | None) -> str:
    return "-" if value is None else f"≤{value:.1f}"


def _output(arm: dict[str, Any]) -> str:
    if "output" in arm:
        return " ".join(f"{k}:{v:.0%}" for k, v in list(arm["output"].items())[:5])
    if "output_numeric" in arm:
        n = arm["output_numeric"]
        return f"mean {n['mean']:.3g} ± {n['std']:.2g}"
    return "-"
