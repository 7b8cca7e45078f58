"""What every CLI command shares: settings, consoles (`graphops._views`), errors as panels."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

import typer

from graphops._views import console as console  # re-exported: every command prints to it
from graphops._views import error_panel, errors
from graphops.errors import GraphOpsError

if TYPE_CHECKING:
    from graphops.graph import GraphPackage
    from graphops.registry import Registry

F = TypeVar("F", bound=Callable[..., Any])
EnvOption = Annotated[
    str, typer.Option("--env", "-e", help="Environment (a folder under environments/).")
]
"""The ``--env`` option of the commands that act on one environment."""


@dataclass(frozen=True)
class Settings:
    """Options shared by every command."""

    repo: Path | None
    tracking_uri: str | None

    def root(self) -> Path:
        """The repository root (``--repo``, ``$GRAPHOPS_REPO`` or the nearest parent with graphs/)."""
        from graphops.graph import find_repo

        return self.repo.resolve() if self.repo else find_repo()

    def registry(self) -> Registry:
        """The MLflow registry of this repository."""
        from graphops.environments import pickle_allowed
        from graphops.registry import Registry  # MLflow is slow to import; only when needed

        root = self.root()
        return Registry.for_repo(root, self.tracking_uri, pickle_allowed=pickle_allowed(root))

    def package(self, name: str) -> GraphPackage:
        """Load one graph package by name."""
        from graphops.graph import load_graph

        return load_graph(self.root(), name)


def friendly(fn: F) -> F:
    """Print a `GraphOpsError` as a what/where/fix panel and exit 1 instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GraphOpsError as exc:
            errors.print(error_panel(exc))
            raise typer.Exit(1) from None

    return cast(F, wrapper)  # functools.wraps keeps fn's signature (Typer reads it)


GraphArg = Annotated[str, typer.Argument(help="Graph name (a package under graphs/).")]
