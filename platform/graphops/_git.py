"""Low-level git helpers shared by validation and the controller (gitpython, closed after use).

Opening a checkout with a clear error, HEAD's commit, whether paths are uncommitted, and the
files of a folder as of a commit. Nothing here knows about graphs or environments: change
detection (merge bases, changed graphs) stays in `graphops.validation.changes`, and committing
environments in `graphops.controller.commit`. Imports only gitpython and `graphops.errors`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import git

from graphops.errors import ChangeDetectionError


@contextmanager
def open_repo(repo: Path) -> Iterator[git.Repo]:
    """The repository at ``repo``, closed afterwards (gitpython keeps git processes alive).

    Raises:
        ChangeDetectionError: ``repo`` is not a git repository, or is a bare one.
    """
    try:
        r = git.Repo(repo)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise ChangeDetectionError(
            f"{repo} is not a git repository.",
            fix="Run inside the repository clone (the folder holding .git and graphs/).",
        ) from None
    with r:
        if r.bare:
            raise ChangeDetectionError(
                f"{repo} is a bare git repository: it has no working tree.",
                fix="Run inside the repository clone (the folder holding .git and graphs/).",
            )
        yield r


def head_commit(r: git.Repo) -> git.Commit | None:
    """HEAD's commit; ``None`` on an unborn branch (HEAD names a branch with no commits yet)."""
    try:
        return r.head.commit
    except ValueError:
        return None


def current_commit(repo: Path) -> str | None:
    """Hex sha of HEAD; ``None`` when ``repo`` is not a git repository or has no commits."""
    try:
        with open_repo(repo) as r:
            head = head_commit(r)
    except ChangeDetectionError:
        return None
    return head.hexsha if head is not None else None


def in_history(repo: Path, commit: str, rev: str = "HEAD") -> bool:
    """Whether ``commit`` is ``rev`` or one of its ancestors (False when unknown here).

    A ``+dirty`` suffix (what validation records for a working tree with uncommitted changes)
    is checked as its commit.
    """
    try:
        with open_repo(repo) as r:
            sha = commit.removesuffix("+dirty")
            return bool(r.is_ancestor(r.commit(sha), r.commit(rev)))
    except (ChangeDetectionError, git.GitCommandError, git.BadName, git.BadObject, ValueError):
        return False


def is_dirty(repo: Path, paths: Sequence[str] = ()) -> bool:
    """Whether ``repo`` has staged, unstaged or untracked (not ignored) changes.

    Args:
        repo: Top level of the git working tree.
        paths: Repository-relative paths to limit the check to; all of the tree when empty.

    Returns:
        ``True`` when something is uncommitted; also when ``repo`` is not a git repository
        (nothing in it is committed).
    """
    try:
        with open_repo(repo) as r:
            if not paths:
                return r.is_dirty(untracked_files=True)
            return any(r.is_dirty(untracked_files=True, path=p) for p in paths)
    except ChangeDetectionError:
        return True


def files_at(repo: Path, commit: str, path: str) -> dict[str, bytes] | None:
    """Repository-relative path -> content of every file at or under ``path`` as of ``commit``.

    Args:
        repo: Top level of the git working tree.
        commit: A commit (hex sha or any name git resolves).
        path: A repository-relative POSIX path: a file or a folder.

    Returns:
        The files (one entry for a file, every file below it for a folder), or ``None`` when
        ``path`` does not exist at ``commit``.

    Raises:
        ChangeDetectionError: ``repo`` is not a git repository.
    """
    with open_repo(repo) as r:
        try:
            item = r.commit(commit).tree / path
        except KeyError:
            return None
        if isinstance(item, git.Blob):
            return {str(item.path): item.data_stream.read()}
        blobs = [b for b in item.traverse() if isinstance(b, git.Blob)]
        return {str(b.path): b.data_stream.read() for b in blobs}
