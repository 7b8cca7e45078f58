"""`graphops experiment start|report|conclude`: A/B experiments and shadow traffic in git."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from graphops._views import report_table

from ._common import EnvOption, GraphArg, console, friendly
from ._gitops import lock_summary

experiment_app = typer.Typer(
    help="A/B experiments and shadow traffic between graph versions, declared in release.yaml.",
    no_args_is_help=True,
)

PushOption = Annotated[
    str | None,
    typer.Option(help="Push the commit to this branch of origin (retrying on races)."),
]


@experiment_app.command("start")
@friendly
def start(
    ctx: typer.Context,
    graph: GraphArg,
    env: EnvOption,
    weight: Annotated[
        float | None,
        typer.Option(min=0, max=100, help="Percent of requests this version answers (an arm)."),
    ] = None,
    shadow: Annotated[
        float | None,
        typer.Option(min=0, max=100, help="Percent of requests copied to it (a shadow)."),
    ] = None,
    sticky_key: Annotated[
        str | None,
        typer.Option(help="Request field whose value keeps a caller on one arm (e.g. member_id)."),
    ] = None,
    version: Annotated[
        str | None,
        typer.Option(help="Version to add (default: the checkout's; upstream envs: any live one)."),
    ] = None,
    push: PushOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check the gates and show the split; write nothing.")
    ] = False,
) -> None:
    """Add a validated version as an arm (--weight) or shadow (--shadow) beside the pinned one."""
    from graphops.controller.experiment import start as do_start

    result = do_start(
        ctx.obj.root(),
        graph,
        env,
        ctx.obj.registry(),
        weight=weight,
        shadow=shadow,
        sticky_key=sticky_key,
        version=version,
        push=push,
        dry_run=dry_run,
    )
    for g in result.gates:
        console.print(f"[green]✓[/] gate {g.name}: {g.detail}")
    console.print(lock_summary(result.lock))
    traffic = result.traffic
    assert traffic is not None
    arms = ", ".join(f"{v} {a.weight:g}%" for v, a in sorted(traffic.arms.items()))
    console.print(f"split: control {traffic.weight:g}% · {arms or '-'}")
    if traffic.shadow:
        console.print(f"shadow: {traffic.shadow.lock.version} gets {traffic.shadow.percent:g}%")
    _committed(result, dry_run)


@experiment_app.command("report")
@friendly
def report(
    ctx: typer.Context,
    graph: GraphArg,
    env: EnvOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    mlflow: Annotated[
        bool, typer.Option("--mlflow", help="Also log it to MLflow, tied to every arm's lock.")
    ] = False,
) -> None:
    """Per-arm requests, errors, latency, output distribution and shadow agreement, live."""
    from graphops.controller.experiment import log_report
    from graphops.controller.experiment import report as do_report
    from graphops.environments import load_release

    figures = do_report(ctx.obj.root(), graph, env)
    run = None
    if mlflow:
        entry = load_release(ctx.obj.root(), env).graphs[graph]
        run = log_report(ctx.obj.registry(), env, entry, figures)
    if as_json:
        print(json.dumps(figures.model_dump(mode="json") | {"mlflow_run": run}, indent=2))
        return
    console.print(report_table(figures))
    if run:
        console.print(f"Logged to MLflow run {run}")


@experiment_app.command("conclude")
@friendly
def conclude(
    ctx: typer.Context,
    graph: GraphArg,
    env: EnvOption,
    keep: Annotated[str, typer.Option(help="The version that wins: it takes 100%.")],
    push: PushOption = None,
) -> None:
    """End the experiment: the kept version takes the stable route, the other arms are removed."""
    from graphops.controller.experiment import conclude as do_conclude

    result = do_conclude(ctx.obj.root(), graph, env, keep, push=push)
    console.print(f"{graph} {keep} takes 100% of /{graph} in {env}; the other arms are removed.")
    _committed(result, False)


def _committed(result: Any, dry_run: bool) -> None:
    if dry_run:
        console.print("Dry run: nothing written.")
        return
    console.print(
        f"Committed {result.commit[:12]} on branch [bold]{result.branch}[/] ({', '.join(result.files)})"
    )
    if result.pushed:
        console.print(f"Pushed to origin/{result.pushed}.")
    else:
        console.print(
            f"Next: git push origin {result.branch}, open a pull request, merge, then "
            f"`graphops apply --env {result.env}`."
        )
