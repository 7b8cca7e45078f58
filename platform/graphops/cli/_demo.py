"""The main job, end to end on embedded defaults: the whole lifecycle of every graph in one command.

Train and register, plan, run locally, validate on Ray Data (report, MLflow record), run a batch
job, then GitOps for real on local clusters: promote to dev and apply, answer on the stable
routes, promote digits to staging (a second cluster) and apply, and print what is live where.
Services and the GitOps sandbox live under ``.graphops/demo/`` and are reused by a re-run;
``--down`` stops them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import git
import typer
import yaml
from rich.rule import Rule
from rich.table import Table

from graphops.controller import local
from graphops.errors import GraphOpsError
from graphops.graph import discover
from graphops.plan import mermaid, plan

from ._common import console, errors
from ._views import catalog_table, error_panel, plan_table, run_tables, validation_table

if TYPE_CHECKING:
    from graphops.registry import Registry
    from graphops.validation import ValidationReport

# Each environment's local cluster: preferred ports (any free ones when taken) and logical CPUs
# (dev runs every graph, and two versions of one side by side during a rollout).
CLUSTERS = {
    "dev": {"dashboard": 8265, "serve": 8000, "cpus": 4},
    "staging": {"dashboard": 8266, "serve": 8001, "cpus": 2},
}
STAGING_GRAPH = "digits"
MLFLOW_UI_PORT = 5000


@dataclass
class _Job:
    """What the steps share: where things are, what happened, how long each step took."""

    root: Path
    registry: Registry
    work: Path
    timings: dict[str, float] = field(default_factory=dict)
    state: local.LocalState = field(default_factory=local.LocalState)
    problems: list[str] = field(default_factory=list)
    answers: list[tuple[str, str, str, str]] = field(default_factory=list)

    @property
    def state_file(self) -> Path:
        return self.work / "state.json"

    @property
    def sandbox(self) -> Path:
        return self.work / "gitops"

    @contextmanager
    def step(self, title: str, spinner: bool = True) -> Iterator[None]:
        """A titled step: a rule, a spinner (unless subprocesses print), its time when done."""
        console.print(Rule(f"[bold]{title}[/]", align="left"))
        started = time.perf_counter()
        if spinner:
            with console.status(f"{title} ..."):
                yield
        else:
            yield
        self.timings[title] = time.perf_counter() - started
        console.print(f"[green]✓[/] {title} [dim]({self.timings[title]:.1f} s)[/]")


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
) -> None:
    """Run the main job: the whole lifecycle of every graph on local services, then a summary.

    Starts (or reuses) a Ray cluster per environment (token auth, loopback) and the MLflow UI;
    trains and registers the models; validates every graph on Ray Data (Markdown report, MLflow
    record); runs a batch job; promotes every graph to dev and applies it, then asks each graph on
    its stable route; promotes digits to staging and applies it there; prints what is live where.
    Safe to re-run: what is already up, registered, pinned or applied is reused. `--down` stops
    everything it started.
    """
    settings = ctx.obj
    registry = settings.registry()
    job = _Job(settings.root(), registry, registry.work_dir / "demo")
    job.state = local.load_state(job.state_file)
    if down:
        _down(job)
        return
    envs = ["dev", "staging"] if staging else ["dev"]
    with job.step("Start the local services (reused when already up)"):
        _start_services(job, envs, mlflow_ui)
    catalog, names = _author(job, graph)
    report = _validate(job, names)
    _batch(job, names)
    try:
        if _gitops(job, envs, names):
            with job.step("What is live where: graphops status", spinner=False):
                _graphops(job, "status")
    except GraphOpsError as exc:  # still summarize what did happen
        errors.print(error_panel(exc))
        job.problems.append(f"GitOps stopped: {str(exc).splitlines()[0]}")
    _summary(job, names, report)
    if job.problems or catalog.failures or report.exit_code != 0:
        raise typer.Exit(1)


def _start_services(job: _Job, envs: list[str], mlflow_ui: bool) -> None:
    """Start what is not running yet: a Ray cluster per environment, the MLflow UI."""
    taken: set[int] = set()
    for name, service in list(job.state.services.items()):
        if service.alive():
            taken |= set(service.ports.values())
            console.print(f"{name}: running at {service.url} (pid {service.pid}), reused")
        else:
            local.stop(service)  # leftovers of a crashed run: its temp dir
            del job.state.services[name]
    for env in envs:  # one at a time: a raylet must register within 30 s, even on a busy box
        name = f"ray-{env}"
        if name not in job.state.services:
            _start_cluster(job, env, taken)
    if mlflow_ui and "mlflow-ui" not in job.state.services:
        job.state.services["mlflow-ui"] = local.start_mlflow_ui(
            job.work, job.registry.tracking_uri, MLFLOW_UI_PORT, taken
        )
        console.print(f"mlflow-ui: starting at {job.state.services['mlflow-ui'].url}")
    local.save_state(job.state_file, job.state)


def _start_cluster(job: _Job, env: str, taken: set[int]) -> None:
    """Start the environment's cluster and wait for it; once more if it fails to come up."""
    name, spec = f"ray-{env}", CLUSTERS[env]
    for attempt in (1, 2):
        service = local.start_ray(
            name,
            job.work,
            dashboard_port=spec["dashboard"],
            serve_port=spec["serve"],
            tracking_uri=job.registry.tracking_uri,
            num_cpus=spec["cpus"],
            taken=taken,
        )
        job.state.services[name] = service
        local.save_state(job.state_file, job.state)
        console.print(f"{name}: starting at {service.url} (token auth, loopback) ...")
        try:
            local.wait_ready(service)
        except GraphOpsError:
            del job.state.services[name]
            local.save_state(job.state_file, job.state)
            if attempt == 2:
                raise
            console.print(f"[yellow]{name} did not come up; trying once more.[/]")
            continue
        console.print(
            f"{name}: up, Ray dashboard {service.url}, Serve on port {service.ports['serve']}"
        )
        return


