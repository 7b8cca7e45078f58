"""Where a rollout's record goes: an MLflow run first, then a commit (with an abort's revert).

Git is the record that decides: ``rollouts.yaml`` is committed on the checked-out branch (pushed
when asked), and after an abort the same commit pins the stable version's release entry again
(`graphops.controller.pin`), so git names what runs and the next apply does not retry the
aborted version. MLflow holds a copy to browse and compare (`RolloutRecord.mlflow_form`). The run
is made first so the committed record names it; MLflow being down never stops a rollout nor
leaves git half-written: it is said (with `AGAIN`) and `record_again` (``graphops rollouts --env
E --record``) copies what git holds into MLflow later, into the same run when there is one.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import git

from graphops.controller.commit import commit_change
from graphops.controller.pin import pin
from graphops.controller.render import app_name
from graphops.controller.rollout.record import (
    RolloutRecord,
    load_records,
    rollouts_path,
    write_record,
)
from graphops.environments import Release, ReleaseEntry, read_yaml, release_path
from graphops.errors import RegistryError
from graphops.registry import Registry

AGAIN = "graphops rollouts --env {env} --record"
"""The command that records what git holds in MLflow again (said when MLflow failed)."""


def record_rollout(
    repo: Path,
    record: RolloutRecord,
    *,
    revert_to: ReleaseEntry | None,
    push: str | None,
    log: Callable[[str], None],
    tracking_uri: str | None = None,
) -> str:
    """Record ``record`` in MLflow, then commit it (see `record_in_git`); the commit.

    The MLflow run is made first, so the committed record names it (``mlflow_run``); a failure
    of MLflow is logged with how to record it again, and the git record is committed anyway.
    """
    registry = Registry.for_repo(repo, tracking_uri)  # one client for the run and its end
    warn = (
        f"warning: MLflow did not record the rollout of {record.graph} {record.candidate} "
        f"({{}}); git did. Record it again: `{AGAIN.format(env=record.env)}`."
    )
    try:
        record.mlflow_run = registry.record_rollout(record.mlflow_form())
    except RegistryError as exc:
        log(warn.format(exc))
    commit = record_in_git(repo, record, revert_to=revert_to, push=push)
    if record.mlflow_run:
        try:
            registry.finish_rollout(
                record.mlflow_run, {"graphops.commit": commit}, failed=record.outcome == "aborted"
            )
            log(
                f"recorded in MLflow: run {record.mlflow_run} in graphops-rollouts/{record.env}, "
                f"and in git: {commit[:12]}"
            )
        except RegistryError as exc:
            log(warn.format(exc))
    return commit


def record_in_git(
    repo: Path, record: RolloutRecord, *, revert_to: ReleaseEntry | None, push: str | None
) -> str:
    """Commit the record (and, after an abort, ``revert_to`` pinned again); the commit.

    Committed on the checked-out branch (and pushed to ``push`` of origin when given), so git
    says what the cluster runs: an aborted version is not tried again by the next apply.
    """

    def write() -> None:
        if revert_to is not None:
            pin(repo, record.env, record.graph, revert_to)
        write_record(repo, record)

    with git.Repo(repo) as r:
        branch = r.active_branch.name
    message = (
        f"rollout: {record.graph} {record.candidate} {record.outcome} in {record.env}"
        + (f", back to {record.stable}" if revert_to is not None else "")
        + f"\n\n{record.reason}\nby {record.by}\n"
    )
    done = commit_change(
        repo, graph=record.graph, branch=branch, message=message, write=write, push=push
    )
    return done.commit


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


def recording_commit(repo: Path, record: RolloutRecord) -> str:
    """The commit that added ``record`` to ``rollouts.yaml`` (found by its start time)."""
    path = rollouts_path(repo, record.env).relative_to(repo).as_posix()
    with git.Repo(repo) as r:
        found = r.git.log("--format=%H", "--reverse", f"-S{record.started}", "--", path)
    return found.split()[0] if found else ""


def record_again(
    repo: Path, env: str, graph: str | None = None, tracking_uri: str | None = None
) -> list[RolloutRecord]:
    """Copy every rollout record of ``env`` (one graph's, if given) from git into MLflow.

    Idempotent: a rollout already in MLflow keeps its run (tags and the YAML are updated).
    Returns the records, each with its run (``mlflow_run``).

    Raises:
        RegistryError: MLflow could not be written.
    """
    registry = Registry.for_repo(repo, tracking_uri)
    done = []
    for name, records in sorted(load_records(repo, env).items()):
        if graph is not None and name != graph:
            continue
        for record in reversed(records):  # oldest first: MLflow's newest run is the newest one
            record.mlflow_run = registry.record_rollout(record.mlflow_form())
            commit = recording_commit(repo, record)
            registry.finish_rollout(
                record.mlflow_run, {"graphops.commit": commit}, failed=record.outcome == "aborted"
            )
            done.append(record)
    return done


__all__ = [
    "AGAIN",
    "last_good_entry",
    "record_again",
    "record_in_git",
    "record_rollout",
    "recording_commit",
]
