"""The main job's GitOps steps, for real on the local clusters, in a sandbox clone.

A bare clone of this repository's HEAD plays the team's remote and a clone of it CI's checkout;
`graphops promote` and `apply` run there as their own processes, exactly as the workflows run
them, and every graph is then asked on its stable route.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import git
import yaml

from graphops._views import console
from graphops.demo import CANARY_GRAPH, STAGING_GRAPH, services
from graphops.demo.job import DemoJob
from graphops.errors import GraphOpsError


def gitops(
    job: DemoJob, envs: list[str], names: list[str], canary: bool = True, again: bool = False
) -> Path | None:
    """Promote and apply on the local clusters, in a sandbox clone; None without a git checkout.

    With ``canary``, dev then rolls out two new versions of `CANARY_GRAPH` by canary under load
    (`graphops.demo.canary`): a good one promoted step by step, a broken one aborted; a round an
    earlier run finished is shown again unless ``again``. Then `STAGING_GRAPH` goes on from dev
    to staging: what dev runs once its canaries are done, so a re-run finds nothing to promote.
    """
    with job.step("Check the local services answer"):
        for service in job.state.services.values():
            services.wait_ready(service)
            where = f"worker node of {service.head}" if service.head else f"up at {service.url}"
            console.print(f"{service.name}: {where}")
    with job.step("GitOps sandbox: a clone of this repository, its environments on the clusters"):
        if not _sandbox(job, envs):
            return None
    with job.step("Promote every validated graph to dev (what CI runs after a merge)", False):
        graphops_command(job, "promote", "--auto", "--to", "dev", "--push", "main")
        pull_sandbox(job)
    _apply_and_ask(job, "dev", names)
    if job.multinode:
        from graphops.demo.multinode import show_placement

        with job.step("dev: where each deployment runs across the nodes"):
            show_placement(job)
    _harden(job, names)
    if canary and CANARY_GRAPH in names:
        from graphops.demo.canary import canary_demo

        canary_demo(job, CANARY_GRAPH, again)
        _ask(job, "dev", CANARY_GRAPH)
    if "staging" in envs and STAGING_GRAPH in names:
        with job.step(f"Promote {STAGING_GRAPH} to staging and merge it (a reviewed PR)", False):
            graphops_command(job, "promote", STAGING_GRAPH, "--to", "staging")
            _merge(job, f"promote/staging/{STAGING_GRAPH}-")
        _apply_and_ask(job, "staging", [STAGING_GRAPH])
    return job.sandbox


def _sandbox(job: DemoJob, envs: list[str]) -> bool:
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
    same = job.state.source_head == head and job.state.multinode == job.multinode
    if same and (job.sandbox / ".git").is_dir():
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
        graphops_command(job, "render", quiet=True)
        clone.git.add("environments")
        clone.index.commit("demo: environments on the local clusters")
        clone.git.push("origin", "main:main", "--force")
    job.state.source_head, job.state.multinode = head, job.multinode
    services.save_state(job.state_file, job.state)
    console.print(
        f"origin {origin} (bare, the team's remote) and clone {job.sandbox} (CI's checkout) "
        f"from {head[:12]}; dev and staging point at the local clusters"
        + (" (dev with `gpus: true`)" if job.multinode else "")
    )
    return True


def _point_at_cluster(job: DemoJob, env: str) -> None:
    """Rewrite the sandbox's ``environments/<env>/environment.yaml`` for the local cluster."""
    service = job.state.services[f"ray-{env}"]
    path = job.sandbox / "environments" / env / "environment.yaml"
    data = yaml.safe_load(path.read_text()) or {}
    serve = service.ports["serve"]
    data["cluster"] = (data.get("cluster") or {}) | {
        "dashboard": service.url,
        "serve_url": f"http://127.0.0.1:{serve}",
        "token_env": token_env(env),
        "app_cpu_budget": 0.9,
    }
    for key in ("dashboard_env", "serve_url_env"):
        data["cluster"].pop(key, None)
    data["http_port"], data["http_host"] = serve, "127.0.0.1"
    # A local cluster: code zips in a file:// store, models in this machine's MLflow files.
    data["code"] = {"mode": "uri", "store": f"file://{job.work.resolve() / 'packages'}"}
    data["models"] = {"artifact_stores": ["file://", "mlflow-artifacts:"]}
    if env == "dev" and job.multinode:  # a model stage keeps its GPU: the GPU node has them
        data["cluster"]["gpus"] = True
    if env != "dev":  # nobody waits 30 minutes in a demo: the soak gate passes at once
        data["policy"] = (data.get("policy") or {}) | {"soak_minutes": 0}
    path.write_text(
        f"# graphops demo: {env} on the local cluster {service.url} (see .graphops/demo).\n"
        + yaml.safe_dump(data, sort_keys=False)
    )


def token_env(env: str) -> str:
    """The variable holding the token of the demo's cluster of ``env`` (its ``cluster.token_env``)."""
    return f"GRAPHOPS_{env.upper()}_TOKEN"


