"""`graphops new`: every template generates a package that loads, plans and (minimal) runs; errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from graphops import ScaffoldError, discover, load_graph, plan
from graphops.cli import app
from graphops.graph import evaluate
from graphops.runtime import LocalRunner, read_rows, to_columns
from graphops.scaffold import TEMPLATES, scaffold, suggest_name

REPO = Path(__file__).resolve().parents[2]
RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")

PACKAGE_FILES = {
    "classifier": {"__init__.py", "data.py", "network.py", "train.py", "validation.parquet"},
    "ranking": {
        "__init__.py",
        "data.py",
        "metrics.py",
        "network.py",
        "train.py",
        "validation.parquet",
        "features/items.parquet",
    },
    "tabular": {
        "__init__.py",
        "data.py",
        "train.py",
        "validation.parquet",
        "features/accounts.parquet",
    },
    "minimal": {"__init__.py", "data.py", "validation.parquet"},
    "text": {"__init__.py", "data.py", "train.py", "validation.parquet"},
}


@pytest.fixture
def repo(tmp_path: Path, graphs_sandbox: None) -> Path:
    """A copy of the repository's graphs/ (and nothing else) in a temp dir."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "graphs", root / "graphs", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_templates_match_the_expected_files() -> None:
    assert set(TEMPLATES) == set(PACKAGE_FILES)


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_template_generates_a_graph_that_loads_and_plans(repo: Path, template: str) -> None:
    written = scaffold(repo, "my_graph", template)
    package = repo / "graphs" / "my_graph"
    files = {p.relative_to(package).as_posix() for p in written if p.is_relative_to(package)}
    assert files == PACKAGE_FILES[template]
    test = repo / "tests" / "graphs" / "test_my_graph.py"
    assert test in written and (repo / "tests" / "graphs" / "__init__.py") in written
    assert (repo / "tests" / "__init__.py") in written
    assert not list(package.rglob("__pycache__"))  # the data generator left no bytecode

    catalog = discover(repo)
    assert not catalog.failures
    loaded = catalog.get("my_graph")
    assert loaded.graph.version == "0.1.0" and loaded.graph.validation is not None
    assert loaded.validation_dataset is not None and loaded.validation_dataset.is_file()
    assert plan(loaded.graph).stages
    assert (loaded.trainer() is None) == (template == "minimal")
    assert {"digits", "feed_ranking"} <= {p.name for p in catalog.packages}


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_generated_data_is_deterministic(tmp_path: Path, repo: Path, template: str) -> None:
    other = tmp_path / "other"
    (other / "graphs").mkdir(parents=True)
    scaffold(repo, "twin", template)
    scaffold(other, "twin", template)
    assert load_graph(repo, "twin").content_hash == load_graph(other, "twin").content_hash


def test_minimal_graph_passes_its_gate_locally(repo: Path) -> None:
    scaffold(repo, "rules", "minimal")
    package = load_graph(repo, "rules")
    assert package.validation_dataset is not None and package.graph.validation is not None
    columns, labels = to_columns(read_rows(package.validation_dataset), package.graph.request)
    out = LocalRunner(package.graph, {}).run(columns)
    [accuracy] = evaluate(package.graph.validation, {**out, **labels})
    assert accuracy.passed and accuracy.value > float(np.mean(labels["is_fraud"] == 0))


def test_generated_code_is_ruff_clean(repo: Path) -> None:
    # No skip: `nox -s tests` runs in .nox/dev, which has the lint extra (ruff) installed.
    assert RUFF is not None, (
        "ruff is not installed: run `nox -s tests` (its environment has it) or "
        "`pip install -c constraints.txt ruff`"
    )
    # The longest names allowed (no underscores: the longest class names) and the shortest.
    names = [(t, (t + "x" * 30)[:30]) for t in TEMPLATES] + [(t, f"g{t[:2]}") for t in TEMPLATES]
    paths = [p for t, name in names for p in scaffold(repo, name, t)]
    sources = [str(p) for p in paths if p.suffix == ".py"]
    config = ("--config", str(REPO / "pyproject.toml"))
    for command in (["check", "--no-cache"], ["format", "--check", "--no-cache"]):
        done = subprocess.run(
            [RUFF, *command, *config, *sources], capture_output=True, text=True, cwd=repo
        )
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("My-Graph", "my_graph"),
        ("MyGraph", "my_graph"),
        ("2fast", "graph_2fast"),
        ("class", "class_graph"),
        ("match", "match_graph"),
        ("double__underscore", "double_underscore"),
        ("trailing_", "trailing"),
        ("x" * 31, "x" * 30),
    ],
)
def test_bad_names_are_refused_with_a_suggestion(repo: Path, name: str, suggestion: str) -> None:
    assert suggest_name(name) == suggestion
    before = sorted(p.name for p in (repo / "graphs").iterdir())
    with pytest.raises(ScaffoldError, match=f'Got "{name}" for the graph name') as err:
        scaffold(repo, name, "minimal")
    assert err.value.fix == f"Try `graphops new {suggestion}`."
    assert sorted(p.name for p in (repo / "graphs").iterdir()) == before  # nothing written
    assert {"__init__.py", "digits", "feed_ranking"} <= set(before)


def test_existing_graph_is_never_overwritten(repo: Path) -> None:
    before = (repo / "graphs" / "digits" / "__init__.py").read_bytes()
    with pytest.raises(ScaffoldError, match='Graph "digits" already exists') as err:
        scaffold(repo, "digits", "classifier")
    assert "never overwrites" in err.value.fix
    assert (repo / "graphs" / "digits" / "__init__.py").read_bytes() == before
    assert not (repo / "tests").exists()


def test_existing_test_file_is_never_overwritten(repo: Path) -> None:
    test = repo / "tests" / "graphs" / "test_mine.py"
    test.parent.mkdir(parents=True)
    test.write_text("# mine\n")
    with pytest.raises(ScaffoldError, match='Graph "mine" already exists'):
        scaffold(repo, "mine", "minimal")
    assert test.read_text() == "# mine\n" and not (repo / "graphs" / "mine").exists()


def test_unknown_template_lists_the_shipped_ones(repo: Path) -> None:
    with pytest.raises(ScaffoldError, match='Got "fancy" for template') as err:
        scaffold(repo, "fine", "fancy")
    assert err.value.fix == "Use one of: classifier, ranking, tabular, minimal, text."


def test_a_folder_without_graphs_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScaffoldError, match="No graphs/ folder in") as err:
        scaffold(tmp_path, "fine", "minimal")
    assert "--repo" in err.value.fix and not list(tmp_path.iterdir())


def test_cli_lists_files_and_next_steps(repo: Path) -> None:
    result = CliRunner().invoke(app, ["--repo", str(repo), "new", "fresh", "-t", "minimal"])
    assert result.exit_code == 0, result.output
    assert "graphs/fresh/validation.parquet" in result.output
    assert "tests/graphs/test_fresh.py" in result.output
    assert "graphops validate fresh --train-missing" in result.output
    assert "nox -s validate -- fresh" in result.output


def test_cli_errors_are_panels_with_a_fix(repo: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["--repo", str(repo), "new", "Bad-Name"])
    assert result.exit_code == 1
    assert "ScaffoldError" in result.output and "graphops new bad_name" in result.output
    result = runner.invoke(app, ["--repo", str(repo), "new", "ok", "--template", "fancy"])
    assert result.exit_code == 2 and "classifier" in result.output
