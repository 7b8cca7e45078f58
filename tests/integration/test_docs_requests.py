"""The README's curl lines, run as written against the graphs served on Ray Serve.

Only the port changes (Serve's proxy here is on a free port, the README names dev's 8000); the
static checks of every block are in tests/unit/test_docs.py.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from graphops.graph import load_graph
from graphops.registry import Registry, ResolvedModel
from graphops.runtime.online import deploy, undeploy
from tests._docs import REPO, Command, blocks, commands

README = [
    c
    for b in blocks(REPO / "README.md")
    if b.kind == "bash" and not b.skipped
    for c in commands(b)
    if c.argv[0] == "curl"
]
GRAPHS = sorted({c.argv[c.argv.index("-X") + 2].rsplit("/", 1)[-1] for c in README})


@pytest.fixture(scope="module")
def served(
    repo_copy: Path, registry: Registry, serve_port: int, champion: ResolvedModel
) -> Iterator[int]:
    """Every graph the README asks, each on its stable route (all of them in 1.8 of 2 CPUs)."""
    names: list[str] = []
    try:
        for graph in GRAPHS:
            package = load_graph(repo_copy, graph)
            if graph != "digits":  # digits' model is the session's `champion`
                trainer = package.trainer()
                assert trainer is not None
                trainer(registry)
            deploy(package, registry, port=serve_port, cpu_budget=round(1.8 / len(GRAPHS), 2))
            names.append(graph)
        yield serve_port
    finally:
        for name in names:
            undeploy(name)


@pytest.mark.parametrize("command", README, ids=[c.where for c in README])
def test_the_readme_curl_answers_200_with_the_graphs_response(
    command: Command, served: int, repo_copy: Path
) -> None:
    argv = [w.replace("127.0.0.1:8000", f"127.0.0.1:{served}") for w in command.argv]
    done = subprocess.run(
        [*argv, "--fail-with-body", "--max-time", "60"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"{command.where}: {done.stdout} {done.stderr}"
    graph = argv[argv.index("-X") + 2].rsplit("/", 1)[-1]
    response = load_graph(repo_copy, graph).graph.response
    TypeAdapter(response).validate_python(json.loads(done.stdout))
