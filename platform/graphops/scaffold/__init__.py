"""Scaffolding: `graphops new <name>` generates a graph package that validates as generated."""

from graphops.scaffold._scaffold import (
    DEFAULT_TEMPLATE,
    TEMPLATES,
    TESTS_DIR,
    check_name,
    scaffold,
    suggest_name,
)

__all__ = ["DEFAULT_TEMPLATE", "TEMPLATES", "TESTS_DIR", "check_name", "scaffold", "suggest_name"]
