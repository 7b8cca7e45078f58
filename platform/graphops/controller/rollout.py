"""Canary rollouts on a cluster: the stable version's own ingress splits its route, judged live.

`graphops.controller.apply` calls `canary` for each graph whose environment (or own entry of
``rollout.graphs``) says ``strategy: canary`` and whose serving version changes. Every move is a
complete Serve config, as in the rest of apply:

1. the candidate starts beside the running version on a private route and must answer its smoke
   example (a failure restores the config, as for blue/green); the stable keeps ``/<graph>``;
2. each judged step sets the candidate's share in the stable ingress's ``user_config``
   (`graphops.runtime.split.TrafficSplit`, an in-place update: no replica restarts) and reads
   both arms' totals, merged across ingress replicas at ``GET /<graph>/split``, until
   `graphops.controller.canary.judge` decides. A candidate with the stable's code (same content
   hash and fusion: a new model) is answered by its own stage deployments, called by the stable
   ingress directly (no extra hop); other code is asked through its ingress (one hop);
3. **advance** past the last step: apply's blue/green switch gives the candidate the route alone
   and retires the old version;
   **abort**: the candidate's share goes to 0 in place, then the split is dropped and the
   candidate removed; git is made to say so (`revert_release`).

A controller stopped mid-canary finds the split (`interrupted_stable`) and starts the steps
again from the first; the candidate, already running, is only smoke-tested again.

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

from graphops.controller.apply import CANDIDATE, comparable, smoke
from graphops.controller.canary import figures, judge, shares
from graphops.controller.cluster import Cluster, serve_url
from graphops.controller.render import Rendered, app_name, render
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
from graphops.runtime.figures import delta
from graphops.runtime.schema import INGRESS, AppArgs
from graphops.runtime.split import SPLIT_ROUTE, SplitArm, SplitReport, TrafficSplit

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


def split_of(graph: str, stable: str, candidate: dict[str, Any], share: float) -> TrafficSplit:
    """The split of a canary in the stable ingress: ``share`` percent to the ``candidate`` app."""
    args = AppArgs.model_validate(candidate["args"])
    name = candidate["name"]
    arm = SplitArm(
        app=name,
        version=version_of(graph, name),
        content_hash=args.content_hash,
        fuse=args.fuse,
        weight=share,
    )
    return TrafficSplit(
        name=f"{graph}-{CANARY_PREFIX}-{version_of(graph, stable)}-vs-{version_of(graph, name)}",
        purpose="rollout",
        own_version=version_of(graph, stable),
        arms=(arm,),
    )


def with_split(app: dict[str, Any], split: TrafficSplit | None) -> dict[str, Any]:
    """``app`` with its ingress's ``user_config`` set to ``split`` (None: removed).

    `render` lists the ingress in every graph application's ``deployments`` so that this is
    an in-place update; an application rendered before that gets its ingress listed here (its
    replicas restart once: Serve merges the runtime_env into listed deployments only).
    """
    deployments = [dict(d) for d in app.get("deployments") or []]
    if split is not None and not any(d.get("name") == INGRESS for d in deployments):
        deployments.append({"name": INGRESS})
    for d in deployments:
        if d.get("name") == INGRESS:
            # {} rather than none: Serve calls no reconfigure when a user_config is removed
            d["user_config"] = split.model_dump(mode="json") if split is not None else {}
    out = {k: v for k, v in app.items() if k != "deployments"}
    return out | {"deployments": deployments} if deployments else out


def split_in(app: dict[str, Any]) -> TrafficSplit | None:
    """The split an application's ingress is configured with, if any (and if readable)."""
    for d in app.get("deployments") or []:
        if d.get("name") == INGRESS and d.get("user_config"):
            try:
                return TrafficSplit.model_validate(d["user_config"])
            except ValueError:  # not one this controller wrote: no canary of ours
                return None
    return None


