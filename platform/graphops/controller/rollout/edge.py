"""The walker's edge on a cluster: Serve configs put through the REST API, the split read live.

Every move is one complete Serve config, as in the rest of `apply`. The stable version keeps
``/<graph>``; its ingress's ``user_config`` holds the rollout's `TrafficSplit` (purpose
``rollout``, named ``<graph>-rollout-<stable>-vs-<candidate>``), an in-place update that restarts
no replica; its totals are read at ``GET /<graph>/split`` (`SplitReport`, merged across the
ingress's replicas). A candidate with the stable's code (same content hash and fusion: a new
model) is answered by its own stage deployments called from the stable ingress (no hop); other
code through its ingress (one hop); a mirror's answers are compared with the stable's, never
returned. `rollouts_due` says which graphs this apply walks; `interrupted_stable` finds the
split an interrupted apply left, so the next one resumes it from the first step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from graphops.controller.applications import (
    CANDIDATE,
    AppConfig,
    comparable,
    graph_of,
    smoke,
    split_in,
    version_of,
    with_split,
)
from graphops.controller.cluster import Cluster, serve_url
from graphops.controller.render import Rendered, app_name
from graphops.controller.rollout.record import RolloutRecord, utc_now, who
from graphops.controller.rollout.recording import last_good_entry, record_rollout
from graphops.controller.rollout.strategy import RolloutStrategy, Step
from graphops.controller.rollout.walk import Tally, walk
from graphops.errors import ApplyError
from graphops.runtime.schema import APP_IMPORT_PATH, AppArgs
from graphops.runtime.split import SPLIT_ROUTE, Mirror, SplitArm, SplitReport, TrafficSplit

NAME = "{graph}-rollout-{stable}-vs-{candidate}"
"""The name of a rollout's split (its figures, and how an interrupted one is recognised)."""


def split_for(graph: str, stable: str, candidate: AppConfig, step: Step | None) -> TrafficSplit:
    """The stable ingress's split at ``step``: its share and mirror to ``candidate`` (None: 0)."""
    args = AppArgs.model_validate(candidate["args"])
    name = str(candidate["name"])
    target = {
        "app": name,
        "version": version_of(graph, name),
        "content_hash": args.content_hash,
        "fuse": args.fuse,
    }
    share, mirror = (step.share, step.mirror) if step is not None else (0.0, 0.0)
    return TrafficSplit(
        name=NAME.format(
            graph=graph, stable=version_of(graph, stable), candidate=version_of(graph, name)
        ),
        purpose="rollout",
        own_version=version_of(graph, stable),
        arms=(SplitArm.model_validate(target | {"weight": share}),) if share else (),
        mirror=Mirror.model_validate(target | {"percent": mirror}) if mirror else None,
    )


def interrupted_stable(graph: str, live: dict[str, AppConfig]) -> str | None:
    """The stable version of a rollout of ``graph`` left running by an interrupted apply, if any.

    The application whose ingress splits its route for a rollout (or, from controllers before
    the split moved into the ingress, the router's first arm of a canary).
    """
    for name, app in sorted(live.items()):
        split = split_in(app) if (app.get("args") or {}).get("graph") == graph else None
        if split is not None and split.purpose == "rollout":
            return name
    router = live.get(f"{graph}-router")
    for deployment in (router or {}).get("deployments") or []:
        config = deployment.get("user_config") or {}
        if str(config.get("experiment", "")).startswith(f"{graph}-canary-"):
            return str(config["arms"][0]["app"])
    return None


def rollouts_due(
    rendered: Rendered, live: dict[str, AppConfig], strategies: dict[str, RolloutStrategy]
) -> list[tuple[str, str]]:
    """(graph, stable application) of each graph this apply moves to a new version by steps.

    ``strategies``: each graph's strategy. A graph qualifies when its strategy has steps, git
    pins one version without an experiment, and another version of it serves its route now (or
    is the stable version of a rollout an interrupted apply left behind).
    """
    out = []
    for graph, entry in sorted(rendered.release.graphs.items()):
        if not strategies[graph].steps() or entry.traffic:
            continue
        candidate = app_name(graph, entry.lock)
        serving = [
            n
            for n, a in live.items()
            if graph_of(a) == graph
            and a.get("route_prefix") == f"/{graph}"
            and a.get("import_path") == APP_IMPORT_PATH
        ]
        stable = serving[0] if len(serving) == 1 else interrupted_stable(graph, live)
        if stable is not None and stable != candidate:
            out.append((graph, stable))
    return out


