"""GitOps commands: render, promote, diff and apply the environments in git; the pull controller."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from graphops.errors import GraphOpsError

from ._common import EnvOption, console

if TYPE_CHECKING:
    from graphops.environments import GraphLock


def render(
    ctx: typer.Context,
    env: Annotated[
        str | None, typer.Option("--env", "-e", help="One environment (default: all).")
    ] = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="Write nothing; fail with the diff when a file is stale."),
    ] = False,
) -> None:
    """Render serve.yaml and rayservice.yaml of the environments from release.yaml (deterministic)."""
    from graphops.controller.render import render_all

    stale_any = False
    for rendered in render_all(ctx.obj.root(), env, ray_schema=not check):
        if check:
            stale = rendered.stale()
            for path, patch in stale.items():
                console.print(f"[red]stale:[/] {path}")
                console.print(patch, markup=False, highlight=False)
            stale_any |= bool(stale)
            if not stale:
                console.print(f"[green]✓[/] {rendered.env}: rendered files are up to date")
        else:
            written = rendered.write()
            names = ", ".join(p.name for p in written) or "nothing changed"
            console.print(f"{rendered.env}: {names}")
    if stale_any:
        console.print(
            "Rendered files differ from what release.yaml gives (stale, or edited by hand): "
            "run `graphops render` and commit."
        )
        raise typer.Exit(1)


def pin_image(
    ctx: typer.Context,
    digest: Annotated[str, typer.Argument(help="sha256:<hex> of the pushed image.")],
) -> None:
    """Pin the cluster image's digest (CI's image job) and re-render every environment."""
    from graphops.controller.image import pin_image as pin

    written = pin(ctx.obj.root(), digest)
    root = ctx.obj.root()
    for path in written:
        console.print(f"wrote {path.relative_to(root)}")
    if not written:
        console.print(f"{digest} is already pinned: nothing changed")


def promote(
    ctx: typer.Context,
    graph: Annotated[
        str | None, typer.Argument(help="Graph to promote (omit with --auto).")
    ] = None,
    to: Annotated[str, typer.Option("--to", help="Target environment.")] = "dev",
    version: Annotated[
        str | None, typer.Option(help="Refuse unless this is the version promoted.")
    ] = None,
    auto: Annotated[
        bool,
        typer.Option("--auto", help="Every graph validated on HEAD (what CI runs after a merge)."),
    ] = False,
    push: Annotated[
        str | None,
        typer.Option(
            help="Push the promotion commit to this branch of origin (retrying on races)."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check the gates and show the lock; write nothing.")
    ] = False,
) -> None:
    """Check the gates and commit the graph's lock to an environment on a promote/... branch."""
    from graphops.controller.gates import health_probe
    from graphops.controller.promote import promote as do_promote
    from graphops.graph import graph_names

    settings = ctx.obj
    repo = settings.root()
    if auto == (graph is not None):
        raise GraphOpsError(
            "Name one graph, or pass --auto (not both).",
            fix="e.g. graphops promote digits --to dev",
        )
    registry = settings.registry()
    names = graph_names(repo) if graph is None else [graph]  # --auto, checked above
    refused = False
    for name in names:
        try:
            result = do_promote(
                repo,
                name,
                to,
                registry,
                version=version,
                push=push,
                live=health_probe(repo),
                dry_run=dry_run,
            )
        except GraphOpsError as exc:
            if not auto:
                raise
            console.print(f"[yellow]skipped[/] {name}: {exc}")
            refused = True
            continue
        table = Table(title=f"Gates: {name} {result.lock.version} -> {to}", title_justify="left")
        for column in ("gate", "result", "detail"):
            table.add_column(column)
        for g in result.gates:
            table.add_row(g.name, "[green]pass[/]" if g.passed else "[red]FAIL[/]", g.detail)
        console.print(table)
        console.print(lock_summary(result.lock))
        if dry_run:
            console.print(
                f"Dry run: {name} {result.lock.version} may be promoted to {to}; nothing written."
            )
            continue
        if result.commit is None:
            console.print(f"{name} {result.lock.version} is already pinned in {to}: nothing to do.")
            continue
        console.print(
            f"Committed {result.commit[:12]} on branch [bold]{result.branch}[/] ({', '.join(result.files)})"
        )
        if result.pushed:
            console.print(f"Pushed to origin/{result.pushed}.")
        else:
            console.print(f"Next: git push origin {result.branch} and open a pull request.")
    if refused and not auto:
        raise typer.Exit(1)


def lock_summary(lock: GraphLock) -> str:
    """One line per part of a lock."""
    models = ", ".join(f"{n}={p.uri} ({p.digest[:19]})" for n, p in lock.models.items()) or "-"
    return (
        f"lock: {lock.version} · content {lock.content_hash[:19]} · commit {lock.commit[:12]} · "
        f"models {models} · validation {lock.validation_run} · code {lock.package}"
    )


