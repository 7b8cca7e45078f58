"""Canary rollouts on a cluster: the new version behind the router, step by step, judged live.

`graphops.controller.apply` calls `canary` for each graph whose environment (or own entry of
``rollout.graphs``) says ``strategy: canary`` and whose serving version changes. Every move is a
complete Serve config, as in the rest of apply:

1. the candidate and a router start beside the running version on private routes and must
   answer their smoke example (a failure restores the config, as for blue/green);
2. the router takes ``/<graph>`` with the stable version and the candidate as its two arms
   (both move to ``/_graphops/arm/<app>``; route moves and weights are in-place updates);
3. each judged step sets the candidate's share in the router's ``user_config`` (in place) and
   reads the router's per-arm totals until `graphops.controller.canary.judge` decides;
4. **advance** past the last step: apply's blue/green switch gives the candidate the route alone
   and retires the router and the old version (no hop left);
   **abort**: the candidate's share goes to 0 in place, then the stable version takes its route
   back and the candidate and router are removed; git is made to say so (`revert_release`).

Every step is recorded (who, when, decision, reason, figures of both arms) in
``environments/<env>/rollouts.yaml``, committed on the checked-out branch with the release, and
copied into MLflow (`graphops.controller.records`).
"""

from __future__ import annotations

import datetime
import getpass
import os
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import git
import requests

from graphops.controller.canary import figures, judge, shares
from graphops.controller.cluster import Cluster, serve_url
from graphops.controller.render import (
    ARM_ROUTE,
    Rendered,
    app_name,
    render,
    router_application,
    router_name,
)
from graphops.environments import (
    ENVIRONMENTS_DIR,
    CanaryConfig,
    Release,
    ReleaseEntry,
    dump_yaml,
    load_release,
    read_yaml,
    release_path,
    write_release,
)
from graphops.errors import ApplyError
from graphops.runtime.schema import (
    RouteArm,
    RouterConfig,
    arm_delta,
)

ROLLOUTS_FILE = "rollouts.yaml"
KEPT = 10
"""Rollouts kept per graph in rollouts.yaml (older ones stay in git history)."""
CANARY_PREFIX = "canary"


class RolloutAborted(ApplyError):
    """A canary was aborted: the stable version serves alone again and git says so."""


@dataclass
class Rollout:
    """One rollout of a graph, as recorded in ``rollouts.yaml``."""

    graph: str
    env: str
    stable: str
    candidate: str
    policy: CanaryConfig
    by: str = ""
    started: str = ""
    ended: str = ""
    outcome: str = "running"
    reason: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)
    mlflow_run: str = ""
    """The MLflow run holding a copy of the record (`graphops.controller.records`)."""

    def record(self) -> dict[str, Any]:
        """The YAML entry."""
        return {
            "version": self.candidate,
            "from": self.stable,
            "strategy": "canary",
            "outcome": self.outcome,
            "reason": self.reason,
            "by": self.by,
            "started": self.started,
            "ended": self.ended,
            "policy": self.policy.model_dump(mode="json"),
            "steps": self.steps,
            "mlflow_run": self.mlflow_run,
        }


def who() -> str:
    """Who applies: the CI actor when there is one, else user@host."""
    actor = os.environ.get("GITHUB_ACTOR")
    if actor:
        return f"{actor} (GitHub Actions run {os.environ.get('GITHUB_RUN_ID', '?')})"
    return f"{getpass.getuser()}@{socket.gethostname()}"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def version_of(graph: str, app: str) -> str:
    """The version in an application name ``<graph>-<version>-<lock id>``."""
    return app[len(graph) + 1 : -9]


def router_app(graph: str, stable: str, candidate: str, share: float) -> dict[str, Any]:
    """The router application of a canary: stable and candidate arms, ``share`` to the latter."""
    config = RouterConfig(
        experiment=f"{graph}-{CANARY_PREFIX}-{version_of(graph, stable)}-vs-"
        f"{version_of(graph, candidate)}",
        arms=(
            RouteArm(version=version_of(graph, stable), app=stable, weight=100 - share),
            RouteArm(version=version_of(graph, candidate), app=candidate, weight=share),
        ),
    )
    return router_application(graph, config)