@dataclass
class ClusterEdge:
    """The `Edge` of one rollout on a cluster (see the module docstring)."""

    repo: Path
    cluster: Cluster
    base: AppConfig
    url: str
    graph: str
    others: list[AppConfig]
    stable: AppConfig
    candidate: AppConfig
    live: dict[str, AppConfig]
    timeout_s: float
    push: str | None
    tracking_uri: str | None
    log: Callable[[str], None]
    sleep: Callable[[float], None]

    def config(self, split: TrafficSplit | None) -> list[AppConfig]:
        """The applications: the stable on its route with ``split`` (None: alone, candidate gone)."""
        stable = with_split(self.stable, split) | {"route_prefix": f"/{self.graph}"}
        if split is None:
            return [*self.others, stable]
        name = self.candidate["name"]
        return [*self.others, stable, self.candidate | {"route_prefix": CANDIDATE + name}]

    def _put(self, apps: list[AppConfig], names: list[str]) -> None:
        """Deploy ``apps`` and wait for ``names`` to run."""
        self.cluster.put(apps, self.base)
        problems = self.cluster.wait(names, self.timeout_s)
        if problems:
            raise ApplyError(
                f"rollout of {self.graph}: not every application runs: "
                + "; ".join(f"{n}: {why}" for n, why in problems.items()),
                fix="Run `graphops status`; apply again to resume (the stable version keeps "
                "its share).",
            )

    def _split(self, step: Step | None) -> TrafficSplit:
        return split_for(self.graph, self.stable["name"], self.candidate, step)

    def start(self) -> None:
        """The candidate beside the stable (or again, when resumed), smoke-tested."""
        name, stable = self.candidate["name"], self.stable["name"]
        # Resumed: the candidate runs already and the stable ingress still splits; the candidate
        # is put (unchanged) and smoke-tested again, and the steps start from the first.
        verb = "resuming" if name in self.live else "starting"
        self.log(f"rollout of {self.graph}: {verb} {name} beside {stable}")
        current = [comparable(a) for n, a in self.live.items() if n != name]
        self.cluster.put([*current, self.candidate | {"route_prefix": CANDIDATE + name}], self.base)
        problems = self.cluster.wait([name], self.timeout_s)
        if not problems:
            problems = smoke(
                self.url, {name: self.candidate}, {stable: self.stable, name: self.candidate}
            )
        if problems:
            self.log("the candidate failed: restoring the stable version alone")
            if (
                split_in(self.live.get(stable) or {}) is not None
            ):  # never leave it naming a gone app
                self._put(self.config(self._split(None)), [stable])
            self._put(self.config(None), [stable])
            raise ApplyError(
                f"{self.cluster.env.name}: the rollout of {self.graph} failed to start, the "
                "previous state is restored and kept serving: "
                + "; ".join(f"{n}: {why}" for n, why in problems.items()),
                fix="Fix the version (see the reason), promote a new one, or revert the "
                "promotion commit.",
            )

    def put(self, step: Step) -> None:
        """The split of ``step`` in the stable ingress (in place)."""
        self._put(self.config(self._split(step)), [self.stable["name"], self.candidate["name"]])

    def read(self, step: Step) -> Tally:
        """``GET /<graph>/split`` until the stable ingress reports ``step``'s split.

        A config is applied after Serve answers the PUT: until an ingress replica answers with
        the step's share and mirror (a 404 before its first split), it is asked again.
        """
        split = self._split(step)
        name = self.candidate["name"]
        deadline = time.monotonic() + self.timeout_s
        while True:
            answer = requests.get(
                f"{self.url}/{self.graph}{SPLIT_ROUTE}", headers=self.cluster.headers, timeout=10
            )
            if answer.status_code != 404:
                answer.raise_for_status()
                report = SplitReport.model_validate(answer.json())
                arms = {a.role: a for a in report.arms if a.app in (name, self.stable["name"])}
                arm, mirror = arms.get("arm"), arms.get("mirror")
                if (
                    report.name == split.name
                    and "stable" in arms
                    and (arm.weight if arm else 0.0) == step.share
                    and (mirror.weight if mirror else 0.0) == step.mirror
                ):
                    return Tally(
                        at=time.monotonic(),
                        stable=arms["stable"].raw,
                        candidate=arm.raw if arm else None,
                        mirror=mirror.raw if mirror else None,
                        path="no hop (same code)"
                        if report.same_code.get(name)
                        else "via its ingress",
                    )
            if time.monotonic() > deadline:
                raise ApplyError(
                    f"rollout of {self.graph}: the ingress of {self.stable['name']} did not take "
                    f"the split at {step.label} within {self.timeout_s:g} s (GET "
                    f"/{self.graph}{SPLIT_ROUTE} answered {answer.status_code}).",
                    fix="Run `graphops status`; see the Serve logs of its ingress; apply again "
                    "to resume.",
                )
            time.sleep(0.25)

    def abort(self) -> None:
        """Traffic back to the stable version in place, then the split dropped; candidate removed.

        The split goes to zero first (naming no application), so no replica of the stable
        ingress can still send a request to the candidate when it is removed.
        """
        names = [self.stable["name"], self.candidate["name"]]
        self._put(self.config(self._split(None)), names)
        self._put(self.config(None), [self.stable["name"]])

    def revert(self, record: RolloutRecord) -> str:
        """Commit the record with the stable's release entry found in git history pinned again."""
        entry = last_good_entry(self.repo, record.env, self.graph, self.stable["name"])
        commit = record_rollout(
            self.repo,
            record,
            revert_to=entry,
            push=self.push,
            log=self.log,
            tracking_uri=self.tracking_uri,
        )
        if entry is not None:
            return f"git names {record.stable} again (commit {commit[:12]})"
        return (
            f"git still names {record.candidate}: no commit of release.yaml pins "
            f"{self.stable['name']} (record committed as {commit[:12]})"
        )

    def now(self) -> str:
        """UTC, to the second."""
        return utc_now()


