"""`graphops demo`: the main job (see `graphops.demo`), end to end on embedded defaults."""

from __future__ import annotations

from typing import Annotated

import typer

from graphops.demo import CANARY_GRAPH, STAGING_GRAPH


def demo(
    ctx: typer.Context,
    graph: Annotated[
        list[str] | None,
        typer.Option("--graph", "-g", help="Only these graphs (repeatable; default: all)."),
    ] = None,
    down: Annotated[
        bool,
        typer.Option(
            "--down",
            help="Stop the clusters and the MLflow UI a previous run left up, delete the GitOps "
            "sandbox; keep the MLflow store.",
        ),
    ] = False,
    staging: Annotated[
        bool,
        typer.Option(help=f"Also promote {STAGING_GRAPH} to staging on a second local cluster."),
    ] = True,
    mlflow_ui: Annotated[bool, typer.Option(help="Start the MLflow UI over the store.")] = True,
    experiment: Annotated[
        bool, typer.Option(help="Run an A/A experiment split by its ingress (90/10, sticky).")
    ] = True,
    canary: Annotated[
        bool,
        typer.Option(
            help=f"Roll out a new version of {CANARY_GRAPH} in dev by canary under load "
            "(promoted step by step), then a broken one (aborted), then by shadow, then canary "
            "one that disagrees with the stable (aborted while mirrored).",
        ),
    ] = True,
    canary_again: Annotated[
        bool,
        typer.Option(
            "--canary-again",
            help=f"Roll out three new versions of {CANARY_GRAPH} (two canaries, one shadow) even "
            "when an earlier run did (default: a re-run shows that run's rollouts and adds no "
            "version).",
        ),
    ] = False,
    revalidate: Annotated[
        bool,
        typer.Option(
            "--revalidate",
            help="Validate every graph again even when a passed validation of the same code, "
            "models and data exists (default: reuse it).",
        ),
    ] = False,
    multinode: Annotated[
        bool,
        typer.Option(
            "--multinode",
            help="Also join a CPU worker node and a worker node with logical GPUs to dev's "
            "cluster, apply dev with `gpus: true` and print where each deployment runs "
            "(slower; `--down` stops the nodes).",
        ),
    ] = False,
) -> None:
    """Run the main job: the whole lifecycle of every graph on local services, then a summary.

    Starts (or reuses) a Ray cluster per environment (token auth; dashboard and Serve HTTP on
    127.0.0.1, some of Ray's internal ports on all interfaces) and the MLflow UI (127.0.0.1);
    trains and registers the models; validates every graph on Ray Data (Markdown report, MLflow
    record); runs an A/A experiment split by its ingress and a batch job; promotes every graph to
    dev and applies it, then asks each graph on its stable route; rolls out a new version of
    digits in dev by canary under load, then a broken one (aborted), then by shadow, then canary
    one whose answers disagree with the stable's (aborted while mirrored, before it answers any
    client); promotes digits from dev to staging and applies it there; prints what is live where.
    Safe to re-run: what is already up, registered, validated, pinned or applied is reused, and
    the rollouts an earlier run made are shown again (`--canary-again` makes three new
    versions). `--down` stops everything it started.

    With `--multinode` (off by default: two more Ray nodes on the machine), dev's cluster gets two
    worker nodes on 127.0.0.1 with its token: `ray-dev-cpu` (6 logical CPUs, labelled
    graphops.io/node-kind=cpu: all of dev's CPU-only work runs there) and `ray-dev-gpu` (1 CPU,
    2 logical GPUs, `ray start --num-gpus 2`: room for a blue/green rollout's two model stages);
    dev is applied with `cluster.gpus: true` and a table shows the node of every running replica
    (from `graphops status`'s placement), e.g. digits' `logits` on the gpu worker, and flags any
    CPU-only replica on it. The nodes are
    recorded with the other services: a re-run reuses them, `--down` stops them first.
    """
    from graphops.demo import down as stop_services
    from graphops.demo import main_job

    settings = ctx.obj
    if down:
        stop_services(settings.root(), settings.registry())
        return
    ok = main_job(
        settings.root(),
        settings.registry(),
        graph,
        staging=staging,
        mlflow_ui=mlflow_ui,
        experiment=experiment,
        revalidate=revalidate,
        canary=canary,
        canary_again=canary_again,
        multinode=multinode,
    )
    if not ok:
        raise typer.Exit(1)