def interrupted_stable(graph: str, live: dict[str, dict[str, Any]]) -> str | None:
    """The stable version of a canary of ``graph`` left running by an interrupted apply, if any.

    The application whose ingress splits its route for a canary (or, from controllers before
    the split moved into the ingress, the router's first arm).
    """
    for name, app in sorted(live.items()):
        split = split_in(app) if (app.get("args") or {}).get("graph") == graph else None
        if split is not None and split.name.startswith(f"{graph}-{CANARY_PREFIX}-"):
            return name
    router = live.get(f"{graph}-router")  # from controllers of before the ingress split
    for deployment in (router or {}).get("deployments") or []:
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
    same_code: bool = False
    """Whether the stable ingress answers the candidate's share with no hop (last reading)."""

    def config(self, share: float | None) -> list[dict[str, Any]]:
        """The applications: the stable on its route giving ``share`` percent to the candidate.

        ``share`` None: the stable alone on its route, split dropped, candidate removed.
        """
        s, c = self.stable["name"], self.candidate["name"]
        split = split_of(self.graph, s, self.candidate, share) if share is not None else None
        stable = with_split(self.stable, split) | {"route_prefix": f"/{self.graph}"}
        if split is None:
            return [*self.others, stable]
        return [*self.others, stable, self.candidate | {"route_prefix": CANDIDATE + c}]

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

    def arms(self, share: float) -> tuple[dict[str, Any], dict[str, Any], float]:
        """Raw totals of the stable and candidate arms as the stable ingress counts them, and when.

        Totals merged across the ingress replicas (`graphops.runtime.split.SplitReport`). A
        config is applied after Serve answers the PUT: until an ingress replica answers with
        ``share`` (a 404 before its first split), it is asked again.
        """
        deadline = time.monotonic() + self.timeout_s
        while True:
            answer = requests.get(f"{self.url}/{self.graph}{SPLIT_ROUTE}", timeout=10)
            if answer.status_code != 404:
                answer.raise_for_status()
                report = SplitReport.model_validate_json(answer.content)
                arm = report.arm(self.candidate["name"])
                own = report.arm(self.stable["name"])
                if arm is not None and own is not None and arm.weight == share:
                    break
            if time.monotonic() > deadline:
                raise ApplyError(
                    f"canary of {self.graph}: the ingress of {self.stable['name']} did not take "
                    f"the split at {share:g}% within {self.timeout_s:g} s (GET "
                    f"/{self.graph}{SPLIT_ROUTE} answered {answer.status_code}).",
                    fix="Run `graphops status`; see the Serve logs of its ingress; apply again "
                    "to resume.",
                )
            time.sleep(0.25)
        self.same_code = report.same_code.get(self.candidate["name"], False)
        return own.raw, arm.raw, time.monotonic()

    def step(
        self, policy: CanaryConfig, share: float, sleep: Callable[[float], None]
    ) -> dict[str, Any]:
        """Walk one step: set the share in place, read until `judge` decides; the record."""
        names = [self.stable["name"], self.candidate["name"]]
        self.put(self.config(share), names)
        started = _now()
        stable0, candidate0, t0 = self.arms(share)
        while True:
            sleep(policy.poll_seconds)
            stable1, candidate1, t1 = self.arms(share)
            stable = figures(delta(stable1, stable0))
            candidate = figures(delta(candidate1, candidate0))
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
                    "path": "no hop (same code)" if self.same_code else "via its ingress",
                    "stable": stable,
                    "candidate": candidate,
                }

    def abort(self) -> None:
        """Traffic back to the stable version in place, then the split dropped; candidate removed.

        The share goes to 0 first: Serve calls no ``reconfigure`` when a ``user_config`` is taken
        out of the config, so a replica keeps its last split; it must not name a removed app.
        """
        self.put(self.config(0), [self.stable["name"], self.candidate["name"]])
        self.put(self.config(None), [self.stable["name"]])


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
    """Start the candidate beside the stable version and walk the steps (module docstring).

    Returns the promoted rollout (the caller's switch gives the candidate the route, then
    records it with `graphops.controller.records.record_rollout`: git and MLflow).

    Raises:
        ApplyError: The candidate failed to start or to answer its smoke example (the stable
            version is left serving alone).
        RolloutAborted: A step aborted; the stable version serves alone, git is committed.
    """
    env = rendered.environment
    policy = env.rollout.canary_of(graph)
    base = {k: v for k, v in rendered.config.items() if k != "applications"}
    drop = {stable["name"], candidate["name"], f"{graph}-router"}  # the router: older canaries
    others = [comparable(a) for n, a in live.items() if n not in drop]
    url = serve_url(env)
    run = Canary(cluster, base, url, graph, others, comparable(stable), candidate, timeout_s, log)
    # A canary interrupted mid-way left the candidate running and the stable ingress splitting:
    # the candidate is put (unchanged) and smoke-tested again, and the steps start from the first.
    verb = "resuming" if candidate["name"] in live else "starting"
    log(f"canary of {graph}: {verb} {candidate['name']} beside {stable['name']}")
    current = [comparable(a) for n, a in live.items() if n != candidate["name"]]
    cluster.put([*current, candidate | {"route_prefix": CANDIDATE + candidate["name"]}], base)
    problems = cluster.wait([candidate["name"]], timeout_s)
    if not problems:
        known = {stable["name"]: stable, candidate["name"]: candidate}
        problems = smoke(env.name, url, {candidate["name"]: candidate}, known)
    if problems:
        log("the candidate failed: restoring the stable version alone")
        if split_in(stable) is not None:  # resumed: never leave the split naming a removed app
            run.put(run.config(0), [stable["name"]])
        run.put(run.config(None), [stable["name"]])
        raise ApplyError(
            f"{env.name}: the canary of {graph} failed to start, the previous state is "
            "restored and kept serving: " + "; ".join(f"{n}: {why}" for n, why in problems.items()),
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
    "run_canary",
    "split_in",
    "split_of",
    "version_of",
    "with_split",
]
