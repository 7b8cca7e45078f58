"""Rollout records in git and MLflow: what apply keeps of every canary, and where.

Git is the record that decides (``environments/<env>/rollouts.yaml``, committed with an abort's
revert); MLflow holds a copy to browse and compare: one run per rollout in the experiment
``graphops-rollouts/<env>``, tagged with the graph, environment, stable and candidate versions,
outcome, who and the commit, one metric series per step (share, seconds, requests, errors, error
rate, p50/p99 of both arms) and the record's YAML as ``rollout.yaml``.

`record_rollout` writes both: the MLflow run first (so its id is in the committed record), then
the commit, then the commit's id on the run. MLflow being down never stops a rollout nor leaves
git half-written: it is said (with `AGAIN`) and `record_again` (``graphops rollouts --env E
--record``) copies what git holds into MLflow later, into the same run when there is one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import git

from graphops.controller.rollout import (
    Rollout,
    load_rollouts,
    record_in_git,
    rollouts_path,
)
from graphops.environments import ReleaseEntry, dump_yaml
from graphops.errors import RegistryError
from graphops.registry import Registry

AGAIN = "graphops rollouts --env {env} --record"
"""The command that records what git holds in MLflow again (said when MLflow failed)."""
ARMS = ("stable", "candidate")
FIGURES = ("requests", "errors", "error_rate", "p50_ms", "p99_ms")


def step_metrics(step: dict[str, Any]) -> dict[str, float]:
    """One step of a record as MLflow metrics: share, seconds, advanced, and each arm's figures."""
    out = {
        "share": float(step["share"]),
        "seconds": float(step.get("seconds") or 0.0),
        "advanced": 1.0 if step.get("decision") == "advance" else 0.0,
    }
    for arm in ARMS:
        figures = step.get(arm) or {}
        for name in FIGURES:
            if figures.get(name) is not None:
                out[f"{arm}.{name}"] = float(figures[name])
        seconds = out["seconds"]
        if seconds > 0 and figures.get("requests") is not None:
            out[f"{arm}.rps"] = round(float(figures["requests"]) / seconds, 2)
    return out


def _key(env: str, graph: str, record: dict[str, Any]) -> str:
    return f"{env}/{graph}/{record['version']}/{record['started']}"


def to_mlflow(registry: Registry, env: str, graph: str, record: dict[str, Any]) -> str:
    """Log one record (a ``rollouts.yaml`` entry) as its run; the run id.

    Raises:
        RegistryError: MLflow could not be written.
    """
    tags = {
        "graphops.graph": graph,
        "graphops.env": env,
        "graphops.stable": str(record["from"]),
        "graphops.candidate": str(record["version"]),
        "graphops.outcome": str(record["outcome"]),
        "graphops.reason": str(record["reason"])[:4000],
        "graphops.by": str(record["by"]),
        "graphops.started": str(record["started"]),
        "graphops.ended": str(record["ended"]),
        "graphops.steps": " -> ".join(
            f"{s['share']:g}% {s['decision']}" for s in record.get("steps") or []
        ),
    }
    policy = {f"policy.{k}": v for k, v in (record.get("policy") or {}).items()}
    shown = {k: v for k, v in record.items() if k != "mlflow_run"}  # this run's id: not yet
    return registry.record_rollout(
        env=env,
        key=_key(env, graph, record),
        run_name=f"{graph} {record['from']} -> {record['version']}",
        tags=tags,
        params=policy,
        steps=[step_metrics(s) for s in record.get("steps") or []],
        texts={"rollout.yaml": dump_yaml(shown, f"# {graph} in {env}: rollouts.yaml's entry\n")},
    )


def finish(registry: Registry, run_id: str, commit: str, outcome: str) -> None:
    """Put the recording commit on the run and end it (FAILED for an aborted rollout).

    Raises:
        RegistryError: MLflow could not be written.
    """
    registry.finish_rollout(run_id, {"graphops.commit": commit}, failed=outcome == "aborted")


def record_rollout(
    repo: Path,
    rollout: Rollout,
    *,
    revert_to: ReleaseEntry | None,
    push: str | None,
    log: Callable[[str], None],
    tracking_uri: str | None = None,
) -> str:
    """Record ``rollout`` in MLflow and commit it in git (see `record_in_git`); the commit.

    The MLflow run is made first, so the committed record names it (``mlflow_run``); a failure
    of MLflow is logged with how to record it again, and the git record is committed anyway.
    """
    env, graph = rollout.env, rollout.graph
    registry = Registry.for_repo(repo, tracking_uri)  # one MLflow client for the run and its end
    warn = (
        f"warning: MLflow did not record the rollout of {graph} {rollout.candidate} ({{}}); "
        f"git did. Record it again: `{AGAIN.format(env=env)}`."
    )
    try:
        rollout.mlflow_run = to_mlflow(registry, env, graph, rollout.record())
    except RegistryError as exc:
        log(warn.format(exc))
    commit = record_in_git(repo, rollout, revert_to=revert_to, push=push)
    if rollout.mlflow_run:
        try:
            finish(registry, rollout.mlflow_run, commit, rollout.outcome)
            log(
                f"recorded in MLflow: run {rollout.mlflow_run} in graphops-rollouts/{env}, "
                f"and in git: {commit[:12]}"
            )
        except RegistryError as exc:
            log(warn.format(exc))
    return commit


def recording_commit(repo: Path, env: str, record: dict[str, Any]) -> str:
    """The commit that added ``record`` to ``rollouts.yaml`` (found by its start time)."""
    path = rollouts_path(repo, env).relative_to(repo).as_posix()
    with git.Repo(repo) as r:
        found = r.git.log("--format=%H", "--reverse", f"-S{record['started']}", "--", path)
    return found.split()[0] if found else ""


def record_again(
    repo: Path, env: str, graph: str | None = None, tracking_uri: str | None = None
) -> list[tuple[str, str, str]]:
    """Copy every rollout record of ``env`` (one graph's, if given) from git into MLflow.

    Idempotent: a rollout already in MLflow keeps its run (tags and the YAML are updated).
    Returns (graph, version, run id) per record.

    Raises:
        RegistryError: MLflow could not be written.
    """
    registry = Registry.for_repo(repo, tracking_uri)
    done = []
    for name, records in sorted(load_rollouts(repo, env).items()):
        if graph is not None and name != graph:
            continue
        for record in reversed(records):  # oldest first: MLflow's newest run is the newest one
            run_id = to_mlflow(registry, env, name, record)
            commit = recording_commit(repo, env, record)
            finish(registry, run_id, commit, str(record["outcome"]))
            done.append((name, str(record["version"]), run_id))
    return done


__all__ = [
    "AGAIN",
    "finish",
    "record_again",
    "record_rollout",
    "recording_commit",
    "step_metrics",
    "to_mlflow",
]
