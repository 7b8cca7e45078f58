"""What runs where: `graphops status` (with live figures) and `graphops rollouts` (the records)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ._common import EnvOption, console


def status(
    ctx: typer.Context,
    env: Annotated[
        str | None, typer.Option("--env", "-e", help="One environment (default: all).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    live: Annotated[
        bool,
        typer.Option(
            "--live", help="Also read rps, error rate, p50/p99 per graph and arm from the cluster."
        ),
    ] = False,
    seconds: Annotated[float, typer.Option(help="Window of --live, in seconds.")] = 2.0,
) -> None:
    """For each environment and graph: version, lock, validation run, live state, drift, since when.

    Live deployments running on one replica are listed under the table as single points of
    failure, with the fix (`policy.min_replicas: 2`). A second table shows the placement of every
    running replica: its Ray node, the node's kind (gpu, cpu, head) and whether the deployment
    needs a GPU (`--json`: `replicas`). On a cluster with GPUs (`cluster.gpus`) CPU-only work
    runs on nodes labelled graphops.io/node-kind=cpu only: a CPU-only replica on a GPU node, or
    a cluster where no node carries the label, is printed with the fix and the exit status is 1.

    ``--live`` adds what each graph (each arm of a split: an experiment or a canary) answers
    now, read from the graphs' own counters over ``--seconds`` (no Prometheus needed), and the last rollout of
    each graph (``environments/<env>/rollouts.yaml``), with the MLflow run that holds its copy.

    The live state is ``unreachable``, ``no token`` or ``token refused`` when an environment's
    cluster could not be read; the reason (and the variable to export) is printed under the
    table and the exit status is then 1. It is ``TAMPERED`` when a running application reports
    other code (content hash, ``GET <route>/health``) than its lock: also exit status 1.

    When no environment of the checkout releases a graph and the demo's GitOps sandbox does
    (after `graphops demo`), the sandbox's environments are shown, said in one line with the
    command that reads them (``--json`` never switches).
    """
    from graphops.controller.placement import CPU_NODE_FIX
    from graphops.controller.status import SPOF_FIX, UNREADABLE
    from graphops.controller.status import status as do_status

    root = ctx.obj.root()
    rows = do_status(root, env)
    if not rows and not as_json:
        demo = _demo_instead(root, env)
        root, rows = demo, do_status(demo, env) if demo != root else rows
    unread = {r.env: r.problem for r in rows if r.live in UNREADABLE}
    if as_json:
        out: object = [r.model_dump() for r in rows]
        if live:
            from graphops.controller.live import live as read_live

            envs = sorted({r.env for r in rows} - set(unread))
            figures = [f.model_dump() for e in envs for f in read_live(root, e)]
            out = {"status": out, "live": figures}
        print(json.dumps(out, indent=2))
        if (
            unread
            or any(r.tampering or r.placement_problem for r in rows)
            or any(p.misplaced for r in rows for p in r.replicas)
        ):
            raise typer.Exit(1)
        return
    table = Table(title="Environments", title_justify="left")
    for column in ("env", "graph", "version", "lock", "validation run", "live", "drift", "since"):
        table.add_column(column)
    for r in rows:
        colour = "green" if r.live == "RUNNING" else "red" if r.live in UNREADABLE else "yellow"
        table.add_row(
            r.env,
            r.graph,
            r.traffic or r.version,
            r.lock,
            r.validation_run or "-",
            f"[{colour}]{r.live}[/]",
            "[red]yes[/]" if r.drift else "no",
            r.since,
        )
    console.print(table)
    placed = [r for r in rows if r.replicas]
    if placed:
        where = Table(title="Placement (each running replica)", title_justify="left")
        for column in ("env", "application/deployment", "node", "kind", "needs", "rule"):
            where.add_column(column)
        for r in placed:
            for p in r.replicas:
                rule = "[red]CPU-only on a GPU node[/]" if p.misplaced else "ok"
                needs = "CPU only" if p.cpu_only else "GPU"
                where.add_row(r.env, p.deployment, p.node_id[:12], p.node_kind, needs, rule)
        console.print(where)
    misplaced = [p for r in rows for p in r.replicas if p.misplaced]
    for p in misplaced:
        console.print(
            f"[red]{p.deployment} runs on GPU node {p.node_id[:12]}[/] though it asks for no "
            f"GPU. Fix: {CPU_NODE_FIX}",
            highlight=False,
        )
    cannot = {r.env: r.placement_problem for r in rows if r.placement_problem}
    for name, problem in cannot.items():
        console.print(f"[red]{name}:[/] {problem} Fix: {CPU_NODE_FIX}", highlight=False)
    for r in rows:
        if r.single_points:
            console.print(
                f"[yellow]{r.env}: {r.graph} has single points of failure[/] (one running "
                f"replica): {', '.join(r.single_points)}. Fix: {SPOF_FIX}",
                highlight=False,
            )
    for name, problem in unread.items():
        console.print(f"[red]{name}:[/] {problem}", highlight=False)
    tampered = [r for r in rows if r.tampering]
    for r in tampered:
        console.print(
            f"[red]{r.env}: tampering:[/] {r.graph} runs other code than its lock: "
            f"{'; '.join(r.tampering)}. Fix: remove the application from the cluster and run "
            f"`graphops apply --env {r.env}` (docs/security.md).",
            highlight=False,
        )
    _rollouts(root, sorted({r.env for r in rows}))
    if live:
        _live(root, sorted({r.env for r in rows} - set(unread)), seconds)
    if unread or tampered or misplaced or cannot:
        raise typer.Exit(1)


def _demo_instead(root: Path, env: str | None) -> Path:
    """The demo's sandbox when it releases what ``root`` does not (said in one line), else ``root``.

    After `graphops demo`, the checkout's environments release nothing: the demo promotes in a
    clone of it, `graphops.demo.released_sandbox`.
    """
    from graphops.demo import released_sandbox

    sandbox = released_sandbox(root, env)
    where = f"environments/{env}" if env else "environments/*"
    if sandbox is None:
        console.print(
            f"Nothing is released in {where} of {root} (no release.yaml names a graph): "
            "`graphops promote` pins one.",
            highlight=False,
        )
        return root
    shown = sandbox.relative_to(Path.cwd()) if sandbox.is_relative_to(Path.cwd()) else sandbox
    command = f"graphops --repo {shown} status" + (f" --env {env}" if env else "")
    console.print(
        f"Nothing is released in {where} of this checkout; the demo's environments are in its "
        f"sandbox {shown}, shown below: `{command}`",
        highlight=False,
        soft_wrap=True,
    )
    return sandbox


def _rollouts(root: Path, envs: list[str]) -> None:
    """The last rollout of each graph that has one (records in rollouts.yaml)."""
    from graphops.controller.rollout import load_records

    for env in envs:
        for graph, records in load_records(root, env).items():
            if records:
                last = records[0]
                steps = " → ".join(f"{s.label} {s.decision}" for s in last.steps)
                colour = "green" if last.outcome == "promoted" else "red"
                mlflow = f" MLflow run {last.mlflow_run}." if last.mlflow_run else ""
                console.print(
                    f"{env}: {graph} {last.strategy} {last.stable} → {last.candidate} "
                    f"[{colour}]{last.outcome}[/] {last.ended} by {last.by}: {steps}. "
                    f"{last.reason}{mlflow}",
                    highlight=False,
                )


def rollouts(
    ctx: typer.Context,
    env: EnvOption,
    graph: Annotated[str | None, typer.Option(help="One graph (default: all).")] = None,
    record: Annotated[
        bool,
        typer.Option(
            "--record", help="Copy the records into MLflow (when it missed them); idempotent."
        ),
    ] = False,
) -> None:
    """The rollouts recorded in git (environments/<env>/rollouts.yaml), newest first.

    ``--record`` copies them into MLflow (experiment ``graphops-rollouts/<env>``, one run per
    rollout), reusing the run of a rollout already there: what to run when apply said MLflow
    did not record one.
    """
    from graphops.controller.rollout import load_records, record_again

    root = ctx.obj.root()
    if record:
        for done in record_again(root, env, graph, ctx.obj.tracking_uri):
            console.print(
                f"{env}: {done.graph} {done.candidate}: MLflow run {done.mlflow_run}",
                highlight=False,
            )
        return
    table = Table(title=f"Rollouts in {env}", title_justify="left")
    columns = (
        "graph",
        "strategy",
        "from",
        "version",
        "outcome",
        "steps",
        "ended",
        "by",
        "MLflow run",
    )
    for column in columns:
        table.add_column(column)
    for name, records in sorted(load_records(root, env).items()):
        if graph is not None and name != graph:
            continue
        for r in records:
            steps = " → ".join(f"{s.label} {s.decision}" for s in r.steps)
            table.add_row(
                name,
                r.strategy,
                r.stable,
                r.candidate,
                r.outcome,
                steps,
                r.ended,
                r.by,
                r.mlflow_run or "-",
            )
    console.print(table)


def _live(root: Path, envs: list[str], seconds: float) -> None:
    """The live figures of each environment's graphs, per arm."""
    from graphops.controller.live import live as read_live

    table = Table(title=f"Live (last {seconds:g} s)", title_justify="left")
    for column in ("env", "graph", "version", "share", "rps", "errors", "p50 ms", "p99 ms", ""):
        table.add_column(column)
    for env in envs:
        for f in read_live(root, env, seconds=seconds):
            table.add_row(
                f.env,
                f.graph,
                f.version,
                f"{f.weight:g}%",
                f"{f.rps:.1f}",
                f"{f.error_rate:.1%}",
                f"≤{f.p50_ms:g}" if f.p50_ms is not None else "-",
                f"≤{f.p99_ms:g}" if f.p99_ms is not None else "-",
                f.problem or (f"replicas {f.replicas}" if f.replicas else f.role),
            )
    console.print(table)