def interrupted_stable(graph: str, live: dict[str, dict[str, Any]]) -> str | None:
    """The stable arm of a canary of ``graph`` left running by an interrupted apply, if any."""
    router = live.get(router_name(graph))
    if router is None:
        return None
    for deployment in router.get("deployments") or []:
        config = deployment.get("user_config") or {}
        if str(config.get("experiment", "")).startswith(f"{graph}-{CANARY_PREFIX}-"):
            return str(config["arms"][0]["app"])
    return None


@dataclass
class Canary:
    """The cluster side of one canary: configs to put, figures to read."""

    cluster: Cluster
    base: dict[str, Any]
    url: str
    graph: str
    others: list[dict[str, Any]]
    stable: dict[str, Any]
    candidate: dict[str, Any]
    timeout_s: float
    log: Callable[[str], None]

    def config(self, share: float, stable_route: str | None = None) -> list[dict[str, Any]]:
        """The applications with the router in front, ``share`` percent to the candidate."""
        s, c = self.stable["name"], self.candidate["name"]
        return [
            *self.others,
            self.stable | {"route_prefix": stable_route or ARM_ROUTE + s},
            self.candidate | {"route_prefix": ARM_ROUTE + c},
            router_app(self.graph, s, c, share),
        ]

    def put(self, apps: list[dict[str, Any]], names: list[str]) -> None:
        """Deploy ``apps`` and wait for ``names`` to run."""
        self.cluster.put(apps, self.base)
        problems = self.cluster.wait(names, self.timeout_s)
        if problems:
            raise ApplyError(
                f"canary of {self.graph}: not every application runs: "
                + "; ".join(f"{n}: {why}" for n, why in problems.items()),
                fix="Run `graphops status`; apply again to resume (the stable version keeps "
                "its share).",
            )

    def arms(self) -> tuple[dict[str, Any], dict[str, Any], float]:
        """Raw totals of the stable and candidate arms as the router counts them, and when."""
        answer = requests.get(f"{self.url}/{self.graph}/experiment", timeout=10)
        answer.raise_for_status()
        report = answer.json()
        raw = {a["app"]: a["raw"] for a in report["arms"]}
        return raw[self.stable["name"]], raw[self.candidate["name"]], time.monotonic()

    def step(
        self, policy: CanaryConfig, share: float, sleep: Callable[[float], None]
    ) -> dict[str, Any]:
        """Walk one step: set the share in place, read until `judge` decides; the record."""
        names = [self.stable["name"], self.candidate["name"], router_name(self.graph)]
        self.put(self.config(share), names)
        started = _now()
        stable0, candidate0, t0 = self.arms()
        while True:
            sleep(policy.poll_seconds)
            stable1, candidate1, t1 = self.arms()
            stable = figures(arm_delta(stable1, stable0))
            candidate = figures(arm_delta(candidate1, candidate0))
            verdict = judge(policy, share, t1 - t0, stable, candidate)
            if verdict.action != "wait":
                self.log(f"{self.graph} at {share:g}%: {verdict.action}: {verdict.reason}")
                return {
                    "share": share,
                    "started": started,
                    "ended": _now(),
                    "seconds": round(t1 - t0, 1),
                    "decision": verdict.action,
                    "reason": verdict.reason,
                    "stable": stable,
                    "candidate": candidate,
                }

    def abort(self) -> None:
        """Traffic back to the stable arm in place, then its route back; candidate removed."""
        names = [self.stable["name"], self.candidate["name"], router_name(self.graph)]
        self.put(self.config(0), names)
        stable = self.stable | {"route_prefix": f"/{self.graph}"}
        self.put([*self.others, stable], [self.stable["name"]])