def graphops_command(job: DemoJob, *args: str, quiet: bool = False, check: bool = True) -> str:
    """Run `graphops <args>` in the sandbox as CI would (its own process), output shown.

    Raises:
        GraphOpsError: It exited non-zero (unless ``check`` is False).
    """
    env = os.environ | {"MLFLOW_TRACKING_URI": job.registry.tracking_uri}
    for name, service in job.state.services.items():
        if service.token:
            env[token_env(name.removeprefix("ray-"))] = service.token
    env.pop("GRAPHOPS_REPO", None)
    env.pop("RAY_ADDRESS", None)
    command = [services.console_script("graphops"), "--repo", str(job.sandbox), *args]
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
    if code and check:
        if quiet:
            console.out("".join(lines).rstrip(), highlight=False)
        raise GraphOpsError(
            f"`graphops {' '.join(args)}` failed (exit {code}); its output is above.",
            fix=f"Read the message above; the sandbox is {job.sandbox}.",
        )
    return "".join(lines)


def pull_sandbox(job: DemoJob) -> None:
    """Fast-forward the sandbox clone to what its origin's main now holds (after a push)."""
    with git.Repo(job.sandbox) as clone:
        clone.git.pull("--ff-only", "origin", "main")


def _merge(job: DemoJob, prefix: str) -> None:
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


def _apply_and_ask(job: DemoJob, env: str, names: list[str]) -> None:
    """`graphops apply --env`, then one object and a list of three on each stable route."""
    with job.step(f"Apply {env} (what deploy.yml runs)", False):
        graphops_command(job, "apply", "--env", env)
    with job.step(f"{env}: real requests to each graph's stable route"):
        for name in names:
            _ask(job, env, name)


def _harden(job: DemoJob, names: list[str]) -> None:
    """Dev's first answered graph against what the attacker sent (refusals, a stalled body)."""
    from graphops.demo.hardening import abuse
    from graphops.environments import load_release

    answered = [name for env, name, _, _ in job.answers if env == "dev"]
    if not answered:
        return
    graph = answered[0]
    example = load_release(job.sandbox, "dev").graphs[graph].lock.example
    if not example or not any(isinstance(v, list) for v in example.values()):
        return
    with job.step(f"dev: {graph} refuses what an attacker sends (strict JSON, slow bodies)"):
        abuse(job, job.state.services["ray-dev"].ports["serve"], graph, example)


def _ask(job: DemoJob, env: str, name: str) -> None:
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
        try:
            answer = requests.post(url, json=body, timeout=60)
        except requests.RequestException as exc:
            job.problems.append(f"{env}: {name} did not answer at {url}: {exc}")
            console.print(f"[red]{env}: {name} did not answer at {url}:[/] {exc}")
            return
        shown = "one object" if isinstance(body, dict) else f"a list of {len(body)}"
        text = answer.text if len(answer.text) < 200 else answer.text[:200] + " …"
        console.print(
            f"{env} POST {url} {shown} -> {answer.status_code} {text}", markup=False, soft_wrap=True
        )
        if answer.status_code != 200:
            job.problems.append(f"{env}: {name} answered {answer.status_code}")
    asked = (env, name, entry.lock.version, url)
    keys = [a[:2] for a in job.answers]
    if (env, name) in keys:  # asked again (after a canary): the latest answer, in its place
        job.answers[keys.index((env, name))] = asked
    else:
        job.answers.append(asked)


def token_exports(job: DemoJob) -> None:
    """The export lines that let `graphops status/apply` read the clusters (the file, not the token).

    The sandbox's environments name GRAPHOPS_<ENV>_TOKEN, and `graphops status` in the checkout
    shows them while the checkout releases nothing; an environment of this checkout that does
    release a graph and points at a demo cluster without a ``cluster.token_env`` reads
    RAY_AUTH_TOKEN.
    """
    from graphops.controller.cluster import token_variable
    from graphops.environments import environment_names, load_environment, load_release

    def shown(path: Path) -> Path:
        return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path

    files = {
        name.removeprefix("ray-"): (service.url, shown(Path(service.token_file)))
        for name, service in job.state.services.items()
        if service.token_file
    }
    if not files:
        return
    console.print(
        "The clusters ask for a token: to run `graphops status` (in this checkout it shows the "
        f"sandbox's environments) or `graphops --repo {shown(job.sandbox)} apply` yourself,"
    )
    for env, (_, path) in files.items():
        console.print(f"  export {token_env(env)}=$(cat {path})", markup=False, highlight=False)
    for env in environment_names(job.root):  # this checkout's own environments
        config = load_environment(job.root, env)
        if not load_release(job.root, env).graphs:
            continue  # `graphops status` shows the sandbox's instead
        for url, path in files.values():
            if config.cluster.dashboard == url and not config.cluster.token_env:
                variable = token_variable(config)
                console.print(f"and for `graphops status --env {env}` in this checkout:")
                console.print(f"  export {variable}=$(cat {path})", markup=False, highlight=False)
