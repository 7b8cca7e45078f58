"""The GitOps sandbox: a clone of this repository as CI's checkout, and `graphops` run in it.

A bare clone of this repository's HEAD plays the team's remote and a clone of it CI's checkout,
its environments pointed at the main job's local clusters. `graphops_command` runs `graphops`
there as its own process, exactly as the workflows run it; every step that changes git (GitOps,
rollouts) and the multi-node step's placement use these helpers, and import nothing back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import git
import yaml

import graphops.demo.processes as processes
import graphops.demo.services as services
from graphops._views import console
from graphops.demo.job import DEV_APP_CPUS, DemoJob
from graphops.errors import GraphOpsError


def open_sandbox(job: DemoJob, envs: list[str]) -> bool:
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
        "app_cpu_budget": DEV_APP_CPUS,
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
    command = [processes.console_script("graphops"), "--repo", str(job.sandbox), *args]
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


def merge_branch(job: DemoJob, prefix: str) -> None:
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