def canary(
    canary_: Canary, policy: CanaryConfig, rollout: Rollout, sleep: Callable[[float], None]
) -> Rollout:
    """Walk every judged step (the caller switches the route after the last); the record."""
    rollout.by, rollout.started = who(), _now()
    for share in shares(policy)[:-1]:
        step = canary_.step(policy, share, sleep)
        rollout.steps.append(step)
        if step["decision"] == "abort":
            canary_.abort()
            rollout.outcome, rollout.reason, rollout.ended = "aborted", step["reason"], _now()
            return rollout
    rollout.outcome, rollout.ended = "promoted", _now()
    rollout.reason = f"passed {len(rollout.steps)} steps; takes /{rollout.graph} alone"
    return rollout


def run_canary(
    repo: Path,
    rendered: Rendered,
    cluster: Cluster,
    graph: str,
    *,
    stable: dict[str, Any],
    candidate: dict[str, Any],
    live: dict[str, dict[str, Any]],
    timeout_s: float,
    push: str | None,
    log: Callable[[str], None],
    sleep: Callable[[float], None],
    tracking_uri: str | None = None,
) -> Rollout:
    """Start the candidate behind the router and walk the steps (see the module docstring).

    Returns the promoted rollout (the caller's switch gives the candidate the route, then
    records it with `graphops.controller.records.record_rollout`: git and MLflow).

    Raises:
        ApplyError: The candidate or router failed to start or to answer its smoke example (the
            previous config is restored).
        RolloutAborted: A step aborted; the stable version serves alone, git is committed.
    """
    from graphops.controller.apply import CANDIDATE, _smoke, comparable

    env = rendered.environment
    policy = env.rollout.canary_of(graph)
    base = {k: v for k, v in rendered.config.items() if k != "applications"}
    drop = {stable["name"], candidate["name"], router_name(graph)}
    others = [comparable(a) for n, a in live.items() if n not in drop]
    url = serve_url(env)
    run = Canary(cluster, base, url, graph, others, comparable(stable), candidate, timeout_s, log)
    first = shares(policy)[0]
    router = router_app(graph, stable["name"], candidate["name"], first)
    # An interrupted canary whose router already owns the route resumes at its first step; one
    # interrupted before (candidate and router still on private routes) starts again from here.
    resumed = (live.get(router["name"]) or {}).get("route_prefix") == f"/{graph}"
    if not resumed:
        starting = {candidate["name"]: candidate, router["name"]: router}
        current = [comparable(a) for n, a in live.items() if n not in starting]
        log(
            f"canary of {graph}: starting {candidate['name']} and its router beside {stable['name']}"
        )
        cluster.put(
            [
                *current,
                *({**a, "route_prefix": CANDIDATE + n} for n, a in starting.items()),
            ],
            base,
        )
        problems = cluster.wait(list(starting), timeout_s)
        if not problems:
            known = {stable["name"]: stable, candidate["name"]: candidate}
            problems = _smoke(env.name, url, starting, known)
        if problems:
            log("the candidate failed: restoring the previous state")
            cluster.put(current, base)
            cluster.wait([n for n in live if n not in starting], timeout_s)
            raise ApplyError(
                f"{env.name}: the canary of {graph} failed to start, the previous state is "
                "restored and kept serving: "
                + "; ".join(f"{n}: {why}" for n, why in problems.items()),
                fix="Fix the version (see the reason), promote a new one, or revert the "
                "promotion commit.",
            )
    rollout = Rollout(
        graph=graph,
        env=env.name,
        stable=version_of(graph, stable["name"]),
        candidate=version_of(graph, candidate["name"]),
        policy=policy,
    )
    log(f"canary of {graph}: steps {', '.join(f'{v:g}%' for v in shares(policy))}")
    canary(run, policy, rollout, sleep)
    if rollout.outcome == "promoted":
        return rollout
    from graphops.controller.records import record_rollout

    entry = last_good_entry(repo, env.name, graph, stable["name"])
    commit = record_rollout(
        repo, rollout, revert_to=entry, push=push, log=log, tracking_uri=tracking_uri
    )
    said = (
        f"git names {rollout.stable} again (commit {commit[:12]})"
        if entry is not None
        else f"git still names {rollout.candidate}: no commit of release.yaml pins "
        f"{stable['name']} (record committed as {commit[:12]})"
    )
    raise RolloutAborted(
        f"{env.name}: the canary of {graph} {rollout.candidate} was aborted {rollout.reason} "
        f"{rollout.stable} serves /{graph} alone again and {said}.",
        fix="See `graphops status` and environments/"
        f"{env.name}/{ROLLOUTS_FILE}; fix the version and promote a new one.",
    )


