"""Offline validation of graphs, starting from which graphs a change touches."""

from graphops.validation.changes import ChangeSet, changed_graphs, current_commit, is_dirty

__all__ = [
    "ChangeSet",
    "changed_graphs",
    "current_commit",
    "is_dirty",
]