def _author(job: _Job, only: list[str] | None) -> tuple[Any, list[str]]:
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


def _validate(job: _Job, names: list[str]) -> ValidationReport:
    """`graphops validate`: Ray Data, gates, parity with Serve, MLflow record, Markdown report."""
    from graphops.validation import validate_graphs, validated_commit, write_markdown

    with job.step("Validate every graph offline on Ray Data and record it in MLflow"):
        report = validate_graphs(
            job.root,
            names,
            job.registry,
            commit=validated_commit(job.root),
            selection="All graphs (demo).",
        )
        console.print(validation_table(report))
        path = job.registry.work_dir / "reports" / "validation.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        *pictures, _ = write_markdown(report, path)
        console.print(f"Markdown report: {path}")
        for picture in pictures:
            console.print(f"Plan picture: {picture}")
    return report


def _batch(job: _Job, names: list[str]) -> None:
    """`graphops batch`: the first graph over its validation data as a Ray Data job."""
    import ray

    from graphops.graph import load_graph
    from graphops.runtime.offline import run_offline

    pkg = next(
        (p for p in map(lambda n: load_graph(job.root, n), names) if p.validation_dataset), None
    )
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


def _gitops(job: _Job, envs: list[str], names: list[str]) -> Path | None:
    """Promote and apply on the local clusters, in a sandbox clone; None without a git checkout."""
    with job.step("Check the local services answer"):
        for service in job.state.services.values():
            local.wait_ready(service)
            console.print(f"{service.name}: up at {service.url}")
    with job.step("GitOps sandbox: a clone of this repository, its environments on the clusters"):
        if not _sandbox(job, envs):
            return None
    with job.step("Promote every validated graph to dev (what CI runs after a merge)", False):
        _graphops(job, "promote", "--auto", "--to", "dev", "--push", "main")
        _pull(job)
    _apply_and_ask(job, "dev", names)
    if "staging" in envs and STAGING_GRAPH in names:
        with job.step(f"Promote {STAGING_GRAPH} to staging and merge it (a reviewed PR)", False):
            _graphops(job, "promote", STAGING_GRAPH, "--to", "staging")
            _merge(job, f"promote/staging/{STAGING_GRAPH}-")
        _apply_and_ask(job, "staging", [STAGING_GRAPH])
    return job.sandbox


