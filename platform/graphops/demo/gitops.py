"""The main job's GitOps steps, for real on the local clusters, in the sandbox clone.

`graphops promote` and `apply` run in the sandbox (`graphops.demo.sandbox`) as their own
processes, exactly as the workflows run them, and every graph is then asked on its stable route.
`graphops.demo.run` strings these steps together with the rollouts and the placement.
"""

from __future__ import annotations

from typing import Any

import graphops.demo.services as services
from graphops._views import console
from graphops.demo.job import DemoJob
from graphops.demo.names import STAGING_GRAPH
from graphops.demo.sandbox import graphops_command, merge_branch, open_sandbox, pull_sandbox


def open_gitops(job: DemoJob, envs: list[str]) -> bool:
    """Check the local services answer, then open the sandbox; False without a git checkout."""
    with job.step("Check the local services answer"):
        for service in job.state.services.values():
            services.wait_ready(service)
            where = f"worker node of {service.head}" if service.head else f"up at {service.url}"
            console.print(f"{service.name}: {where}")
    with job.step("GitOps sandbox: a clone of this repository, its environments on the clusters"):
        return open_sandbox(job, envs)


def promote_to_dev(job: DemoJob) -> None:
    """Promote every validated graph to dev and push (what CI runs after a merge)."""
    with job.step("Promote every validated graph to dev (what CI runs after a merge)", False):
        graphops_command(job, "promote", "--auto", "--to", "dev", "--push", "main")
        pull_sandbox(job)


def promote_to_staging(job: DemoJob) -> None:
    """Promote `STAGING_GRAPH` on to staging and merge it (a reviewed PR), then apply staging."""
    with job.step(f"Promote {STAGING_GRAPH} to staging and merge it (a reviewed PR)", False):
        graphops_command(job, "promote", STAGING_GRAPH, "--to", "staging")
        merge_branch(job, f"promote/staging/{STAGING_GRAPH}-")
    apply_and_ask(job, "staging", [STAGING_GRAPH])


def apply_and_ask(job: DemoJob, env: str, names: list[str]) -> None:
    """`graphops diff` and `apply --env`, then one object and a list of three on each route."""
    with job.step(f"What applying {env} changes, and its peak (graphops diff)", False):
        graphops_command(job, "diff", "--env", env)
    with job.step(f"Apply {env} (what deploy.yml runs)", False):
        graphops_command(job, "apply", "--env", env)
    with job.step(f"{env}: real requests to each graph's stable route"):
        for name in names:
            ask(job, env, name)


def harden(job: DemoJob, names: list[str]) -> None:
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


def ask(job: DemoJob, env: str, name: str) -> None:
    """Ask ``name`` on ``env``'s stable route: its example as one object, then a list of rows."""
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
