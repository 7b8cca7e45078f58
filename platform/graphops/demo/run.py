"""The main job, end to end on embedded defaults: the whole lifecycle of every graph in one command.

Train and register, plan, run locally, validate on Ray Data (report, MLflow record), an A/A
experiment split by its ingress, a batch job, then GitOps for real on local clusters: promote to dev
and apply, answer on the stable routes, roll out three new versions of digits in dev under
load (by canary: one promoted, one aborted; by shadow, then canary: one disagreeing with the
stable, aborted while mirrored), promote digits on to staging (a second cluster) and
apply, and print what is live where. Services, validations, the GitOps sandbox and its canaries
live under ``.graphops/`` and are reused by a re-run, which adds no commit to the sandbox; `down`
stops the services. `graphops demo` is the command over `main_job`.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import graphops.demo.services as services
from graphops._views import (
    catalog_table,
    console,
    error_panel,
    errors,
    plan_table,
    run_tables,
)
from graphops.demo.gitops import (
    apply_and_ask,
    ask,
    harden,
    open_gitops,
    promote_to_dev,
    promote_to_staging,
)
from graphops.demo.job import CLUSTERS, DEV_APP_CPUS, MLFLOW_UI_PORT, DemoJob
from graphops.demo.latency import show_latency
from graphops.demo.names import CANARY_GRAPH, ONNX_GRAPH, STAGING_GRAPH
from graphops.demo.rollout import rollout_demo
from graphops.demo.sandbox import graphops_command
from graphops.demo.summary import summary
from graphops.demo.validation import export_step, validate_step
from graphops.diagram import mermaid
from graphops.errors import GraphOpsError
from graphops.graph import discover
from graphops.planner import plan
from graphops.runtime.serving import ServingConfig, usable

if TYPE_CHECKING:
    from graphops.registry import Registry


def main_job(
    root: Path,
    registry: Registry,
    graphs: list[str] | None = None,
    *,
    staging: bool = True,
    mlflow_ui: bool = True,
    experiment: bool = True,
    revalidate: bool = False,
    canary: bool = True,
    canary_again: bool = False,
    multinode: bool = False,
) -> bool:
    """Run the main job: the whole lifecycle of every graph on local services, then a summary.

    Starts (or reuses) a Ray cluster per environment (token auth, loopback) and the MLflow UI;
    trains and registers the models; validates every graph on Ray Data (Markdown report, MLflow
    record); runs an A/A experiment split by its ingress and a batch job; promotes every graph to
    dev and applies it, then asks each graph on its stable route; rolls out three versions of
    `CANARY_GRAPH` (two by canary, one by shadow, then canary); promotes `STAGING_GRAPH` on to staging and applies it there; prints
    what is live where. Safe to re-run: what is already up, registered, validated, pinned, applied
    or rolled out is reused, and the sandbox gets no new commit.

    Args:
        root: The repository root (with graphs/).
        registry: The MLflow registry; the demo's state lives under its work dir.
        graphs: Only these graphs (default: all).
        staging: Also promote `STAGING_GRAPH` to staging on a second local cluster.
        mlflow_ui: Start the MLflow UI over the store.
        experiment: Run an A/A experiment split by its ingress (90/10, sticky).
        revalidate: Validate every graph again, even when a passed validation of the same lock
            (code, models, data) is recorded (default: that one is reused, and said so).
        canary: After dev's first apply, roll out a new version of `CANARY_GRAPH` by canary
            under load (promoted step by step), a broken one (aborted), and by shadow, then
            canary one that disagrees with the stable (aborted while mirrored); `demo.rollout`.
            A re-run shows the round an earlier run made instead of making new versions.
        canary_again: Roll out three new versions even when an earlier run's round is done.
        multinode: Join a CPU and a logical-GPU worker node to dev's cluster, apply dev with
            `gpus: true` and print where each deployment runs (`graphops.demo.multinode`).

    Returns:
        True when every step passed (the command's exit code is 0), False otherwise.
    """
    job = _job(root, registry)
    job.multinode = multinode
    envs = ["dev", "staging"] if staging else ["dev"]
    with job.step("Start the local services (reused when already up)"):
        _start_services(job, envs, mlflow_ui)
    if multinode:
        from graphops.demo.multinode import join_nodes

        with job.step("Multi-node: a CPU and a logical-GPU worker node join dev's cluster"):
            join_nodes(job)
    catalog, names = _author(job, graphs)
    report = validate_step(job, names, revalidate)
    if ONNX_GRAPH in names:
        export_step(job)
    if experiment:
        _experiment(job, names)
    _batch(job, names)
    try:
        if _gitops(job, envs, names, canary, canary_again):
            with job.step("What is live where: graphops status", spinner=False):
                graphops_command(job, "status")
    except GraphOpsError as exc:  # still summarize what did happen
        errors.print(error_panel(exc))
        job.problems.append(f"GitOps stopped: {exc.what.splitlines()[0]}")  # the box has the fix
    summary(job, names, report)
    return not (job.problems or catalog.failures or report.exit_code != 0)


def _gitops(job: DemoJob, envs: list[str], names: list[str], canary: bool, again: bool) -> bool:
    """Promote and apply on the local clusters, in the sandbox; False without a git checkout.

    The steps' order lives here: dev promoted and applied, each graph asked, placement across
    the nodes (multi-node), each graph's latency on dev's serving path, the hardening check; with ``canary``, dev then rolls out three new
    versions of `CANARY_GRAPH` under load (`graphops.demo.rollout`): by canary a good one
    promoted step by step and a broken one aborted, by shadow, then canary a disagreeing one
    aborted while mirrored; a round an earlier run finished is shown again
    unless ``again``. Then `STAGING_GRAPH` goes on from dev to staging: what dev runs once its
    rollouts are done, so a re-run finds nothing to promote.
    """
    if not open_gitops(job, envs):
        return False
    promote_to_dev(job)
    apply_and_ask(job, "dev", names)
    with job.step("dev: where a request's time goes (one at a time, Server-Timing)"):
        show_latency(job, names)
    if job.multinode:
        from graphops.demo.multinode import show_placement

        with job.step("dev: where each deployment runs across the nodes"):
            show_placement(job)
    harden(job, names)
    if canary and CANARY_GRAPH in names:
        rollout_demo(job, CANARY_GRAPH, again)
        ask(job, "dev", CANARY_GRAPH)
    if "staging" in envs and STAGING_GRAPH in names:
        promote_to_staging(job)
    return True


def down(root: Path, registry: Registry) -> None:
    """Stop every service a previous run left up (by pid) and delete the GitOps sandbox.

    The MLflow store is kept.

    Args:
        root: The repository root (with graphs/).
        registry: The MLflow registry; the demo's state lives under its work dir.
    """
    _down(_job(root, registry))


def _job(root: Path, registry: Registry) -> DemoJob:
    """The main job's shared state, with the services a previous run recorded."""
    job = DemoJob(root, registry, registry.work_dir / "demo")
    job.state = services.load_state(job.state_file)
    return job


def _serving(job: DemoJob, env: str) -> tuple[ServingConfig, str | None]:
    """The serving path of ``env``'s local cluster, and why it is not the declared one.

    The declared one is ``serving:`` of its environment.yaml; what runs is what this machine
    can run (`usable`); the reason is None when they are the same.
    """
    from graphops.environments import environment_names, load_environment

    if env not in environment_names(job.root):  # a checkout without environments/: Serve's proxy
        return ServingConfig(), None
    declared = load_environment(job.root, env).serving
    if env == "dev" and job.multinode and declared.fast:
        return ServingConfig(), (
            f"ingress {declared.ingress} needs the ingress replicas' own ports reachable from "
            "every node, but a local multi-node cluster keeps them on 127.0.0.1 while Ray "
            "names each node by the host's address; serving through Serve's proxy instead"
        )
    return usable(declared)


def _start_services(job: DemoJob, envs: list[str], mlflow_ui: bool) -> None:
    """Start what is not running yet: a Ray cluster per environment, the MLflow UI.

    A running cluster whose serving path is not its environment's (`serving:` changed since it
    started) is restarted: Ray reads the path only when its processes start.
    """
    taken: set[int] = set()
    for name, service in list(job.state.services.items()):
        if service.alive() and job.multinode and service.loopback:
            console.print(f"{name}: kept on loopback, so no worker node can join it; restarting")
            services.stop(service)
            del job.state.services[name]
        elif service.alive() and name.removeprefix("ray-") in CLUSTERS:
            wanted, _ = _serving(job, name.removeprefix("ray-"))
            if service.serving != wanted:  # its worker nodes are stopped below, with it gone
                console.print(
                    f"{name}: serves with ingress {service.serving.ingress}, its environment "
                    f"says {wanted.ingress}; restarting"
                )
                services.stop(service)
                del job.state.services[name]
                continue
            taken |= set(service.ports.values())
            console.print(f"{name}: running at {service.url} (pid {service.pid}), reused")
        elif service.alive():
            taken |= set(service.ports.values())
            where = f"worker node of {service.head}" if service.head else f"at {service.url}"
            console.print(f"{name}: running {where} (pid {service.pid}), reused")
        else:
            services.stop(service)  # leftovers of a crashed run: its temp dir
            del job.state.services[name]
    for name, service in list(job.state.services.items()):
        if service.head and service.head not in job.state.services:  # its head is gone
            services.stop(service)
            del job.state.services[name]
    for env in envs:  # one at a time: a raylet must register within 30 s, even on a busy box
        name = f"ray-{env}"
        if name not in job.state.services:
            _start_cluster(job, env, taken)
    if mlflow_ui and "mlflow-ui" not in job.state.services:
        # The store's tables are made here first: the UI server makes them too when they are
        # missing, and two processes making them at once fail ("table ... already exists").
        job.registry.client.search_experiments(max_results=1)
        job.state.services["mlflow-ui"] = services.start_mlflow_ui(
            job.work, job.registry.tracking_uri, MLFLOW_UI_PORT, taken
        )
        console.print(f"mlflow-ui: starting at {job.state.services['mlflow-ui'].url}")
    services.save_state(job.state_file, job.state)


def _start_cluster(job: DemoJob, env: str, taken: set[int]) -> None:
    """Start the environment's cluster and wait for it; once more if it fails to come up."""
    name, spec = f"ray-{env}", CLUSTERS[env]
    serving, changed = _serving(job, env)
    if changed:
        console.print(f"[yellow]note:[/] {name}: {changed}.")
    cpus = spec["cpus"]
    if env == "dev":  # every graph runs there, and a rollout runs two versions of one side by side
        graphs = list((job.root / "graphs").glob("*/__init__.py"))
        cpus = max(cpus, math.ceil(DEV_APP_CPUS * (len(graphs) + 1)))
    for attempt in (1, 2):
        service = services.start_ray(
            name,
            job.work,
            dashboard_port=spec["dashboard"],
            serve_port=spec["serve"],
            tracking_uri=job.registry.tracking_uri,
            num_cpus=cpus,
            taken=taken,
            loopback=not (env == "dev" and job.multinode),  # worker nodes join dev's head
            serving=serving,
        )
        job.state.services[name] = service
        services.save_state(job.state_file, job.state)
        where = "loopback" if service.loopback else "dashboard on loopback"
        console.print(f"{name}: starting at {service.url} (token auth, {where}) ...")
        try:
            services.wait_ready(service)
        except GraphOpsError:
            del job.state.services[name]
            services.save_state(job.state_file, job.state)
            if attempt == 2:
                raise
            console.print(f"[yellow]{name} did not come up; trying once more.[/]")
            continue
        console.print(
            f"{name}: up, Ray dashboard {service.url}, Serve on port {service.ports['serve']} "
            f"(ingress {serving.ingress})"
        )
        moved = [
            f"{what} {spec[key]} was taken: {service.ports[port]} instead"
            for what, key, port in (
                ("dashboard", "dashboard", "dashboard-port"),
                ("Serve", "serve", "serve"),
            )
            if service.ports[port] != spec[key]
        ]
        if moved:
            console.print(f"[yellow]note:[/] {name}: {'; '.join(moved)}.")
        return


def _author(job: DemoJob, only: list[str] | None) -> tuple[Any, list[str]]:
    """Discover, train and register, plan, and run each graph locally on its validation data."""
    from graphops.runtime import read_rows, run_local

    with job.step("Discover graphs"):
        catalog = discover(job.root)
        console.print(catalog_table(catalog))
    packages = [p for p in catalog.packages if not only or p.name in only]
    unknown = sorted(set(only or ()) - {p.name for p in catalog.packages})
    if unknown:
        raise GraphOpsError(
            f"No graph named {', '.join(unknown)} under graphs/.",
            fix=f"Pick from: {', '.join(p.name for p in catalog.packages)}.",
        )
    console.print(f"MLflow store: [bold]{job.registry.tracking_uri}[/]")
    for pkg in packages:
        trainer: Callable[..., Any] | None = pkg.trainer()
        if trainer is not None:
            with job.step(f"{pkg.name}: train and register the model"):
                pinned = trainer(job.registry)
                console.print(
                    f"registered [bold]{pinned.uri}[/] as @{pinned.alias} ({pinned.digest[:19]})"
                )
        with job.step(f"{pkg.name}: plan"):
            the_plan = plan(pkg.graph)
            console.print(plan_table(the_plan))
            console.print(mermaid(the_plan), markup=False, highlight=False)
        if pkg.validation_dataset is not None:
            with job.step(f"{pkg.name}: run locally on its validation data"):
                run = run_local(
                    pkg,
                    job.registry,
                    read_rows(pkg.validation_dataset),
                    source=pkg.validation_dataset.name,
                )
                label = [pkg.graph.validation.label] if pkg.graph.validation else []
                for part in run_tables(run, [*pkg.graph.response_fields, *label], limit=3):
                    console.print(part)
                if not all(m.passed for m in run.metrics):
                    job.problems.append(f"{pkg.name}: a gate failed on the local run")
    return catalog, [p.name for p in packages]


def _first_with_data(job: DemoJob, names: list[str]) -> Any:
    """The first graph of ``names`` that has validation data (the experiment's and batch's)."""
    from graphops.graph import load_graph

    return next((p for p in (load_graph(job.root, n) for n in names) if p.validation_dataset), None)


def _experiment(job: DemoJob, names: list[str]) -> None:
    """The A/A experiment on the first graph with validation data (see `demo.experiment`)."""
    from graphops.demo.experiment import experiment_demo

    pkg = _first_with_data(job, names)
    if pkg is not None:
        with job.step(f"{pkg.name}: an A/A experiment split by its ingress (90/10, sticky)"):
            experiment_demo(pkg, job.registry)


def _batch(job: DemoJob, names: list[str]) -> None:
    """`graphops batch`: the first graph over its validation data as a Ray Data job."""
    import ray

    from graphops.runtime.offline import run_offline

    pkg = _first_with_data(job, names)
    if pkg is None or pkg.validation_dataset is None:
        return
    output = job.work / "batch" / f"{pkg.name}.parquet"
    shutil.rmtree(output, ignore_errors=True)
    with job.step(f"{pkg.name}: a batch job on Ray Data (graphops batch)"):
        run = run_offline(pkg, job.registry, pkg.validation_dataset, output=output)
        console.print(
            f"{run.rows} rows in {run.seconds:.1f} s ({run.rows_per_second:,.0f} rows/s) -> "
            f"{output}"
        )
    ray.shutdown()  # the clusters of the environments take over from here


def _down(job: DemoJob) -> None:
    """Stop every service the main job started (by pid) and delete the sandbox."""
    if not job.state.services and not job.work.exists():
        console.print("Nothing to stop: no demo services are recorded.")
        return
    # Worker nodes first, then the heads they joined.
    for name, service in sorted(job.state.services.items(), key=lambda kv: kv[1].head is None):
        was = "stopped" if service.alive() else "was not running"
        started = time.perf_counter()
        with console.status(f"Stopping {name} (pid {service.pid}) ..."):
            services.stop(service)
        console.print(f"{name}: {was} (pid {service.pid}, {time.perf_counter() - started:.1f} s)")
    for path in (job.sandbox, job.work / "gitops.git", job.work / "batch"):
        shutil.rmtree(path, ignore_errors=True)
    job.state_file.unlink(missing_ok=True)
    console.print(
        f"Removed the GitOps sandbox under {job.work}. The MLflow store "
        f"({job.registry.tracking_uri}) is kept: delete {job.registry.work_dir} to start afresh."
    )
