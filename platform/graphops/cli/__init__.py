"""The `graphops` command line (Typer + Rich)."""

from graphops.cli._app import app, main

__all__ = ["app", "main"]
