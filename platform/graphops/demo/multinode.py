"""The main job's multi-node step: a CPU and a logical-GPU worker node beside dev, and placement.

`graphops demo --multinode` joins two worker nodes to dev's cluster (`graphops.demo.nodes`,
token auth; dev's head then starts without `loopback`, which no node could join), gives dev
`gpus: true`, and after dev is applied prints where each deployment's replicas run, read from
`graphops status`'s placement: GPU stages on the GPU node, CPU-only work on the CPU node only
(it is labelled ``graphops.io/node-kind=cpu``, which CPU-only work selects). The nodes are recorded with
the other services: a re-run reuses them and `graphops demo --down` stops them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from rich.table import Table

import graphops.demo.services as services
from graphops._views import console
from graphops.demo.job import DemoJob
from graphops.demo.nodes import LocalCluster, node_kinds
from graphops.demo.sandbox import token_env

WORKERS = (("ray-dev-cpu", 6, 0), ("ray-dev-gpu", 1, 2))
"""Worker nodes beside dev's head: (name, CPUs, logical GPUs). Two GPUs: a blue/green rollout
runs both versions' model stages at once. The CPU node (labelled, `graphops.demo.nodes`) holds
all of dev's CPU-only work, rollouts' second versions included: 6 logical CPUs."""


def join_nodes(job: DemoJob) -> None:
    """Join the worker nodes dev lacks to its cluster (those running are reused)."""
    head = job.state.services["ray-dev"]
    cluster = LocalCluster.around(head, job.registry.tracking_uri)
    cluster.taken |= {p for s in job.state.services.values() for p in s.ports.values()}
    for name, cpus, gpus in WORKERS:
        if name in job.state.services:  # running: reused (said when the services started)
            continue
        node_id = cluster.add_worker(name, cpus=cpus, gpus=gpus)
        job.state.services[name] = cluster.workers[name]
        services.save_state(job.state_file, job.state)
        what = [f"{cpus} CPU" + ("s" * (cpus != 1)), f"{gpus} logical GPUs" if gpus else ""]
        console.print(
            f"{name}: joined dev as node {node_id[:12]} ({', '.join(filter(None, what))})"
        )


@contextmanager
def with_token(variable: str, token: str) -> Iterator[None]:
    """``variable`` set to ``token`` in this process while reading the cluster."""
    before = os.environ.get(variable)
    os.environ[variable] = token
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = before


def show_placement(job: DemoJob) -> None:
    """Print each running replica in dev: its node, the node's kind, and whether the rule holds.

    A GPU stage off a GPU node, or a CPU-only replica on one (the hard rule of
    docs/environments.md: CPU work selects CPU nodes' label), is a problem of the run.
    """
    from graphops.controller.status import status

    head = job.state.services["ray-dev"]
    kinds = node_kinds(head)
    with with_token(token_env("dev"), head.token or ""):
        rows = status(job.sandbox, "dev")
    table = Table(title="dev: where each replica runs (graphops status)", title_justify="left")
    for column in ("graph", "application/deployment", "needs", "replica on node", "node id"):
        table.add_column(column)
    for row in rows:
        if row.placement_problem:
            job.problems.append(f"dev: {row.placement_problem}")
        for replica in row.replicas:
            kind = kinds.get(replica.node_id, "?")
            needs = "CPU only" if replica.cpu_only else "GPU"
            table.add_row(row.graph, replica.deployment, needs, kind, replica.node_id[:12])
            if not replica.cpu_only and kind != "gpu worker":
                job.problems.append(f"dev: {replica.deployment} runs on {kind}, not a GPU node")
            if replica.misplaced:
                job.problems.append(f"dev: CPU-only {replica.deployment} runs on a GPU node")
    console.print(table)