def diff(ctx: typer.Context, env: EnvOption) -> None:
    """Show what applying the committed files would change on the environment's cluster.

    Under the table: the resource delta once the rollout is over, and its **peak** while old and
    new versions run side by side (blue/green until the switch, a canary for all its steps)
    against the cluster's free room, with a warning when the peak does not fit. Deployments that
    would run on a single replica are listed as single points of failure, with the fix
    (`policy.min_replicas: 2`).
    """
    from graphops.controller.capacity import Amount
    from graphops.controller.status import SPOF_FIX, rollout_peak
    from graphops.controller.status import diff as do_diff

    root = ctx.obj.root()
    changes = do_diff(root, env)
    table = Table(title=f"{env}: live -> git", title_justify="left")
    for column in ("application", "deployment", "change", "why", "CPUs", "GPUs"):
        table.add_column(column)
    colours = {"new": "green", "removed": "red", "replica restart": "yellow", "in place": "cyan"}
    for c in changes:
        colour = colours.get(c.change, "dim")
        delta = Amount(cpus=c.cpus, gpus=c.gpus).rounded()
        table.add_row(
            c.app,
            c.deployment,
            f"[{colour}]{c.change}[/]",
            c.why,
            f"{delta.cpus:+g}",
            f"{delta.gpus:+g}",
        )
    console.print(table)
    result = rollout_peak(root, env, changes)
    console.print(f"Resource delta after the rollout: {result.after.describe(signed=True)}")
    console.print(
        f"Peak during the rollout (old and new side by side): {result.extra.describe(signed=True)}"
    )
    free = result.free
    if free is not None and result.capacity is not None:
        console.print(
            f"Cluster: {result.capacity.describe()}; free now: {free.describe()} "
            "(less what Serve's replicas hold; other jobs not counted)"
        )
        if result.short:
            console.print(
                f"[red]The rollout does not fit[/]: {'; '.join(result.short)}. New versions "
                "would wait for room and `apply` would time out. Fix: add nodes (or raise the "
                "autoscaler's max_replicas), lower the new version's replicas or resources, or "
                "roll out one graph at a time.",
                highlight=False,
            )
    single = [f"{c.app}/{c.deployment}" for c in changes if c.single_point]
    if single:
        console.print(
            f"[yellow]single points of failure[/] (one replica): {', '.join(single)}. "
            f"Fix: {SPOF_FIX}",
            highlight=False,
        )


def apply(
    ctx: typer.Context,
    env: EnvOption,
    timeout: Annotated[float, typer.Option(help="Seconds a new version may take to start.")] = 300,
    correct_drift: Annotated[
        bool, typer.Option("--correct-drift", help="Also remove applications git does not know.")
    ] = False,
    push: Annotated[
        str | None,
        typer.Option(help="Push the record of a canary (and an abort's revert) to this branch."),
    ] = None,
) -> None:
    """Reconcile the environment's cluster with git; a failing new version never takes the route.

    With a rollout strategy that has steps (``canary``, ``shadow_canary``) a new version walks
    them first; an aborted rollout exits 1 after putting the stable version back and committing
    why.
    """
    from graphops.controller.apply import apply as do_apply

    result = do_apply(
        ctx.obj.root(),
        env,
        timeout_s=timeout,
        correct_drift=correct_drift,
        log=lambda m: console.print(f"· {m}"),
        push=push,
        tracking_uri=ctx.obj.tracking_uri,
    )
    for rollout in result.rollouts:
        console.print(f"{rollout.strategy}: {rollout.graph} {rollout.candidate} {rollout.reason}")
    if result.drift:
        verb = "removed" if result.drift_removed else "left in place (use --correct-drift)"
        console.print(
            f"[yellow]drift:[/] applications not in git: {', '.join(result.drift)} — {verb}"
        )
    if not result.changed:
        console.print(f"{env}: the cluster already runs what git says; nothing changed.")
        return
    for label, names in (
        ("started", result.started),
        ("updated", result.updated),
        ("retired", result.retired),
    ):
        if names:
            console.print(f"{label}: {', '.join(names)}")


def controller(
    ctx: typer.Context,
    env: EnvOption,
    branch: Annotated[str, typer.Option(help="The branch of origin to follow.")] = "main",
    interval: Annotated[float, typer.Option(help="Seconds between two polls of origin.")] = 30,
    rounds: Annotated[
        int | None, typer.Option(help="Stop after this many rounds (default: run forever).")
    ] = None,
    heal: Annotated[
        bool, typer.Option("--heal", help="Remove applications git does not know (drift).")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds a new version may take to start.")] = 300,
) -> None:
    """Pull-based reconciler: poll origin's branch, apply the environment with its strategy.

    The checkout is the controller's own (it fast-forwards it); the first round always applies,
    so a restart resumes an interrupted canary. State: .graphops/controller-<env>.json.
    """
    from graphops.controller.reconciler import run

    state = run(
        ctx.obj.root(),
        env,
        branch=branch,
        interval_s=interval,
        rounds=rounds,
        heal=heal,
        timeout_s=timeout,
        log=lambda m: console.print(f"· {m}"),
        tracking_uri=ctx.obj.tracking_uri,
    )
    if state.last_error:
        raise typer.Exit(1)