def _sandbox(job: _Job, envs: list[str]) -> bool:
    """A bare origin and a clone of this repository's HEAD, its environments on the clusters.

    Reused when HEAD did not move; made again from HEAD when it did (the clusters are then
    reconciled to it by apply).
    """
    try:
        source = git.Repo(job.root)
        head = source.head.commit.hexsha
    except (git.InvalidGitRepositoryError, ValueError):
        job.problems.append("not a git checkout: promotion and apply were skipped")
        console.print(
            f"[yellow]{job.root} is not a git checkout with a commit[/]: a lock names the commit "
            "of the code, so promotion needs a clone of the repository. Skipping GitOps."
        )
        return False
    if source.is_dirty(path="graphs"):
        console.print(
            "[yellow]graphs/ has uncommitted changes:[/] the sandbox clones HEAD, so they are "
            "neither promoted nor served; commit them (and re-run) to see them live."
        )
    origin = job.work / "gitops.git"
    if job.state.source_head == head and (job.sandbox / ".git").is_dir():
        console.print(f"sandbox at {job.sandbox} is from {head[:12]} (HEAD): reused")
        return True
    for path in (origin, job.sandbox):
        shutil.rmtree(path, ignore_errors=True)
    git.Repo.clone_from(job.root, origin, bare=True)
    with git.Repo.clone_from(origin, job.sandbox) as clone:
        clone.git.checkout("-B", "main", head)
        with clone.config_writer() as config:
            config.set_value("user", "name", "graphops demo")
            config.set_value("user", "email", "demo@graphops.invalid")
        for env in envs:
            _point_at_cluster(job, env)
        _graphops(job, "render", quiet=True)
        clone.git.add("environments")
        clone.index.commit("demo: environments on the local clusters")
        clone.git.push("origin", "main:main", "--force")
    job.state.source_head = head
    local.save_state(job.state_file, job.state)
    console.print(
        f"origin {origin} (bare, the team's remote) and clone {job.sandbox} (CI's checkout) "
        f"from {head[:12]}; dev and staging point at the local clusters"
    )
    return True


def _point_at_cluster(job: _Job, env: str) -> None:
    """Rewrite the sandbox's ``environments/<env>/environment.yaml`` for the local cluster."""
    service = job.state.services[f"ray-{env}"]
    path = job.sandbox / "environments" / env / "environment.yaml"
    data = yaml.safe_load(path.read_text()) or {}
    serve = service.ports["serve"]
    data["cluster"] = (data.get("cluster") or {}) | {
        "dashboard": service.url,
        "serve_url": f"http://127.0.0.1:{serve}",
        "token_env": _token_env(env),
        "app_cpu_budget": 0.9,
    }
    for key in ("dashboard_env", "serve_url_env"):
        data["cluster"].pop(key, None)
    data["http_port"], data["http_host"] = serve, "127.0.0.1"
    if env != "dev":  # nobody waits 30 minutes in a demo: the soak gate passes at once
        data["policy"] = (data.get("policy") or {}) | {"soak_minutes": 0}
    path.write_text(
        f"# graphops demo: {env} on the local cluster {service.url} (see .graphops/demo).\n"
        + yaml.safe_dump(data, sort_keys=False)
    )


def _token_env(env: str) -> str:
    return f"GRAPHOPS_{env.upper()}_TOKEN"


