"""Domain exceptions: every error says what is wrong, where, and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import TypedDict


class GraphOpsError(Exception):
    """Base class of every error graphops raises on purpose.

    Attributes:
        what: One sentence saying what is wrong.
        fix: One sentence saying how to fix it (may be empty).
        graph: Name of the graph concerned, if any.
        node: Name of the node concerned, if any.
        file: Source file where the problem is, if known.
        line: Line in ``file``, if known.
    """

    def __init__(
        self,
        what: str,
        *,
        fix: str = "",
        graph: str | None = None,
        node: str | None = None,
        file: str | Path | None = None,
        line: int | None = None,
    ) -> None:
        self.what = what
        self.fix = fix
        self.graph = graph
        self.node = node
        self.file = str(file) if file is not None else None
        self.line = line
        super().__init__(self._render())

    @property
    def location(self) -> str:
        """``file:line`` where the problem is, or ``""`` when unknown."""
        if self.file is None:
            return ""
        return f"{self.file}:{self.line}" if self.line else self.file

    def locate(self, *, file: str | Path, line: int | None = None) -> GraphOpsError:
        """Fill in the source location when the raiser could not know it; returns ``self``."""
        if self.file is None:
            self.file, self.line = str(file), line
            self.args = (self._render(),)
        return self

    def _render(self) -> str:
        where = []
        if self.graph:
            where.append(f"graph '{self.graph}'")
        if self.node:
            where.append(f"node '{self.node}'")
        prefix = ", ".join(where)
        if self.location:
            prefix = f"{prefix} ({self.location})" if prefix else self.location
        what = self.what if self.what.endswith((".", "?", "!")) else f"{self.what}."
        text = f"{prefix}: {what}" if prefix else what
        return f"{text} {self.fix}".rstrip()

    def __str__(self) -> str:
        return self.args[0] if self.args else self._render()

    def __reduce__(self) -> tuple[object, ...]:
        # Keep every field when the error crosses a process boundary (Ray workers -> driver).
        fields = (self.what, self.fix, self.graph, self.node, self.file, self.line)
        return (_rebuild, (type(self), *fields))


def _rebuild(
    cls: type[GraphOpsError],
    what: str,
    fix: str,
    graph: str | None,
    node: str | None,
    file: str | None,
    line: int | None,
) -> GraphOpsError:
    return cls(what, fix=fix, graph=graph, node=node, file=file, line=line)


class Where(TypedDict, total=False):
    """The location keywords of a `GraphOpsError`, to build once and pass as ``**where``."""

    graph: str | None
    node: str | None
    file: str | Path | None
    line: int | None


class GraphDefinitionError(GraphOpsError):
    """A graph or node is declared wrongly (bad name, version, types, settings)."""


class MissingTypeHintError(GraphDefinitionError):
    """A node parameter or return value has no type hint."""


class InvalidVersionError(GraphDefinitionError):
    """A graph version is not semantic versioning (``MAJOR.MINOR.PATCH``)."""


class InvalidModelURIError(GraphDefinitionError):
    """A model node references something that is not ``models:/name@alias`` or ``models:/name/N``."""


class ColumnTypeError(GraphDefinitionError):
    """A node parameter's type hint does not accept the type its column's producer declares."""


class GraphStructureError(GraphOpsError):
    """The columns of a graph do not connect into a valid DAG."""


class CycleError(GraphStructureError):
    """Nodes depend on each other in a cycle."""


class UnknownColumnError(GraphStructureError):
    """A node parameter is neither a request field nor a column another node produces."""


class MissingColumnError(GraphStructureError):
    """A response field or validation column is not produced by any node."""


class DuplicateColumnError(GraphStructureError):
    """Two nodes (or a node and the request) write the same column."""


class GraphLoadError(GraphOpsError):
    """A graph package could not be imported or does not expose ``graph``."""


class TamperedCodeError(GraphLoadError):
    """A worker's graph code is not the locked code; none of it was imported."""


class PlanError(GraphOpsError):
    """An explicit stage override cannot be honoured."""


class RunError(GraphOpsError):
    """A node failed or returned something other than its declared columns while running."""


class ConfigError(GraphOpsError):
    """An environment file (environment.yaml, release.yaml, a rendered file) is invalid or stale."""


class PromotionError(GraphOpsError):
    """A promotion gate refused the promotion, or the promotion could not be committed."""


class ExperimentError(GraphOpsError):
    """An experiment cannot be started, concluded or reported as asked (nothing was written)."""


class ApplyError(GraphOpsError):
    """An environment's cluster could not be reconciled with git (the previous state is kept)."""


class ClusterAccessError(ApplyError):
    """An environment's cluster could not be read or changed: unreachable, no token, refused token."""


class ClusterUnreachableError(ClusterAccessError):
    """Nothing answers at the environment's Ray dashboard address."""


class MissingTokenError(ClusterAccessError):
    """The cluster asks for a token and no token is set in this process's environment."""


class TokenRefusedError(ClusterAccessError):
    """The cluster refused the token that was sent (401/403): a wrong or stale token."""


class LockVerificationError(ApplyError):
    """A lock in release.yaml is not what a trusted, passed validation record validated."""


class UnsignedCommitError(ApplyError):
    """An environment that requires signed commits has a change git cannot verify."""


class TamperingError(ApplyError):
    """A running application reports other code than its lock in git."""


class ServeError(GraphOpsError):
    """A graph application could not be deployed or answered on Ray Serve."""


class PortInUseError(ServeError):
    """A port on 127.0.0.1 that a Serve proxy or a cluster needs is held by another process."""


class InputDataError(GraphOpsError):
    """An input file is missing, unreadable, or its rows do not match the request schema."""


class RegistryError(GraphOpsError):
    """A model, version or alias is missing from the registry, or its artifacts do not match."""


class FeatureStoreError(GraphOpsError):
    """A feature store cannot be opened or read (missing source, unreachable Redis, bad layout)."""


class ScaffoldError(GraphOpsError):
    """A new graph package cannot be generated (bad name, existing graph, unknown template)."""


class ChangeDetectionError(GraphOpsError):
    """The changed set cannot be computed: not a git repository, unknown base ref, no merge base."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return ``' Did you mean "x"?'`` for the closest candidate, or ``""`` when none is close."""
    match = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f' Did you mean "{match[0]}"?' if match else ""
