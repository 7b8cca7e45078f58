"""Which graphs a branch changed, found with git against the merge base (what CI validates)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import git

from graphops._git import current_commit, head_commit, is_dirty, open_repo
from graphops.errors import ChangeDetectionError, did_you_mean
from graphops.graph import GRAPHS_DIR, graph_names

DEFAULT_BASES = ("origin/main", "main", "master")
PLATFORM_DIR = "platform"
PLATFORM_FILES = frozenset({"constraints.txt", "pyproject.toml", f"{GRAPHS_DIR}/__init__.py"})

_SHALLOW_FIX = (
    "Fetch the full history: `fetch-depth: 0` in actions/checkout, or `git fetch --unshallow`."
)


@dataclass(frozen=True)
class ChangeSet:
    """What changed between the merge base of ``base`` and HEAD, and the graphs it selects.

    Attributes:
        base: The ref asked for, e.g. ``"origin/main"``.
        merge_base: Hex sha of the merge base of ``base`` and HEAD.
        head: Hex sha of HEAD.
        files: Changed paths (POSIX, repository-relative), sorted and deduplicated.
        graphs: Names of the graphs to validate, sorted.
        everything: A platform-wide file changed, so every graph must be validated.
        reasons: Graph name -> the changed files that selected it (platform files included
            when ``everything``).
    """

    base: str
    merge_base: str
    head: str
    files: tuple[str, ...]
    graphs: tuple[str, ...]
    everything: bool
    reasons: dict[str, tuple[str, ...]]


def changed_graphs(
    repo: Path, *, base: str | None = None, include_worktree: bool = True
) -> ChangeSet:
    """The files and graphs changed on HEAD since it branched from ``base``.

    Committed changes are diffed from the merge base of ``base`` and HEAD, so commits that land
    on ``base`` after the branch point select nothing. A file under ``graphs/<name>/`` selects
    ``<name>`` when ``graphs/<name>/__init__.py`` exists in the working tree; a platform file
    (``platform/``, ``constraints.txt``, ``pyproject.toml``, ``graphs/__init__.py``) selects
    every graph; anything else selects nothing.

    Args:
        repo: Top level of the git working tree (the folder holding ``graphs/``).
        base: Ref to compare with; default ``origin/main``, else ``main``, else ``master``.
        include_worktree: Also count staged, unstaged and untracked (not ignored) files.

    Returns:
        The change set.

    Raises:
        ChangeDetectionError: ``repo`` is not a git repository, HEAD has no commits, ``base``
            does not exist, or ``base`` and HEAD share no history.
    """
    with open_repo(repo) as r:
        head = head_commit(r)
        if head is None:
            raise ChangeDetectionError(
                f"HEAD has no commits in {repo}.", fix="Commit first, then compare with a base."
            )
        base = base or _default_base(r)
        ancestors = r.merge_base(_resolve(r, base), head)
        if not ancestors:
            raise _no_merge_base(r, base)
        merge_base = ancestors[0]
        files = set(_paths(merge_base.diff(head)))
        if include_worktree:
            files.update(_paths(r.index.diff("HEAD")))
            files.update(_paths(r.index.diff(None)))
            files.update(r.untracked_files)
    return _select(repo, base, merge_base.hexsha, head.hexsha, files)


def _is_shallow(r: git.Repo) -> bool:
    return (Path(r.common_dir) / "shallow").is_file()


def _branches(r: git.Repo) -> list[str]:
    """Local and remote-tracking branch names (``main``, ``origin/main``)."""
    return sorted(
        ref.name
        for ref in r.refs
        if isinstance(ref, git.Head | git.RemoteReference) and not ref.name.endswith("/HEAD")
    )


def _default_base(r: git.Repo) -> str:
    for name in DEFAULT_BASES:
        path = f"refs/remotes/{name}" if "/" in name else f"refs/heads/{name}"
        if git.Reference(r, path).is_valid():
            return name
    branches = _branches(r)
    raise ChangeDetectionError(
        f"No default base branch: none of {', '.join(DEFAULT_BASES)} exists.",
        fix=_SHALLOW_FIX
        if _is_shallow(r)
        else f"Pass --base with the branch to compare with ({_listing(branches)}).",
    )


def _resolve(r: git.Repo, base: str) -> git.Commit:
    try:
        return r.commit(base)
    except (git.BadName, git.BadObject, ValueError, LookupError):
        pass
    branches = _branches(r)
    remote, _, branch = base.partition("/")
    fetch = (
        f" If it is a remote branch, `git fetch {remote} {branch}` first."
        if branch and remote in {"origin", *(rem.name for rem in r.remotes)}
        else ""
    )
    if _is_shallow(r):
        raise ChangeDetectionError(
            f'Base ref "{base}" is not in this shallow clone.', fix=_SHALLOW_FIX + fetch
        )
    raise ChangeDetectionError(
        f'Unknown base ref "{base}".{did_you_mean(base, branches)}',
        fix=f"Branches: {_listing(branches)}.{fetch}",
    )


def _no_merge_base(r: git.Repo, base: str) -> ChangeDetectionError:
    if _is_shallow(r):
        return ChangeDetectionError(
            f'No merge base of "{base}" and HEAD in this shallow clone: its history stops first.',
            fix=_SHALLOW_FIX,
        )
    return ChangeDetectionError(
        f'"{base}" and HEAD have no merge base (unrelated histories).',
        fix="Pass --base with the branch HEAD was branched from.",
    )


def _listing(names: Sequence[str], limit: int = 5) -> str:
    if not names:
        return "none"
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _paths(diffs: Iterable[git.Diff]) -> Iterator[str]:
    """Both sides of every diff, so a rename counts its old and its new path."""
    for d in diffs:
        yield from {p for p in (d.a_path, d.b_path) if p}


def _select(repo: Path, base: str, merge_base: str, head: str, changed: set[str]) -> ChangeSet:
    existing = set(graph_names(repo))
    platform: list[str] = []
    own: dict[str, list[str]] = {}
    for path in sorted(changed):
        parts = PurePosixPath(path).parts
        if path in PLATFORM_FILES or parts[0] == PLATFORM_DIR:
            platform.append(path)
        elif len(parts) > 2 and parts[0] == GRAPHS_DIR and parts[1] in existing:
            own.setdefault(parts[1], []).append(path)
    everything = bool(platform)
    graphs = sorted(existing) if everything else sorted(own)
    reasons = {g: tuple(sorted({*own.get(g, ()), *platform})) for g in graphs}
    return ChangeSet(
        base=base,
        merge_base=merge_base,
        head=head,
        files=tuple(sorted(changed)),
        graphs=tuple(graphs),
        everything=everything,
        reasons=reasons,
    )


def validated_commit(repo: Path) -> str | None:
    """HEAD, marked ``+dirty`` when uncommitted changes mean HEAD is not exactly what ran."""
    head = current_commit(repo)
    return f"{head}+dirty" if head and is_dirty(repo) else head