def _graphops(job: _Job, *args: str, quiet: bool = False) -> str:
    """Run `graphops <args>` in the sandbox as CI would (its own process), output shown."""
    env = os.environ | {"MLFLOW_TRACKING_URI": job.registry.tracking_uri}
    for name, service in job.state.services.items():
        if service.token:
            env[_token_env(name.removeprefix("ray-"))] = service.token
    env.pop("GRAPHOPS_REPO", None)
    env.pop("RAY_ADDRESS", None)
    command = [local.console_script("graphops"), "--repo", str(job.sandbox), *args]
    if not quiet:
        console.print(f"[dim]$ graphops {' '.join(args)}[/]")
    lines: list[str] = []
    with subprocess.Popen(
        command,
        env=env,
        cwd=job.sandbox,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:  # shown as it comes: apply reports each phase
            lines.append(line)
            if not quiet:
                console.out(line.rstrip("\n"), highlight=False)
        code = process.wait()
    if code:
        if quiet:
            console.out("".join(lines).rstrip(), highlight=False)
        raise GraphOpsError(
            f"`graphops {' '.join(args)}` failed (exit {code}); its output is above.",
            fix=f"Read the message above; the sandbox is {job.sandbox}.",
        )
    return "".join(lines)


def _pull(job: _Job) -> None:
    with git.Repo(job.sandbox) as clone:
        clone.git.pull("--ff-only", "origin", "main")


def _merge(job: _Job, prefix: str) -> None:
    """Merge the promotion branch into main and push (what approving its pull request does)."""
    with git.Repo(job.sandbox) as clone:
        branches = [h for h in clone.heads if h.name.startswith(prefix)]
        if not branches:
            return
        branch = max(branches, key=lambda h: h.commit.committed_date)
        clone.git.checkout("main")
        if clone.is_ancestor(branch.commit, clone.head.commit):
            return  # merged by an earlier run
        clone.git.merge("--no-ff", "-m", f"Merge {branch.name}", branch.name)
        clone.git.push("origin", "main")
        console.print(f"merged {branch.name} into main and pushed")


def _apply_and_ask(job: _Job, env: str, names: list[str]) -> None:
    """`graphops apply --env`, then one object and a list of three on each stable route."""
    with job.step(f"Apply {env} (what deploy.yml runs)", False):
        _graphops(job, "apply", "--env", env)
    with job.step(f"{env}: real requests to each graph's stable route"):
        for name in names:
            _ask(job, env, name)


def _ask(job: _Job, env: str, name: str) -> None:
    import requests

    from graphops.environments import load_release
    from graphops.graph import load_graph
    from graphops.runtime import read_rows

    entry = load_release(job.sandbox, env).graphs.get(name)
    if entry is None:
        job.problems.append(f"{env}: {name} is not released")
        console.print(f"[red]{env}: {name} is not released[/]")
        return
    serve = job.state.services[f"ray-{env}"].ports["serve"]
    url = f"http://127.0.0.1:{serve}/{name}"
    pkg = load_graph(job.root, name)
    rows = read_rows(pkg.validation_dataset)[:3] if pkg.validation_dataset else []
    bodies: list[Any] = [entry.lock.example] if entry.lock.example else []
    bodies.append([{f: r[f] for f in entry.lock.request_fields} for r in rows])
    for body in bodies:
        answer = requests.post(url, json=body, timeout=60)
        shown = "one object" if isinstance(body, dict) else f"a list of {len(body)}"
        text = answer.text if len(answer.text) < 200 else answer.text[:200] + " …"
        console.print(
            f"{env} POST {url} {shown} -> {answer.status_code} {text}", markup=False, soft_wrap=True
        )
        if answer.status_code != 200:
            job.problems.append(f"{env}: {name} answered {answer.status_code}")
    job.answers.append((env, name, entry.lock.version, url))


def _summary(job: _Job, names: list[str], report: ValidationReport) -> None:
    """What is live where, the validation runs, the URLs and how long each step took."""
    from graphops.controller.render import app_name
    from graphops.environments import load_release

    console.print(Rule("[bold]Summary[/]", align="left"))
    live = Table(title="Live", title_justify="left")
    for column in ("env", "graph", "version", "application", "stable route", "validation run"):
        live.add_column(column)
    for env, name, version, url in job.answers:
        lock = load_release(job.sandbox, env).graphs[name].lock
        live.add_row(env, name, version, app_name(name, lock), url, lock.validation_run or "-")
    console.print(live)
    validated = Table(title="Validation (Ray Data)", title_justify="left")
    for column in ("graph", "status", "MLflow run"):
        validated.add_column(column)
    for g in report.graphs:
        colour = "green" if g.status == "passed" else "red"
        validated.add_row(g.graph, f"[{colour}]{g.status}[/]", g.run_id or "-")
    console.print(validated)
    urls = Table(title="Where to look", title_justify="left")
    urls.add_column("what")
    urls.add_column("URL or path")
    for name, service in job.state.services.items():
        what = (
            "MLflow UI" if name == "mlflow-ui" else f"Ray dashboard ({name.removeprefix('ray-')})"
        )
        urls.add_row(what, service.url)
    urls.add_row("MLflow store", job.registry.tracking_uri)
    urls.add_row("validation report", str(job.registry.work_dir / "reports" / "validation.md"))
    urls.add_row("GitOps sandbox", f"{job.sandbox} (git log shows every promotion)")
    console.print(urls)
    steps = Table(title="Steps", title_justify="left")
    steps.add_column("step")
    steps.add_column("seconds", justify="right")
    for title, seconds in job.timings.items():
        steps.add_row(title, f"{seconds:.1f}")
    steps.add_row("[bold]total[/]", f"[bold]{sum(job.timings.values()):.1f}[/]")
    console.print(steps)
    for problem in job.problems:
        console.print(f"[red]problem:[/] {problem}")
    console.print(
        "The clusters and the MLflow UI keep running. Stop them: [bold]graphops demo --down[/] "
        "(or `nox -s demo -- --down`)."
    )


def _down(job: _Job) -> None:
    """Stop every service the main job started (by pid) and delete the sandbox."""
    if not job.state.services and not job.work.exists():
        console.print("Nothing to stop: no demo services are recorded.")
        return
    for name, service in job.state.services.items():
        was = "stopped" if service.alive() else "was not running"
        started = time.perf_counter()
        with console.status(f"Stopping {name} (pid {service.pid}) ..."):
            local.stop(service)
        console.print(f"{name}: {was} (pid {service.pid}, {time.perf_counter() - started:.1f} s)")
    for path in (job.sandbox, job.work / "gitops.git", job.work / "batch"):
        shutil.rmtree(path, ignore_errors=True)
    job.state_file.unlink(missing_ok=True)
    console.print(
        f"Removed the GitOps sandbox under {job.work}. The MLflow store "
        f"({job.registry.tracking_uri}) is kept: delete {job.registry.work_dir} to start afresh."
    )
