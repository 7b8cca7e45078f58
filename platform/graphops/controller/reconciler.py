"""The pull-based controller (`graphops controller --env E`): poll git, apply, record, repeat.

One process beside the cluster. Each round it fetches ``origin``, fast-forwards the checkout to
``origin/<branch>`` when the branch moved, and applies the environment (each graph with its
rollout strategy, `graphops.controller.apply`), pushing a rollout's record (and an abort's
revert) back to ``<branch>``. The first round always applies, so a restarted controller resumes
what it left: an interrupted rollout (the stable ingress still splitting) starts again from its
first step, drift is reported (and removed with ``heal``). Its state is written to
``.graphops/controller-<env>.json`` after every round.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import git

from graphops.errors import GraphOpsError


@dataclass
class ControllerState:
    """What the controller did last: exposed in its state file."""

    env: str
    branch: str
    commit: str = ""
    rounds: int = 0
    last_round: str = ""
    last_apply: str = ""
    last_result: dict[str, Any] = field(default_factory=dict)
    last_error: str = ""


def state_path(repo: Path, env: str) -> Path:
    """Where the controller of ``env`` writes its state."""
    return repo / ".graphops" / f"controller-{env}.json"


def pull(repo: Path, branch: str) -> str | None:
    """Fetch origin and fast-forward the checkout to ``origin/<branch>``; the new head, or None.

    Raises:
        GraphOpsError: The checkout has diverged from origin (never rewritten by the controller).
    """
    with git.Repo(repo) as r:
        r.remotes.origin.fetch()
        target = r.remotes.origin.refs[branch].commit
        if r.head.commit == target:
            return None
        if not r.is_ancestor(r.head.commit, target):
            raise GraphOpsError(
                f"The checkout at {repo} ({r.head.commit.hexsha[:12]}) has diverged from "
                f"origin/{branch} ({target.hexsha[:12]}).",
                fix="The controller's checkout is its own: reset it to origin "
                f"(git reset --hard origin/{branch}) or clone it again.",
            )
        r.git.merge("--ff-only", target.hexsha)
        return target.hexsha


def round_(
    repo: Path,
    env: str,
    branch: str,
    state: ControllerState,
    *,
    heal: bool,
    timeout_s: float,
    log: Callable[[str], None],
    tracking_uri: str | None = None,
) -> ControllerState:
    """One round: pull, and apply when the branch moved or on the first round.

    Rollout records go to git and to MLflow at ``tracking_uri`` (see `graphops.controller.apply`).
    """
    from graphops.controller.apply import apply

    state.rounds += 1
    state.last_round = _now()
    try:
        moved = pull(repo, branch)
        with git.Repo(repo) as r:
            state.commit = r.head.commit.hexsha
        if moved or state.rounds == 1:
            log(f"applying {env} at {state.commit[:12]}")
            result = apply(
                repo,
                env,
                timeout_s=timeout_s,
                correct_drift=heal,
                log=log,
                push=branch,
                tracking_uri=tracking_uri,
            )
            state.last_apply = _now()
            state.last_result = {
                "started": result.started,
                "updated": result.updated,
                "retired": result.retired,
                "drift": result.drift,
                "rollouts": [r.git_form() for r in result.rollouts],
            }
            with git.Repo(repo) as r:
                state.commit = r.head.commit.hexsha  # a rollout record was committed
        state.last_error = ""
    except GraphOpsError as exc:  # an aborted canary included: reported, the loop goes on
        state.last_error = str(exc)
        log(f"[red]{type(exc).__name__}[/]: {exc}")
    path = state_path(repo, env)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(state), indent=2) + "\n")
    return state


def run(
    repo: Path,
    env: str,
    *,
    branch: str = "main",
    interval_s: float = 30.0,
    rounds: int | None = None,
    heal: bool = False,
    timeout_s: float = 300.0,
    log: Callable[[str], None] = lambda _: None,
    sleep: Callable[[float], None] = time.sleep,
    tracking_uri: str | None = None,
) -> ControllerState:
    """Reconcile ``env`` with ``origin/<branch>`` every ``interval_s`` (``rounds`` times, or forever)."""
    state = ControllerState(env=env, branch=branch)
    while rounds is None or state.rounds < rounds:
        if state.rounds:
            sleep(interval_s)
        round_(
            repo,
            env,
            branch,
            state,
            heal=heal,
            timeout_s=timeout_s,
            log=log,
            tracking_uri=tracking_uri,
        )
    return state


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


__all__ = ["ControllerState", "pull", "round_", "run", "state_path"]
