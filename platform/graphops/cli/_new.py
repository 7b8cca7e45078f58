"""`graphops new`: scaffold a graph package from a template, ready to validate."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer
from rich.panel import Panel
from rich.table import Table

from graphops.scaffold import DEFAULT_TEMPLATE, TEMPLATES, scaffold

from ._common import console

# Typer needs an Enum for choices; this one is built from the templates that ship (functional
# API, which mypy cannot follow).
Template = Enum("Template", {name: name for name in TEMPLATES}, type=str)  # type: ignore[misc]
"""The shipped templates, as a Typer choice."""


def new(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="The new graph's name, lowercase snake_case (e.g. my_graph).")
    ],
    template: Annotated[
        Template,
        typer.Option(
            "--template",
            "-t",
            help="classifier (torch model, accuracy gate), ranking (feature lookup, scorer, "
            "NDCG gate), tabular (feature lookup, XGBoost via MLflow's flavor, AUC gate), "
            "minimal (plain nodes, no model) or text (tokenizer + tiny BERT trained here, "
            "accuracy gate).",
        ),
    ] = Template[DEFAULT_TEMPLATE],
) -> None:
    """Scaffold graphs/<name>/ from a template: it validates as generated (never overwrites)."""
    repo = ctx.obj.root()
    written = scaffold(repo, name, template.value)
    table = Table(
        title=f"Created graph [bold]{name}[/] from the {template.value} template",
        title_justify="left",
    )
    table.add_column("file")
    table.add_column("what it is")
    for path in written:
        rel = path.relative_to(repo)
        table.add_row(rel.as_posix(), _purpose(rel.name, path.parent.name == name))
    console.print(table)
    steps = [
        f"1. Read the docstring of graphs/{name}/__init__.py: it says what to change, in order.",
        f"2. graphops validate {name} --train-missing   (or: nox -s validate -- {name})",
        "   trains what is not registered yet, runs it on Ray Data, checks its gate and parity.",
        f"3. pytest tests/graphs/test_{name}.py   and   graphops plan {name}",
        f"4. Commit graphs/{name}/ and tests/graphs/test_{name}.py, open a pull request:",
        "   CI lints, tests and validates the graphs the PR changed.",
    ]
    console.print(
        Panel("\n".join(steps), title="Next steps", title_align="left", expand=False), markup=False
    )


_PURPOSES = {
    "__init__.py": "the graph: request/response schemas, nodes, validation gate",
    "network.py": "the torch architecture (the registry stores only weights)",
    "train.py": "train(registry): trains and registers the model",
    "data.py": "seeded data generator; python graphs/<name>/data.py rewrites the data files",
    "metrics.py": "the ranking metric (NDCG@k) of the gate",
    "validation.parquet": "validation rows + labels (covered by the content hash)",
    "items.parquet": "the item feature table the lookup node serves",
}


def _purpose(filename: str, in_package: bool) -> str:
    """One line on what a generated file is for."""
    if filename == "__init__.py" and not in_package:
        return "makes the folder a package (created because it was missing)"
    if filename.startswith("test_"):
        return "pytest tests of the nodes and a local run (collected by CI)"
    return _PURPOSES.get(filename, "")