def rollouts_path(repo: Path, env: str) -> Path:
    """Where an environment's rollout records live."""
    return repo / ENVIRONMENTS_DIR / env / ROLLOUTS_FILE


def load_rollouts(repo: Path, env: str) -> dict[str, list[dict[str, Any]]]:
    """Graph -> its recorded rollouts, newest first (empty when none was recorded)."""
    data = read_yaml(rollouts_path(repo, env))
    return {str(k): list(v or []) for k, v in (data.get("graphs") or {}).items()}


def write_rollout(repo: Path, rollout: Rollout) -> None:
    """Put ``rollout`` first in its graph's records (keeping `KEPT`)."""
    records = load_rollouts(repo, rollout.env)
    records[rollout.graph] = [rollout.record(), *records.get(rollout.graph, [])][:KEPT]
    header = (
        "# Written by `graphops apply`: every canary rollout, its steps and decisions "
        "(docs/promote-and-rollback.md).\n"
    )
    rollouts_path(repo, rollout.env).write_text(
        dump_yaml({"graphs": dict(sorted(records.items()))}, header)
    )


def last_good_entry(repo: Path, env: str, graph: str, app: str) -> ReleaseEntry | None:
    """The release entry of ``graph`` whose application is ``app``, newest first in git history."""
    rel = release_path(repo, env).relative_to(repo).as_posix()
    with git.Repo(repo) as r:
        commits = r.git.log("--format=%H", "-n", "200", "--", rel).split()
        for commit in commits:
            try:
                text = r.git.show(f"{commit}:{rel}")
            except git.GitCommandError:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "release.yaml"
                path.write_text(text)
                try:
                    release = Release.model_validate(read_yaml(path))
                except ValueError:
                    continue
            entry = release.graphs.get(graph)
            if entry is not None and entry.traffic is None and app_name(graph, entry.lock) == app:
                return entry
    return None


def record_in_git(
    repo: Path, rollout: Rollout, *, revert_to: ReleaseEntry | None, push: str | None
) -> str:
    """Commit the record (and, after an abort, the release naming the stable version again).

    Committed on the checked-out branch (and pushed to ``push`` of origin when given), so git
    says what the cluster runs: an aborted version is not tried again by the next apply.
    Returns the commit.
    """
    from graphops.controller.commit import commit_change

    def write() -> None:
        if revert_to is not None:
            release = load_release(repo, rollout.env)
            graphs = dict(release.graphs) | {rollout.graph: revert_to}
            write_release(repo, rollout.env, release.model_copy(update={"graphs": graphs}))
            render(repo, rollout.env).write()
        write_rollout(repo, rollout)

    with git.Repo(repo) as r:
        branch = r.active_branch.name
    verb = "aborted" if rollout.outcome == "aborted" else "promoted"
    message = (
        f"rollout: {rollout.graph} {rollout.candidate} {verb} in {rollout.env}"
        + (f", back to {rollout.stable}" if revert_to is not None else "")
        + f"\n\n{rollout.reason}\nby {rollout.by}\n"
    )
    done = commit_change(
        repo, graph=rollout.graph, branch=branch, message=message, write=write, push=push
    )
    return done.commit


__all__ = [
    "Canary",
    "Rollout",
    "RolloutAborted",
    "canary",
    "interrupted_stable",
    "last_good_entry",
    "load_rollouts",
    "record_in_git",
    "rollouts_path",
    "router_app",
    "run_canary",
    "version_of",
]
