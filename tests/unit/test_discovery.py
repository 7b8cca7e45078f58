"""Discovery: every package under graphs/ is imported; one broken graph never hides the others."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from graphops import GraphLoadError, ModelNode
from graphops.graph import content_hash, discover, find_repo, load_graph

WriteGraph = Callable[[Path, str, str], Path]


def graph_source(name: str, *, column: str = "total") -> str:
    return f'''"""Graph {name}."""

import numpy as np
from pydantic import BaseModel

from graphops import Graph, node


class Request(BaseModel):
    x: list[float]


class Response(BaseModel):
    {column}: float


@node
def {column}(x: np.ndarray) -> np.ndarray:
    return x.sum(axis=1)


graph = Graph(name="{name}", version="1.0.0", request=Request, response=Response, nodes=[{column}])
'''


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "graphs"


def _fixture(name: str) -> str:
    return (FIXTURES / f"{name}.py").read_text()


BROKEN = {
    # name: (source, error line, fragment of the message)
    "divides": (
        '"""Fails at import."""\n\nratio = 1 / 0\n',
        3,
        "ZeroDivisionError: division by zero",
    ),
    "syntax": ('"""Does not parse."""\n\ndef broken(:\n    pass\n', 3, "Syntax error"),
    "renamed": (
        graph_source("other_name"),
        None,
        'named "other_name" but lives in folder "renamed"',
    ),
    "empty": ('"""No graph here."""\n', None, "does not expose a Graph named `graph`"),
    # Fixture graphs that leave through the back door: each is its own load failure.
    "exits_zero": (_fixture("exits_zero"), 5, "called sys.exit(0)"),
    "exits_three": (_fixture("exits_three"), 5, "called sys.exit(3)"),
    "raises_base_exception": (
        _fixture("raises_base_exception"),
        8,
        "Escape: left through the back door",
    ),
}


@pytest.fixture
def repo(tmp_path: Path, write_graph: WriteGraph) -> Path:
    write_graph(tmp_path, "good", graph_source("good"))
    for name, (source, _, _) in BROKEN.items():
        write_graph(tmp_path, name, source)
    (tmp_path / "graphs" / "not_a_package").mkdir()  # no __init__.py: ignored
    return tmp_path


def test_discover_loads_the_valid_graph_despite_broken_neighbours(repo: Path) -> None:
    catalog = discover(repo)

    assert [p.name for p in catalog.packages] == ["good"]
    good = catalog.packages[0]
    assert good.path == repo / "graphs" / "good"
    assert good.graph.response_fields == ("total",)
    # Importing wrote __pycache__ into the package; the hash ignores it.
    assert good.content_hash == content_hash(repo / "graphs" / "good")
    assert sorted(f.name for f in catalog.failures) == sorted(BROKEN)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_discover_reports_each_failure_with_file_and_line(repo: Path, name: str) -> None:
    _, line, says = BROKEN[name]

    failure = next(f for f in discover(repo).failures if f.name == name)

    init = repo / "graphs" / name / "__init__.py"
    assert failure.path == repo / "graphs" / name
    assert isinstance(failure.error, GraphLoadError)
    assert Path(failure.error.file or "") == init
    if line is not None:  # a wrong graph name or missing `graph` has no line to point at yet
        assert failure.error.line == line
    assert says in str(failure.error)
    assert str(init) in str(failure.error)


def test_catalog_get_suggests_the_closest_name(repo: Path) -> None:
    catalog = discover(repo)

    assert catalog.get("good").name == "good"
    with pytest.raises(GraphLoadError, match=r'No graph named "god".*Did you mean "good"'):
        catalog.get("god")
    with pytest.raises(GraphLoadError, match="ZeroDivisionError"):
        catalog.get("divides")


def test_load_graph_imports_one_package(repo: Path) -> None:
    package = load_graph(repo, "good")

    assert package.graph.name == "good"
    assert package.content_hash.startswith("sha256:")
    with pytest.raises(GraphLoadError, match='Did you mean "good"'):
        load_graph(repo, "goood")


def test_each_repo_gets_its_own_graphs_package(tmp_path: Path, write_graph: WriteGraph) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    write_graph(first, "same", graph_source("same", column="alpha"))
    write_graph(second, "same", graph_source("same", column="beta"))

    assert load_graph(first, "same").graph.response_fields == ("alpha",)
    assert load_graph(second, "same").graph.response_fields == ("beta",)
    assert load_graph(first, "same").graph.response_fields == ("alpha",)


def test_model_nodes_survive_discovery(tmp_path: Path, write_graph: WriteGraph) -> None:
    source = Path(__file__).parents[1] / "fixtures" / "graphs" / "valid.py"
    write_graph(tmp_path, "valid", source.read_text())

    package = discover(tmp_path).get("valid")

    assert [type(n) for n in package.graph.model_nodes] == [ModelNode]
    assert package.graph.model_nodes[0].file == str(tmp_path / "graphs" / "valid" / "__init__.py")


def test_find_repo_walks_up_to_the_folder_holding_graphs(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GRAPHOPS_REPO", raising=False)
    nested = repo / "graphs" / "good" / "deeper"
    nested.mkdir()

    assert find_repo(nested) == repo.resolve()
    monkeypatch.setenv("GRAPHOPS_REPO", str(repo / "graphs" / ".."))
    assert find_repo(Path("/")) == repo.resolve()


@pytest.mark.usefixtures("graphs_sandbox")
def test_repo_without_graphs_init_is_not_shadowed(tmp_path: Path) -> None:
    other = tmp_path / "other" / "graphs"
    other.mkdir(parents=True)
    (other / "__init__.py").touch()
    sys.path.append(str(other.parent))
    package = tmp_path / "repo" / "graphs" / "solo"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(graph_source("solo"))

    assert load_graph(tmp_path / "repo", "solo").name == "solo"


def test_edited_package_is_imported_afresh(tmp_path: Path, write_graph: WriteGraph) -> None:
    package = write_graph(tmp_path, "live", graph_source("live"))
    first = load_graph(tmp_path, "live")
    assert load_graph(tmp_path, "live").graph is first.graph  # unchanged files: same objects
    init = package / "__init__.py"
    init.write_text(init.read_text().replace('version="1.0.0"', 'version="1.1.0"'))
    second = load_graph(tmp_path, "live")
    assert second.graph.version == "1.1.0"
    assert second.content_hash != first.content_hash


def test_exiting_graph_names_the_call_and_the_fix(repo: Path) -> None:
    error = next(f for f in discover(repo).failures if f.name == "exits_zero").error

    assert "Importing graphs.exits_zero called sys.exit(0)" in str(error)
    assert "Remove the sys.exit()" in str(error)


def test_keyboard_interrupt_is_not_swallowed(tmp_path: Path, write_graph: WriteGraph) -> None:
    write_graph(tmp_path, "good", graph_source("good"))
    write_graph(tmp_path, "interrupts", _fixture("interrupts"))

    with pytest.raises(KeyboardInterrupt):
        discover(tmp_path)


def test_exiting_train_module_is_a_load_error(tmp_path: Path, write_graph: WriteGraph) -> None:
    package = write_graph(tmp_path, "trained", graph_source("trained"))
    (package / "train.py").write_text(_fixture("exits_zero"))

    with pytest.raises(GraphLoadError, match=r"graphs\.trained\.train called sys\.exit\(0\)"):
        load_graph(tmp_path, "trained").trainer()


def test_validation_of_an_exiting_graph_fails_and_names_it(
    tmp_path: Path, write_graph: WriteGraph
) -> None:
    from types import SimpleNamespace

    from graphops.validation import validate_graphs

    write_graph(tmp_path, "exits_zero", _fixture("exits_zero"))
    registry: Any = SimpleNamespace(tracking_uri="file:///nowhere")  # never reached: load fails

    report = validate_graphs(tmp_path, ["exits_zero"], registry, record=False, parity=False)

    assert report.exit_code != 0
    [result] = report.graphs
    assert (result.graph, result.status) == ("exits_zero", "error")
    assert "Importing graphs.exits_zero called sys.exit(0)" in result.problems[0]
