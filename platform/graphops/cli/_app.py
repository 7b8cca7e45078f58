"""The `graphops` command line: new, list, plan, train, run, batch, validate, serve and the demo."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel

from graphops._verbosity import VERBOSE_ENV
from graphops._views import (
    catalog_table,
    deployments_table,
    operators_table,
    plan_table,
    run_tables,
)
from graphops.errors import GraphOpsError

from ._common import GraphArg, Settings, console, friendly
from ._demo import demo
from ._experiment import experiment_app
from ._export import export_app
from ._features import EnvOption, env_features, features_app
from ._gitops import apply, controller, diff, pin_image, promote, render
from ._new import new
from ._offline import batch, validate
from ._online import serve
from ._status import rollouts, status

app = typer.Typer(
    name="graphops",
    help="GitOps for ML inference graphs on Ray: author, plan, run, validate and promote graphs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


@app.callback()
def _root(
    ctx: typer.Context,
    repo: Annotated[
        Path | None,
        typer.Option(
            envvar="GRAPHOPS_REPO", help="Repository root (default: nearest parent with graphs/)."
        ),
    ] = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            envvar="MLFLOW_TRACKING_URI",
            help="MLflow tracking URI (default: sqlite in <repo>/.graphops).",
        ),
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Show Ray's own log lines and Ray Data's progress bars (default: in the log "
            "files only). Sets GRAPHOPS_VERBOSE=1, which the demo's subprocesses inherit.",
        ),
    ] = False,
) -> None:
    if verbose:
        import os

        os.environ[VERBOSE_ENV] = "1"  # read by graphops._verbosity, here and in subprocesses
    ctx.obj = Settings(repo, tracking_uri)


@app.command("list")
@friendly
def list_graphs(ctx: typer.Context) -> None:
    """List the graphs under graphs/ with version, models and content hash; report broken ones."""
    from graphops.graph import discover

    catalog = discover(ctx.obj.root())
    console.print(catalog_table(catalog))
    if catalog.failures:
        raise typer.Exit(1)


@app.command("plan")
@friendly
def plan_graph(
    ctx: typer.Context,
    graph: GraphArg,
    no_fuse: Annotated[
        bool,
        typer.Option(
            "--no-fuse", help="One stage per node, explicit stage= groups kept (to measure fusion)."
        ),
    ] = False,
    no_colocate: Annotated[
        bool,
        typer.Option(
            "--no-colocate",
            help="Offline: one Ray Data operator per stage (CPU stages not run in the model's actor).",
        ),
    ] = False,
    mermaid_out: Annotated[
        Path | None,
        typer.Option(
            "--mermaid",
            help="Also write the Mermaid diagram to this file (a Markdown block); a relative "
            "path is taken from the current folder, e.g. .graphops/plan.md (git-ignored).",
        ),
    ] = None,
    svg_out: Annotated[
        Path | None,
        typer.Option(
            "--svg",
            help="Also write the diagram as a self-contained SVG picture here (a relative path "
            "is taken from the current folder).",
        ),
    ] = None,
) -> None:
    """Show how a graph is cut into stages (deployments / operators), with a Mermaid diagram.

    --mermaid FILE writes the diagram as a ```mermaid block (GitHub renders it); --svg FILE
    writes the same picture as a standalone SVG (request, stage boxes, nodes, response, edges
    named by column).
    """
    from graphops.diagram import mermaid, svg
    from graphops.planner import offline_operators, plan
    from graphops.runtime.schema import AppArgs, deployment_specs

    the_plan = plan(ctx.obj.package(graph).graph, fuse=not no_fuse)
    console.print(plan_table(the_plan))
    specs = deployment_specs(the_plan)
    console.print(
        deployments_table(specs, f"Online: {len(specs)} Ray Serve deployments (as declared)")
    )
    cpu_only = deployment_specs(
        the_plan, AppArgs(graph=the_plan.graph.name, cpu_only=True, fuse=not no_fuse)
    )
    if len(cpu_only) < len(specs):
        inside = [s for s in specs[1:] if s.name not in {c.name for c in cpu_only}]
        console.print(
            f"On a cluster without GPUs the ingress also runs {', '.join(s.name for s in inside)} "
            f"(serving.colocate, the default): {len(cpu_only)} deployment(s), no hop."
        )
    operators = offline_operators(the_plan, colocate=not no_colocate)
    console.print(operators_table(operators, float(os.cpu_count() or 1)))
    diagram = mermaid(the_plan)
    console.print(
        Panel(diagram.rstrip(), title="Mermaid (paste into any Markdown file)", title_align="left"),
        markup=False,
    )
    if mermaid_out:
        mermaid_out = mermaid_out.resolve()
        mermaid_out.parent.mkdir(parents=True, exist_ok=True)
        mermaid_out.write_text(f"```mermaid\n{diagram}```\n")
        console.print(f"Diagram written to {mermaid_out}")
    if svg_out:
        svg_out = svg_out.resolve()
        svg_out.parent.mkdir(parents=True, exist_ok=True)
        svg_out.write_text(svg(the_plan), encoding="utf-8")
        console.print(f"Picture written to {svg_out}")


@app.command("train")
@friendly
def train(ctx: typer.Context, graph: GraphArg) -> None:
    """Run a graph's training entry point (train.py) and register its model in MLflow."""
    pkg = ctx.obj.package(graph)
    trainer = pkg.trainer()
    if trainer is None:
        raise GraphOpsError(
            f"Graph '{graph}' has no train.py.", fix="Add train.py with train(registry)."
        )
    registry = ctx.obj.registry()
    with console.status(f"Training {graph} ..."):
        pinned = trainer(registry)
    console.print(
        f"Registered [bold]{pinned.uri}[/] ({pinned.digest[:19]}) in {registry.tracking_uri}"
    )


@app.command("run")
@friendly
def run(
    ctx: typer.Context,
    graph: GraphArg,
    input: Annotated[
        Path | None,
        typer.Option(
            "--input",
            "-i",
            help="Parquet or JSON-lines rows (default: the graph's validation data).",
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write outputs (.parquet or .jsonl).")
    ] = None,
    limit: Annotated[int, typer.Option(help="Rows to print.")] = 10,
    batch_size: Annotated[int, typer.Option(min=1, help="Rows per batch.")] = 256,
    env: EnvOption = None,
) -> None:
    """Run a graph locally (in-process reference runner, no Ray) on a file and print the result."""
    from graphops.runtime import read_rows, run_local, to_rows, write_rows

    pkg = ctx.obj.package(graph)
    path = input or pkg.validation_dataset
    if path is None:
        raise GraphOpsError(
            f"Graph '{graph}' declares no validation dataset.", fix="Pass --input FILE."
        )
    with console.status(f"Running {graph} on {path.name} ..."):
        result = run_local(
            pkg,
            ctx.obj.registry(),
            read_rows(path),
            batch_size=batch_size,
            source=str(path),
            features=env_features(ctx, env),
        )
    fields = list(pkg.graph.response_fields)
    validation = pkg.graph.validation
    extra = [validation.label] if validation and validation.label in result.columns else []
    for part in run_tables(result, fields + extra, limit):
        console.print(part)
    if result.features is not None:
        stats = result.features
        console.print(
            "feature lookups: "
            + ", ".join(
                f"{t}: {stats.keys[t]} keys, {stats.missing.get(t, 0)} missing, "
                f"{stats.timeouts.get(t, 0)} timed-out batches"
                for t in stats.keys
            )
        )
    if output:
        write_rows(to_rows(result.columns, fields + extra), output)
        console.print(f"Wrote {len(result.responses)} rows to {output}")
    if any(not m.passed for m in result.metrics):
        raise typer.Exit(1)


app.command("new")(friendly(new))
app.command("demo")(friendly(demo))
app.command("batch")(friendly(batch))
app.command("validate")(friendly(validate))
app.command("serve")(friendly(serve))
app.add_typer(features_app)
for _command in (render, promote, diff, apply, status, rollouts, controller):
    app.command(_command.__name__)(friendly(_command))
app.command("pin-image")(friendly(pin_image))


app.add_typer(experiment_app, name="experiment")
app.add_typer(export_app, name="export")


def main() -> None:
    """Console-script entry point."""
    # Token authentication on, said explicitly (DESIGN.md): a local `ray.init` then starts its
    # cluster with a token and without Ray's "Token authentication is enabled" warning, which it
    # prints when the mode is left unset. It must be set before Ray is imported (its config reads
    # it then); `RAY_AUTH_MODE=disabled` still opts out.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    app()
