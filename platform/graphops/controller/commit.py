"""Committing a change to environments/ in git: on its own branch, pushed with retries.

Promotions and experiment changes both end here. `commit_change` runs the caller's ``write``
(which edits release.yaml and re-renders) on a detached HEAD, commits environments/ on the
change's branch and, when asked, pushes it; when someone else pushed first it re-runs ``write``
on their commit and retries. The checkout is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import git

from graphops._git import is_dirty
from graphops.environments import ENVIRONMENTS_DIR
from graphops.errors import PromotionError

PUSH_ATTEMPTS = 5


def branch_name(env: str, graph: str, version: str) -> str:
    """The branch a promotion is committed on."""
    return f"promote/{env}/{graph}-{version}"


@dataclass(frozen=True)
class Committed:
    """Where a change to an environment went."""

    commit: str
    files: list[str]
    pushed: str | None


def commit_change(
    repo: Path,
    *,
    graph: str,
    branch: str,
    message: str,
    write: Callable[[], None],
    push: str | None,
) -> Committed:
    """Commit what ``write`` does to environments/ on ``branch`` (from HEAD or origin's ``push``).

    Work happens on a detached HEAD, so the branch can be re-pointed on a retry: when the push
    is refused because someone else changed ``push`` meanwhile, ``write`` runs again on their
    commit (it re-reads release.yaml and re-renders), and the push is retried. The checkout goes
    back to where it was, keeping any uncommitted work outside environments/.

    Args:
        repo: Repository root (a git checkout).
        graph: The graph the change is about (named in errors).
        branch: The branch to create or re-point at the commit.
        message: The commit message.
        write: Makes the change to environments/ (runs once per attempt).
        push: Push the commit to this branch of ``origin``; None commits locally only.

    Raises:
        PromotionError: environments/ has uncommitted changes, the checkout failed, or the push
            failed for another reason than a race (or kept racing).
    """
    with git.Repo(repo) as r:
        original = r.active_branch.name if not r.head.is_detached else r.head.commit.hexsha
        if is_dirty(repo, [ENVIRONMENTS_DIR]):
            raise PromotionError(
                "environments/ has uncommitted changes.",
                fix="Commit or discard them; graphops commits environments/ itself.",
                graph=graph,
            )
        try:
            for attempt in range(1, PUSH_ATTEMPTS + 1):
                if push:
                    r.remotes.origin.fetch()
                    start = r.remotes.origin.refs[push].commit
                else:
                    start = r.head.commit
                try:
                    r.git.checkout(start.hexsha)
                except git.GitCommandError as exc:
                    raise PromotionError(
                        f"Cannot check out {start.hexsha[:12]}: {exc.stderr.strip()}",
                        fix="Commit or stash your uncommitted changes, then try again.",
                        graph=graph,
                    ) from exc
                write()
                r.git.add(ENVIRONMENTS_DIR)
                commit = _commit(r, message)
                r.create_head(branch, commit, force=True)
                files = sorted(
                    r.git.diff("--name-only", f"{start.hexsha}..{commit.hexsha}").split()
                )
                if not push:
                    return Committed(commit.hexsha, files, None)
                try:
                    r.git.push("origin", f"{commit.hexsha}:refs/heads/{push}")
                except git.GitCommandError as exc:
                    if attempt == PUSH_ATTEMPTS or (
                        "rejected" not in str(exc) and "fetch first" not in str(exc)
                    ):
                        raise PromotionError(
                            f"Pushing to origin/{push} failed: {exc.stderr.strip()}",
                            fix="Pull, then try again.",
                            graph=graph,
                        ) from exc
                    continue  # someone else pushed meanwhile: redo the change on theirs, retry
                return Committed(commit.hexsha, files, push)
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            r.git.checkout(original)


def _commit(r: git.Repo, message: str) -> git.Commit:
    """Commit the index; with git's own ``commit`` where the checkout signs (``commit.gpgsign``).

    Environments with ``policy.require_signed_commits`` take only signed changes, so a release
    owner (or the controller's checkout) that signs its commits signs graphops' commits too.
    """
    with r.config_reader() as config:
        signs = str(config.get_value("commit", "gpgsign", "false")).lower() in ("true", "1")
    if not signs:
        return r.index.commit(message)
    r.git.commit("--no-verify", "--allow-empty", "-m", message)
    return r.head.commit
