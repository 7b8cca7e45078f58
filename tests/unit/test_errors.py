"""Each broken fixture graph fails at import with a domain error: what, where, how to fix."""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import graphops
from graphops.graph import load_graph

WriteGraph = Callable[[Path, str, str], Path]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "graphs"
PACKAGE = "tests.fixtures.graphs"


@dataclass(frozen=True)
class Case:
    module: str
    error: type[graphops.GraphOpsError]
    node: str | None  # node the error names, None when it concerns the graph as a whole
    located: bool  # whether the error knows its file and line without discovery's help
    says: tuple[str, ...]  # fragments of the message: what is wrong and how to fix it
    raised_at: str  # start of the fixture line executing when it is raised

    @property
    def path(self) -> Path:
        return FIXTURES / f"{self.module}.py"


CASES = [
    Case(
        "cyclic",
        graphops.CycleError,
        "a",
        True,
        ('"a" reads b from "b"', '"b" reads a from "a"', "Break it"),
        "graph = Graph(",
    ),
    Case(
        "unknown_column",
        graphops.UnknownColumnError,
        "scaled",
        True,
        ('Parameter "pixel"', 'Did you mean "pixels"?', "Known columns: pixels, scaled."),
        "graph = Graph(",
    ),
    Case(
        "duplicate_column",
        graphops.DuplicateColumnError,
        "stats",
        True,
        ('Column "score" is written by both node "score" and node "stats"', "rename one"),
        "graph = Graph(",
    ),
    Case(
        "badly_typed",
        graphops.ColumnTypeError,
        "counts",
        True,
        (
            'Parameter "scaled" of node "counts" is annotated NDArray[np.int64]',
            'node "scaled" (',
            'returns "scaled" as NDArray[np.float32]',
            'Annotate "scaled: NDArray[np.float32]"',
            'or change what node "scaled" returns',
        ),
        "graph = Graph(",
    ),
    Case(
        "badly_typed_request",
        graphops.ColumnTypeError,
        "scaled",
        True,
        (
            'Parameter "pixels" of node "scaled" is annotated float',
            '"pixels" is a request field declared list[float] in Request',
            'Annotate "pixels: np.ndarray" (what the node receives)',
        ),
        "graph = Graph(",
    ),
    Case(
        "missing_hints",
        graphops.MissingTypeHintError,
        "scaled",
        True,
        ('Parameter "x" has no type hint', '"x: np.ndarray"'),
        "@node",
    ),
    Case(
        "missing_return_hint",
        graphops.MissingTypeHintError,
        "scaled",
        True,
        ("The return value has no type hint", '"-> np.ndarray"', "TypedDict"),
        "@node",
    ),
    Case(
        "not_a_column",
        graphops.MissingColumnError,
        None,
        False,
        ('response field "labels" is produced by no node', 'Did you mean "label"?'),
        "graph = Graph(",
    ),
    Case(
        "bad_semver",
        graphops.InvalidVersionError,
        None,
        False,
        ('Got "1.0" for version', 'version="1.0.0"'),
        "graph = Graph(",
    ),
    Case(
        "bad_model_uri",
        graphops.InvalidModelURIError,
        "logits",
        True,
        ('Got "models:digits" for the model URI', '"models:/digits@champion"'),
        '@model("models:digits")',
    ),
]
IDS = [c.module for c in CASES]

# Node-level errors know their node, file and line at declaration time. Graph-level errors are
# located by discovery from the traceback (the `graph = Graph(` line; see the last test).
LOCATED_CASES = [pytest.param(c, id=c.module) for c in CASES if c.located]


def import_fixture(case: Case) -> graphops.GraphOpsError:
    sys.modules.pop(f"{PACKAGE}.{case.module}", None)
    with pytest.raises(graphops.GraphOpsError) as info:
        importlib.import_module(f"{PACKAGE}.{case.module}")
    sys.modules.pop(f"{PACKAGE}.{case.module}", None)
    return info.value


def line_of(path: Path, start: str) -> int:
    """1-based number of the only line of ``path`` starting with ``start``."""
    found = [i for i, text in enumerate(path.read_text().splitlines(), 1) if text.startswith(start)]
    assert len(found) == 1, f"{start!r} should start exactly one line of {path}, found {found}"
    return found[0]


def decorator_line(path: Path, node: str) -> int:
    """The line of the decorator above ``def node(`` (what a decorated function's code reports)."""
    lines = path.read_text().splitlines()
    number = line_of(path, f"def {node}(")
    while lines[number - 2].startswith(("@", " ", ")")):
        number -= 1
    return number


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_import_raises_the_domain_error_while_declaring(case: Case) -> None:
    error = import_fixture(case)

    assert type(error) is case.error
    message = str(error)
    for fragment in case.says:
        assert fragment in message
    if case.located:
        assert error.node == case.node
    # Raised by the declaration itself (e.g. @node for a missing hint), not later.
    frames = [f for f in traceback.extract_tb(error.__traceback__) if Path(f.filename) == case.path]
    assert frames, "the traceback should pass through the fixture module"
    assert frames[-1].lineno == line_of(case.path, case.raised_at)


@pytest.mark.parametrize("case", LOCATED_CASES)
def test_error_names_file_and_line(case: Case) -> None:
    error = import_fixture(case)

    assert Path(error.file or "") == case.path
    assert isinstance(error.line, int)
    assert f"{case.path}:{error.line}" in str(error)
    assert error.node == case.node
    if case.node is not None:
        assert f"node '{case.node}'" in str(error)
        assert error.line == decorator_line(case.path, case.node)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_loaded_through_discovery_every_error_is_located(
    case: Case, tmp_path: Path, write_graph: WriteGraph
) -> None:
    init = write_graph(tmp_path, case.module, case.path.read_text()) / "__init__.py"

    with pytest.raises(case.error) as info:
        load_graph(tmp_path, case.module)

    error = info.value
    assert Path(error.file or "").resolve() == init.resolve()
    expected = decorator_line(init, case.node) if case.located and case.node else None
    expected = expected or line_of(init, case.raised_at)
    assert error.line == expected
    assert f"__init__.py:{expected}" in str(error)