def run_rollout(
    repo: Path,
    rendered: Rendered,
    cluster: Cluster,
    graph: str,
    strategy: RolloutStrategy,
    *,
    stable: AppConfig,
    candidate: AppConfig,
    live: dict[str, AppConfig],
    timeout_s: float,
    push: str | None,
    log: Callable[[str], None],
    sleep: Callable[[float], None],
    tracking_uri: str | None = None,
) -> RolloutRecord:
    """Walk ``strategy`` for ``graph`` on ``cluster``; the promoted record (not yet recorded).

    The caller's switch gives the candidate the route, then records it
    (`graphops.controller.rollout.recording.record_rollout`: git and MLflow).

    Raises:
        ApplyError: The candidate failed to start or to answer its smoke example.
        RolloutAborted: A step aborted; the stable version serves alone, git is committed.
    """
    drop = {stable["name"], candidate["name"], f"{graph}-router"}  # older controllers' canaries
    edge = ClusterEdge(
        repo=repo,
        cluster=cluster,
        base={k: v for k, v in rendered.config.items() if k != "applications"},
        url=serve_url(rendered.environment),
        graph=graph,
        others=[comparable(a) for n, a in live.items() if n not in drop],
        stable=comparable(stable),
        candidate=candidate,
        live=live,
        timeout_s=timeout_s,
        push=push,
        tracking_uri=tracking_uri,
        log=log,
        sleep=sleep,
    )
    record = RolloutRecord(
        graph=graph,
        env=rendered.env,
        stable=version_of(graph, stable["name"]),
        candidate=version_of(graph, candidate["name"]),
        by=who(),
    )
    return walk(strategy, edge, record)


__all__ = ["NAME", "ClusterEdge", "interrupted_stable", "rollouts_due", "run_rollout", "split_for"]
