"""`graphops export onnx`: convert a model node's version to ONNX, register it, prove parity."""

from __future__ import annotations

from typing import Annotated

import typer

from graphops._views import conversion_table
from graphops.errors import GraphOpsError

from ._common import GraphArg, console, friendly

export_app = typer.Typer(
    name="export",
    help="Convert a graph's models to other formats, with proof on the graph's validation data.",
    no_args_is_help=True,
)


@export_app.command("onnx")
@friendly
def onnx(
    ctx: typer.Context,
    graph: GraphArg,
    node: Annotated[str, typer.Argument(help="The model node whose pinned version to convert.")],
    alias: Annotated[
        str | None,
        typer.Option(
            help="Alias for the ONNX version once proved (default: <node's alias>-onnx, e.g. "
            "champion-onnx)."
        ),
    ] = None,
    max_abs_diff: Annotated[
        float | None,
        typer.Option(
            help="Override the graph's Validation.conversion.max_abs_diff (default 1e-4)."
        ),
    ] = None,
    min_label_agreement: Annotated[
        float | None,
        typer.Option(
            help="Override the graph's Validation.conversion.min_label_agreement (default 0.999)."
        ),
    ] = None,
) -> None:
    """Export NODE's model (torch or scikit-learn) to ONNX as a new version, proved on validation data.

    The ONNX model is registered as a new version of the same registered model (MLflow's onnx
    flavor), tagged graphops.converted_from. Both versions then answer the graph's validation
    rows (its nodes up to NODE run locally); the largest and mean absolute differences and the
    label agreement are gated by the graph's declared tolerance and recorded as an MLflow run
    (experiment conversion/<graph>). Only a proved version gets the alias. Exporting the same
    version again reuses the ONNX version.

    Exit code 0: proved and aliased; 1: out of tolerance (no alias set) or an error.
    """
    from graphops.validation.conversion import export_onnx

    settings = ctx.obj
    package = settings.package(graph)
    registry = settings.registry()
    with console.status(f"Exporting {graph}.{node} to ONNX and proving it ..."):
        done = export_onnx(
            package,
            node,
            registry,
            alias=alias,
            max_abs_diff=max_abs_diff,
            min_label_agreement=min_label_agreement,
        )
    p = done.parity
    console.print(conversion_table(graph, node, done))
    console.print(f"Proof recorded as MLflow run {p.run_id} (experiment conversion/{graph}).")
    if not p.passed:
        raise GraphOpsError(
            f"{done.converted.uri} does not answer like {done.original.uri} within the declared "
            f"tolerance ({p.why()}); the alias {done.alias} was not set.",
            fix="Check the export (inputs' dtype, batch-dependent layers), or, if the difference "
            "is acceptable, declare it: Validation(conversion=ConversionTolerance(...)) in the "
            "graph, or --max-abs-diff / --min-label-agreement.",
            graph=graph,
            node=node,
        )
    console.print(
        f"[green]Proved.[/] models:/{done.converted.name}@{done.alias} -> {done.converted.uri}; "
        f"point the node at it to serve ONNX Runtime (validate proves it again)."
    )
