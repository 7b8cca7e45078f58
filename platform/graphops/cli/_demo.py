"""The main job on embedded defaults: train + register, plan, run on validation data, summarize."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.rule import Rule
from rich.table import Table

from graphops.errors import GraphOpsError
from graphops.graph import discover
from graphops.plan import mermaid, plan

from ._common import console
from ._views import (
    catalog_table,
    deployments_table,
    plan_table,
    run_tables,
    validation_table,
)

if TYPE_CHECKING:
    from graphops.runtime import LocalRun
    from graphops.validation import GraphValidation


@contextmanager
def _step(title: str, timings: dict[str, float]) -> Iterator[None]:
    console.print(Rule(f"[bold]{title}[/]", align="left"))
    started = time.perf_counter()
    with console.status(f"{title} ..."):
        yield
    timings[title] = time.perf_counter() - started
    console.print(f"[green]✓[/] {title} [dim]({timings[title]:.1f} s)[/]")


def demo(
    ctx: typer.Context,
    graph: Annotated[
        list[str] | None,
        typer.Option("--graph", "-g", help="Only these graphs (repeatable; default: all)."),
    ] = None,
) -> None:
    """Run the main job on embedded defaults (local MLflow on sqlite, this repository).

    For every graph: train and register its model, print its plan, run it locally on its
    validation data, validate it offline on Ray Data (gates, online/offline parity, MLflow
    record), serve it on Ray Serve and answer real HTTP requests; then print a summary. Safe to re-run: training is
    deterministic and an identical model version is reused rather than registered again.
    """
    from graphops.runtime import read_rows, run_local
    from graphops.runtime.online import undeploy
    from graphops.validation import validate_graphs, validated_commit, write_markdown

    settings = ctx.obj
    timings: dict[str, float] = {}
    with _step("Discover graphs", timings):
        catalog = discover(settings.root())
        console.print(catalog_table(catalog))
    packages = [p for p in catalog.packages if not graph or p.name in graph]
    registry = settings.registry()
    console.print(f"MLflow store: [bold]{registry.tracking_uri}[/]")
    runs: dict[str, LocalRun] = {}
    for pkg in packages:
        trainer: Callable[..., Any] | None = pkg.trainer()
        if trainer is not None:
            with _step(f"{pkg.name}: train and register the model", timings):
                pinned = trainer(registry)
                console.print(
                    f"registered [bold]{pinned.uri}[/] as @{pinned.alias} ({pinned.digest[:19]})"
                )
        with _step(f"{pkg.name}: plan", timings):
            the_plan = plan(pkg.graph)
            console.print(plan_table(the_plan))
            console.print(mermaid(the_plan), markup=False, highlight=False)
        if pkg.validation_dataset is not None:
            with _step(f"{pkg.name}: run locally on its validation data", timings):
                run = run_local(
                    pkg,
                    registry,
                    read_rows(pkg.validation_dataset),
                    source=pkg.validation_dataset.name,
                )
                label = [pkg.graph.validation.label] if pkg.graph.validation else []
                for part in run_tables(run, [*pkg.graph.response_fields, *label], limit=5):
                    console.print(part)
                runs[pkg.name] = run
    with _step("Validate every graph offline on Ray Data and record it in MLflow", timings):
        repo = settings.root()
        report = validate_graphs(
            repo,
            [p.name for p in packages],
            registry,
            commit=validated_commit(repo),
            selection="All graphs (demo).",
        )
        console.print(validation_table(report))
        path = registry.work_dir / "reports" / "validation.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        *pictures, _ = write_markdown(report, path)
        console.print(f"Markdown report: {path}")
        for picture in pictures:
            console.print(f"Plan picture: {picture}")
    validated = {g.graph: g for g in report.graphs}
    first = next((p for p in packages if p.validation_dataset is not None), None)
    for pkg in packages:
        with _step(f"{pkg.name}: serve on Ray Serve and answer real HTTP requests", timings):
            online = _serve_and_ask(pkg, registry)
        if pkg is first:  # the served application becomes arm "a" of an experiment
            with _step(f"{pkg.name}: an A/A experiment behind the router (90/10, sticky)", timings):
                _experiment_demo(pkg, registry, online)
        undeploy(online.name)
    with _step("GitOps: what promoting to dev would pin (dry run: nothing written)", timings):
        _promotion_preview(repo, [p.name for p in packages], registry)
    failed = _summary(packages, runs, validated, timings, registry.tracking_uri)
    failed = failed or bool(catalog.failures) or report.exit_code != 0
    if failed:
        raise typer.Exit(1)


def _serve_and_ask(pkg: Any, registry: Any) -> Any:
    """Deploy the graph as a Serve application, send one request and a list, show the answers."""
    import requests

    from graphops.runtime import read_rows
    from graphops.runtime.online import deploy, free_port, undeploy

    # At most 0.75 CPU per application: a second one (the experiment's arm "b") fits beside it.
    online = deploy(pkg, registry, port=free_port(), cpu_budget=0.75)
    try:
        console.print(deployments_table(online.deployments, f"{pkg.name}: Serve deployments"))
        console.print(f"POST {online.url}   OpenAPI {online.openapi_url}")
        rows = read_rows(pkg.validation_dataset)[:3] if pkg.validation_dataset else []
        bodies = [{f: r[f] for f in pkg.graph.request_fields} for r in rows]
        for body in ([online.args.example] if online.args.example else []) + [bodies]:
            answer = requests.post(online.url, json=body, timeout=60)
            shown = "one object" if isinstance(body, dict) else f"a list of {len(body)}"
            console.print(f"{shown} -> {answer.status_code} {answer.text}", markup=False)
            if answer.status_code != 200:
                raise GraphOpsError(
                    f"The served graph answered {answer.status_code}.",
                    fix="See the answer above.",
                    graph=pkg.name,
                )
    except BaseException:
        undeploy(online.name)
        raise
    return online


def _experiment_demo(pkg: Any, registry: Any, arm_a: Any) -> None:
    """Two applications of the same graph behind the experiment router, 90/10 by a sticky key.

    An A/A test (both arms run the same version) shows the machinery of `graphops experiment`
    without a second version: the split, stickiness, the arm header and the per-arm report.
    ``arm_a`` is the application already serving the graph; arm "b" is started beside it.
    """
    import requests
    from ray import serve

    from graphops.runtime import read_rows
    from graphops.runtime._traffic import RouteArm, RouterConfig
    from graphops.runtime.online import deploy, undeploy
    from graphops.runtime.router import RouterArgs, router_app

    from ._experiment import report_table

    key = pkg.graph.request_fields[0]
    names = [arm_a.name, f"{pkg.name}-b"]
    try:
        arm_b = deploy(
            pkg, registry, name=names[1], route=f"/_graphops/arm/{names[1]}", cpu_budget=0.75
        )
        config = RouterConfig(
            experiment=f"{pkg.name}-demo",
            arms=(
                RouteArm(version="a", app=names[0], weight=90),
                RouteArm(version="b", app=names[1], weight=10),
            ),
            sticky_key=key,
        )
        route = f"/{pkg.name}-experiment"
        serve.run(
            router_app(RouterArgs(graph=pkg.name, route=route), config),
            name=f"{pkg.name}-router",
            route_prefix=route,
        )
        url = arm_b.url.split("/_graphops/")[0] + route
        console.print(f"router: POST {url} -> a ({names[0]}) 90%, b ({names[1]}) 10%")
        rows = [
            {f: r[f] for f in pkg.graph.request_fields} for r in read_rows(pkg.validation_dataset)
        ]
        arms: list[str] = []
        for chunk in (rows[i : i + 60] for i in range(0, len(rows), 60)):
            arms += _arms(requests.post(url, json=chunk, timeout=60), len(chunk))
        first = rows[:60]
        sticky = _arms(requests.post(url, json=first, timeout=60), len(first)) == arms[:60]
        console.print(
            f"{len(rows)} rows by {key}: a {arms.count('a')}, b {arms.count('b')}; "
            f"the same 60 rows again went to the same arms: {'yes' if sticky else 'NO'}"
        )
        if not sticky:
            raise GraphOpsError(
                "The router sent the same rows to other arms the second time.",
                fix="Report a bug: assignment by sticky key must be deterministic.",
                graph=pkg.name,
            )
        time.sleep(1.5)  # router replicas flush their counters every second
        console.print(report_table(requests.get(f"{url}/experiment", timeout=30).json()))
        console.print(
            "In an environment this is `graphops experiment start <graph> --env dev --weight 10` "
            "(docs/experiments.md)."
        )
    finally:
        for name in (f"{pkg.name}-router", names[1]):
            undeploy(name)


def _arms(answer: Any, rows: int) -> list[str]:
    """The arm of each row of a list answer (the header names one, or one per row)."""
    if answer.status_code != 200:
        raise GraphOpsError(f"The router answered {answer.status_code}: {answer.text[:300]}")
    got = answer.headers["x-graphops-arm"].split(",")
    return got * rows if len(got) == 1 else got


def _promotion_preview(repo: Any, names: list[str], registry: Any) -> None:
    """The gates and the lock `graphops promote <graph> --to dev` would commit, per graph."""
    from graphops.controller.promote import promote

    from ._gitops import lock_summary

    for name in names:
        try:
            result = promote(repo, name, "dev", registry, dry_run=True)
        except GraphOpsError as exc:  # e.g. not a git checkout, or uncommitted graph files
            console.print(f"[yellow]{name}: not promotable from here:[/] {exc}")
            continue
        gates = ", ".join(f"{g.name} {'pass' if g.passed else 'FAIL'}" for g in result.gates)
        console.print(f"{name} -> dev: gates {gates}")
        console.print(lock_summary(result.lock), markup=False)
    console.print(
        "Promote for real with `graphops promote <graph> --to dev`, then `graphops apply --env dev` "
        "(docs/environments.md)."
    )


def _summary(
    packages: list[Any],
    runs: dict[str, LocalRun],
    validated: dict[str, GraphValidation],
    timings: dict[str, float],
    store: str,
) -> bool:
    console.print(Rule("[bold]Summary[/]", align="left"))
    table = Table(title_justify="left")
    for column in (
        "graph",
        "version",
        "content hash",
        "models",
        "local run",
        "gates",
        "validation run",
    ):
        table.add_column(column)
    failed = False
    for pkg in packages:
        run = runs.get(pkg.name)
        metrics = ", ".join(f"{m.metric.name}={m.value:.4f}" for m in run.metrics) if run else "-"
        ok = run is None or all(
            m.passed for m in run.metrics
        )  # no validation data: nothing to gate
        failed |= not ok
        table.add_row(
            pkg.name,
            pkg.graph.version,
            pkg.content_hash[:19],
            ", ".join(p.uri for p in run.pins.values()) if run else "-",
            f"{run.stats.rows} rows, {metrics}" if run else "-",
            "[green]pass[/]" if ok else "[red]FAIL[/]",
            _validation_cell(validated.get(pkg.name)),
        )
    console.print(table)
    console.print(f"Total {sum(timings.values()):.1f} s; MLflow store {store}")
    if store.startswith("sqlite:///"):
        console.print(f"Browse it: [bold]mlflow ui --backend-store-uri {store}[/]")
    return failed


def _validation_cell(result: GraphValidation | None) -> str:
    if result is None:
        return "-"
    colour = "green" if result.status == "passed" else "red"
    return f"[{colour}]{result.status}[/] {result.run_id or ''}".rstrip()
