"""Offline commands: `graphops batch` (Ray Data job) and `graphops validate` (gates + records)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from graphops._views import validation_table
from graphops.errors import GraphOpsError

from ._common import GraphArg, console

if TYPE_CHECKING:
    from graphops.registry import Registry


def batch(
    ctx: typer.Context,
    graph: GraphArg,
    input: Annotated[
        Path, typer.Option("--input", "-i", help="Parquet, JSON lines or CSV file/folder.")
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Output folder; its suffix picks the format (.parquet/.jsonl/.csv).",
        ),
    ],
    no_fuse: Annotated[
        bool,
        typer.Option(
            "--no-fuse",
            help="One Ray Data operator per node (explicit stage= groups stay together).",
        ),
    ] = False,
    address: Annotated[
        str | None,
        typer.Option(envvar="RAY_ADDRESS", help="Ray cluster (default: a local one, started now)."),
    ] = None,
) -> None:
    """Run a graph as a Ray Data batch job: read, one operator per stage, write."""
    from graphops.runtime.offline import check_output, run_offline

    settings = ctx.obj
    package = settings.package(graph)
    check_output(output)
    console.print(f"Batch [bold]{graph}[/] {package.graph.version}: {input} -> {output}")
    run = run_offline(
        package, settings.registry(), input, output=output, fuse=not no_fuse, address=address
    )
    if run.gpu_dropped:
        console.print("[yellow]note:[/] the cluster has no GPU; GPU stages ran on CPUs.")
    table = Table(
        title=f"{run.rows} rows in {run.seconds:.1f} s = {run.rows_per_second:,.0f} rows/s",
        title_justify="left",
    )
    table.add_column("stage")
    table.add_column("compute seconds", justify="right")
    for stage, seconds in run.stage_seconds.items():
        table.add_row(stage, f"{seconds:.3f}")
    console.print(table)
    for node, pin in run.pins.items():
        console.print(f"model {node}: {pin.uri} ({pin.digest[:19]})")


def validate(
    ctx: typer.Context,
    graphs: Annotated[
        list[str] | None, typer.Argument(help="Graphs to validate (default: all).")
    ] = None,
    changed: Annotated[
        bool, typer.Option("--changed", help="Only graphs changed since the merge base.")
    ] = False,
    base: Annotated[
        str | None,
        typer.Option(help="Base ref for --changed (default: origin/main, main or master)."),
    ] = None,
    report_md: Annotated[
        Path | None,
        typer.Option(
            "--report-md",
            help="Write the Markdown report here, and each plan's SVG (<graph>.plan.svg) beside it.",
        ),
    ] = None,
    report_json: Annotated[
        Path | None, typer.Option("--report-json", help="Write the JSON report here.")
    ] = None,
    no_record: Annotated[
        bool, typer.Option("--no-record", help="Do not write MLflow runs.")
    ] = False,
    no_fuse: Annotated[bool, typer.Option("--no-fuse", help="Validate the unfused plan.")] = False,
    parity: Annotated[
        bool,
        typer.Option(
            "--parity/--no-parity",
            help="Also serve each graph on Ray Serve and check its HTTP answers equal the offline ones.",
        ),
    ] = True,
    train_missing: Annotated[
        bool,
        typer.Option(
            "--train-missing", help="Train (train.py) graphs whose models are not registered yet."
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Validate again even when a passed validation of the same version, content hash, "
            "model digests and validation data is recorded (default: reuse it, and say so).",
        ),
    ] = False,
) -> None:
    """Validate graphs offline (Ray Data) against their MLflow models and gates; record each run.

    A graph whose lock (version, content hash, model digests, validation data digest) already
    has a passed validation is not run again: that run is shown and named (with parity asked
    for, only a run that checked parity counts). ``--force`` validates anyway.

    With parity (the default) each graph is then served on Ray Serve and its answers over HTTP
    must equal the offline ones (floats within the graph's parity_tolerance). Each graph's wall
    time is shown with its parts: Ray start, model resolve, Data run, parity serve, MLflow record.

    Exit code 0: all passed; 1: a gate failed; 2: a graph could not be loaded or run.
    """
    from graphops.graph import graph_names
    from graphops.validation import (
        changed_graphs,
        to_json,
        validate_graphs,
        validated_commit,
        write_markdown,
    )

    settings = ctx.obj
    repo = settings.root()
    if changed and graphs:
        raise GraphOpsError(
            f"Got graph names ({', '.join(graphs)}) together with --changed.",
            fix="Use either explicit graph names or --changed, not both.",
        )
    if changed:
        change = changed_graphs(repo, base=base)
        names = list(change.graphs)
        scope = (
            "every graph (platform-wide change)"
            if change.everything
            else ", ".join(names) or "none"
        )
        selection = (
            f"Changed since `{change.base}` (merge base `{change.merge_base[:12]}`): {scope}."
        )
    else:
        names = list(graphs or graph_names(repo))
        selection = f"Graphs: {', '.join(names)}."
    console.print(selection)
    registry = settings.registry()
    if train_missing:
        _train_missing(repo, names, registry)
    with console.status(f"Validating {len(names)} graph(s) on Ray Data ..."):
        report = validate_graphs(
            repo,
            names,
            registry,
            commit=validated_commit(repo),
            fuse=not no_fuse,
            record=not no_record,
            parity=parity,
            selection=selection,
            reuse=not force,
        )
    console.print(validation_table(report))
    if report_md:
        *pictures, _ = write_markdown(report, report_md)
        console.print(f"Markdown report: {report_md}")
        for picture in pictures:
            console.print(f"Plan picture: {picture}")
    if report_json:
        report_json.write_text(to_json(report))
        console.print(f"JSON report: {report_json}")
    raise typer.Exit(report.exit_code)


def _train_missing(repo: Path, names: list[str], registry: Registry) -> None:
    """Run the training entry point of each graph with a model reference that does not resolve."""
    from graphops.errors import RegistryError
    from graphops.graph import load_graph

    for name in names:
        try:
            package = load_graph(repo, name)
            for node in package.graph.model_nodes:
                registry.resolve(node.uri)
        except RegistryError:
            trainer = package.trainer()
            if trainer is not None:
                with console.status(f"Training {name} (its model is not registered yet) ..."):
                    pinned = trainer(registry)
                console.print(f"Trained and registered {pinned.uri} for {name}.")
        except GraphOpsError:
            continue  # validation reports the broken graph with its file and line
