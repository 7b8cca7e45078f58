"""Every command and code block of README.md and docs/*.md is checked, so the docs cannot drift.

By kind (tests/_docs.py extracts the blocks and says how a block can opt out):

- ``bash``/``console``: each command is checked against what it names. ``graphops ...`` is
  parsed by the real CLI (Typer's click parser: an unknown command, option or value fails);
  ``nox -s X -- ...`` names sessions of the noxfile and its arguments are parsed by the command
  the session forwards them to; ``ray``/``serve`` by Ray's own click CLIs; ``python -m
  benchmarks.X`` by that module's argparse options; ``curl`` bodies sent to a graph's route are
  validated against the graph's request schema (tests/integration/test_docs_requests.py sends
  the README's for real). Any other program must be one of `PROGRAMS`.
- ``python``: compiled, then run in order in one namespace per page (`prelude` holds what the
  excerpts take for granted); blocks marked ``file`` form a scratch repository whose graphs are
  loaded (every graph check runs at import) and whose scripts named by the page's commands run.
- ``yaml``: environment and release files and excerpts of them are validated with
  graphops' own schemas (an excerpt may leave keys out, or write ``...`` for them; every key it
  shows must exist and every value must be valid), Ray Serve configs with Serve's schema,
  Kubernetes manifests parsed.
- ``json``: the model file is what `save_torch` writes; a request body is validated.
- ``mermaid``: names a diagram type. ``text``/``markdown``: program output, not run.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import types
from collections import Counter
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout, suppress
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from tests._docs import REPO, Block, Command, all_blocks, argparse_options, commands, nox_sessions

BLOCKS = all_blocks()
SHELL = [b for b in BLOCKS if b.kind in ("bash", "console") and not b.skipped]
COMMANDS = [c for b in SHELL for c in commands(b)]
OUTPUT_KINDS = {"text", "markdown"}
KINDS = {"bash", "console", "python", "yaml", "json", "mermaid", *OUTPUT_KINDS}
PROGRAMS = {  # programs whose lines are shown but not checked beyond their name
    "git",
    "export",
    "source",
    "cd",
    "cat",
    "head",
    "sed",
    "grep",
    "ss",
    "du",
    "kubectl",
}
NOX_FLAGS = {"--install-only", "--no-install", "-r", "-R", "--reuse-existing-virtualenvs", "-l"}
GRAPHS = sorted(p.parent.name for p in (REPO / "graphs").glob("*/__init__.py"))


def ids(items: list[Any]) -> list[str]:
    return [f"{i.where} {i}" if isinstance(i, Command) else i.where for i in items]


def test_the_extraction_finds_every_kind_of_block() -> None:
    kinds = Counter(b.kind for b in BLOCKS)
    assert set(kinds) <= KINDS, f"blocks of an unknown kind (name one of {sorted(KINDS)})"
    assert kinds["bash"] > 30 and kinds["python"] > 15 and kinds["yaml"] > 5
    assert len(COMMANDS) > 150


def test_few_blocks_opt_out_and_each_says_why() -> None:
    opted = [
        (b.where, v, a) for b in BLOCKS for v, a in b.directives if v in ("skip", "compile-only")
    ]
    assert all(len(reason) > 20 for _, _, reason in opted), opted
    assert len(opted) <= 5, opted


# -- shell commands ----------------------------------------------------------------------------


def click_parse(command: Any, args: list[str], prog: str) -> None:
    """Parse ``args`` as ``prog`` would, through nested groups, without running anything.

    A usage synopsis (``graphops plan [OPTIONS] {graph}``, docs/cli.md) is checked for its
    command path, the words before ``[OPTIONS]``.
    """
    ctx = None
    if "[OPTIONS]" in args:
        for word in args[: args.index("[OPTIONS]")]:
            ctx = command.make_context(prog, [], parent=ctx, resilient_parsing=True)
            command, prog = command.get_command(ctx, word), word
            assert command is not None, f"no command {word!r}"
        return
    while True:
        out = StringIO()
        with redirect_stdout(out), redirect_stderr(out):
            ctx = command.make_context(prog, list(args), parent=ctx)
        if not hasattr(command, "commands"):  # a command, not a group: parsed
            return
        # The subcommand's name: click >= 8.2 deprecates the public `protected_args`, and Typer's
        # own copy of click has only this.
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        if not rest:
            return
        prog, command, args = command.resolve_command(ctx, rest)


def graphops_cli() -> Any:
    import typer.main

    from graphops.cli import app

    return typer.main.get_command(app)


def check_graphops(args: list[str]) -> None:
    from typer.exceptions import Exit

    with suppress(Exit):  # --help: printed (and swallowed), parsed fine
        click_parse(graphops_cli(), args, "graphops")


def check_ray(program: str, args: list[str]) -> None:
    import click

    if program == "ray":
        from ray.scripts.scripts import cli
    else:
        from ray.serve.scripts import cli
    with suppress(click.exceptions.Exit):
        click_parse(cli, args, program)


def check_nox(args: list[str], where: str) -> None:
    sessions = nox_sessions()
    split = args.index("--") if "--" in args else len(args)
    own, posargs = args[:split], args[split + 1 :]
    names: list[str] = []
    taking = False
    for word in own:
        if word in ("-s", "--session", "--sessions"):
            taking = True
        elif word.startswith("-"):
            assert word in NOX_FLAGS, f"{where}: nox option {word} is not one we document"
            taking = False
        else:
            assert taking, f"{where}: nox takes sessions after -s, got {word}"
            names.append(word)
    for name in names:
        assert name in sessions, f"{where}: no nox session {name!r} (have {sorted(sessions)})"
    if not posargs:
        return
    assert len(names) == 1, f"{where}: arguments after -- go to every session named"
    session = sessions[names[0]]
    if session.program == "graphops":
        check_graphops([*session.prefix, *posargs])
    elif session.name == "bench":
        which, *rest = posargs
        assert which in ("offline", "online", "floor", "features", "formats"), (
            f"{where}: no benchmark {which}"
        )
        check_python(["-m", f"benchmarks.{which}", *rest], where, set())


def check_python(args: list[str], where: str, scripts: set[str]) -> None:
    if args[:1] == ["-m"]:
        module, rest = args[1], args[2:]
        if module.startswith("benchmarks."):
            known = argparse_options(module)
            for word in rest:
                if word.startswith("-"):
                    assert word in known, f"{where}: {module} has no option {word} ({known})"
        else:
            assert module in ("pip", "venv", "typer"), f"{where}: python -m {module} is not checked"
    elif args[:1] == ["-c"]:
        compile(args[1], where, "exec")
    else:
        script = args[0]
        assert (REPO / script).is_file() or script in scripts, f"{where}: no script {script}"


def curl_body(argv: tuple[str, ...]) -> tuple[str | None, str | None]:
    """The route (path of the URL) and the ``-d`` body of a curl command."""
    route = body = None
    for i, word in enumerate(argv[1:], start=1):
        if word in ("-d", "--data", "--data-raw", "--data-binary"):
            body = argv[i + 1]
        elif ":8000/" in word or word.startswith("http"):
            route = "/" + word.split("://")[-1].split("/", 1)[-1]
    return route, body


def request_adapter(graph: str) -> TypeAdapter[Any]:
    from graphops.graph import load_graph

    request: type[BaseModel] = load_graph(REPO, graph).graph.request
    return TypeAdapter(request | list[request])  # type: ignore[valid-type]


def check_curl(argv: tuple[str, ...], where: str) -> None:
    route, body = curl_body(argv)
    graph = (route or "/").strip("/").split("/")[0]
    if graph not in GRAPHS:
        return
    assert body is not None, f"{where}: a request to {graph} shows its body"
    assert not body.startswith("@"), f"{where}: show the body itself, not a file, so it is checked"
    try:
        request_adapter(graph).validate_json(body)
    except ValidationError as exc:
        if "[1, 2]" not in body:  # docs/online.md shows the 422 a 2-pixel request gets
            raise AssertionError(f"{where}: the body is no valid {graph} request: {exc}") from exc


def scripts_of(block: Block) -> set[str]:
    """Files the page's Python blocks declare (``file`` directives): its commands may run them."""
    return {
        b.directive("file") or "" for b in BLOCKS if b.page == block.page and b.directive("file")
    }


@pytest.mark.parametrize("command", COMMANDS, ids=ids(COMMANDS))
def test_every_command_is_what_its_program_accepts(command: Command) -> None:
    program, *args = command.argv
    where = command.where
    if program == "graphops":
        check_graphops(args)
    elif program == "nox":
        check_nox(args, where)
    elif program in ("ray", "serve"):
        check_ray(program, args)
    elif program in ("python", "python3", "python3.11"):
        check_python(args, where, scripts_of(command.block))
    elif program == "pip":
        assert args[0] == "install" and "-c" in args
        assert (REPO / args[args.index("-c") + 1]).is_file()
        extras = args[args.index("-e") + 1].split("[")[1].rstrip("]").split(",")
        declared = __import__("tomllib").loads((REPO / "pyproject.toml").read_text())
        assert set(extras) <= set(declared["project"]["optional-dependencies"]), where
    elif program == "curl":
        check_curl(command.argv, where)
    else:
        assert program in PROGRAMS, (
            f"{where}: `{program}` is no program the docs test knows: check it here or add it "
            "to PROGRAMS"
        )


def test_the_readme_shows_a_working_request_for_each_graph() -> None:
    readme = [c for c in COMMANDS if c.block.page.name == "README.md" and c.argv[0] == "curl"]
    routes = {curl_body(c.argv)[0] for c in readme}
    assert {f"/{g}" for g in GRAPHS} <= routes


def test_the_cli_reference_is_what_typer_generates(tmp_path: Path) -> None:
    [command] = [c for c in COMMANDS if c.argv[:3] == ("python", "-m", "typer")]
    argv = list(command.argv)
    argv[argv.index("--output") + 1] = str(tmp_path / "cli.md")
    subprocess.run([sys.executable, *argv[1:]], cwd=REPO, check=True, capture_output=True)
    assert (tmp_path / "cli.md").read_text() == (REPO / "docs" / "cli.md").read_text(), (
        f"docs/cli.md is stale: run `{command}`"
    )


# -- python ------------------------------------------------------------------------------------

PAGES_WITH_PYTHON = sorted({b.page for b in BLOCKS if b.kind == "python"})


def prelude() -> dict[str, Any]:
    """What the Python excerpts take for granted: the public API, numpy, typing, pydantic, and
    the shipped graphs' own names (digits' network, schemas and nodes, feed_ranking's tables)."""
    from typing import Annotated, TypedDict

    import numpy as np
    from pydantic import ConfigDict, Field

    import graphops
    from graphops.graph import load_graph
    from graphops.registry import Registry, ResolvedModel

    feed = load_graph(REPO, "feed_ranking")
    feed_module = sys.modules["graphs.feed_ranking"]
    digits = load_graph(REPO, "digits")
    digits_module = sys.modules["graphs.digits"]
    names = {n: getattr(graphops, n) for n in graphops.__all__}
    names |= {
        n: getattr(digits_module, n) for n in ("DigitsNet", "DigitsRequest", "DigitsResponse")
    }
    names |= {"prediction": digits_module.prediction, "MEMBERS": feed_module.MEMBERS}
    names |= {"np": np, "Annotated": Annotated, "TypedDict": TypedDict, "Path": Path}
    names |= {"BaseModel": BaseModel, "ConfigDict": ConfigDict, "Field": Field}
    names |= {"package": digits, "feed_ranking": feed}
    names |= {"Registry": Registry, "ResolvedModel": ResolvedModel}
    return names


@pytest.fixture
def scratch(tmp_path: Path, graphs_sandbox: None) -> Iterator[Path]:
    repo = tmp_path / "scratch"
    (repo / "graphs").mkdir(parents=True)
    (repo / "graphs" / "__init__.py").touch()
    yield repo


@pytest.mark.parametrize("page", PAGES_WITH_PYTHON, ids=[p.name for p in PAGES_WITH_PYTHON])
def test_python_blocks_compile_and_run(page: Path, scratch: Path, graphs_sandbox: None) -> None:
    from graphops.graph import load_graph

    mine = [b for b in BLOCKS if b.page == page and b.kind == "python" and not b.skipped]
    code = {b: compile(b.text, b.where, "exec") for b in mine}  # a syntax error fails here
    files = [b for b in mine if b.directive("file")]
    for block in files:
        path = scratch / str(block.directive("file"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block.text)
    for command in [c for b in SHELL if b.page == page for c in commands(b)]:
        if (
            command.argv[0].startswith("python")
            and command.argv[1:2]
            and (scratch / command.argv[1]).is_file()
        ):
            subprocess.run(
                [sys.executable, *command.argv[1:]], cwd=scratch, check=True, timeout=120
            )
    names = prelude()
    scratch_graphs = sorted({Path(str(b.directive("file"))).parts[1] for b in files})
    for graph in scratch_graphs:
        load_graph(scratch, graph)  # the tutorial's graph passes every import-time check
    for block in mine:
        if block.directive("compile-only") is not None or block in files:
            continue
        package = block.directive("package")
        bind = (package or "").removeprefix("graphs.") or next(iter(scratch_graphs), None)
        if bind:  # `graphs` is the repository's, or the scratch one's where that holds the graph
            load_graph(scratch if bind in scratch_graphs else REPO, bind)
        # A module of its own (in sys.modules, where typing resolves a class's string hints);
        # under graphs.*, so graphs_sandbox removes it.
        module = types.ModuleType(f"{package or 'graphs'}._docs_{block.line}")
        module.__dict__.update(names, __package__=package)
        sys.modules[module.__name__] = module
        scope = module.__dict__
        exec(code[block], scope)
        for name, value in scope.items():  # a test the page shows is run as well
            if name.startswith("test_") and callable(value):
                value()
        names |= {k: v for k, v in scope.items() if not k.startswith("__")}


# -- yaml, json, mermaid -----------------------------------------------------------------------

YAML = [b for b in BLOCKS if b.kind == "yaml" and not b.skipped]


def without_ellipses(data: Any) -> Any:
    """``...`` keys and items mark what an excerpt leaves out: drop them."""
    if isinstance(data, dict):
        return {k: without_ellipses(v) for k, v in data.items() if k != "..."}
    if isinstance(data, list):
        return [without_ellipses(v) for v in data if v != "..."]
    return data


def validate_excerpt(model: type[BaseModel], data: Any, where: str) -> None:
    """Every key shown exists and every value shown is valid; keys left out are fine."""
    try:
        model.model_validate(data)
    except ValidationError as exc:
        wrong = [e for e in exc.errors() if e["type"] != "missing"]
        assert not wrong, f"{where}: {model.__name__}: {wrong}"


@pytest.mark.parametrize("block", YAML, ids=ids(YAML))
def test_yaml_blocks_are_valid_for_what_reads_them(block: Block) -> None:
    from graphops.environments import EnvironmentConfig, Release

    documents = [d for d in yaml.safe_load_all(block.text) if d is not None]
    assert documents, block.where
    for data in map(without_ellipses, documents):
        if "apiVersion" in data:
            assert {"kind", "metadata"} <= set(data), block.where
        elif "applications" in data:
            from ray.serve.schema import ServeDeploySchema

            ServeDeploySchema.model_validate(data)
        elif set(data) == {"graphs"}:
            validate_excerpt(Release, data, block.where)
        elif set(data) == {"lock"}:  # one line of release.yaml
            validate_excerpt(Release, {"graphs": {"digits": data}}, block.where)
        else:
            assert set(data) <= set(EnvironmentConfig.model_fields) - {"name"}, block.where
            validate_excerpt(EnvironmentConfig, data, block.where)


def test_json_blocks() -> None:
    import torch

    from graphops.models.torch import CONFIG_FILE, save_torch

    shown = [b for b in BLOCKS if b.kind == "json"]
    assert shown
    for block in shown:
        data = json.loads(block.text)
        assert data["architecture"] == "DigitsNet", f"{block.where}: which model file is this?"
        with torch.device("cpu"):
            net = prelude()["DigitsNet"](**data["config"])
        folder = Path(__import__("tempfile").mkdtemp())
        save_torch(net, data["config"], folder)
        assert (folder / CONFIG_FILE).read_text() == block.text, block.where


def test_mermaid_blocks_name_a_diagram_type() -> None:
    for block in [b for b in BLOCKS if b.kind == "mermaid"]:
        first = block.text.split(maxsplit=1)[0]
        assert first in ("flowchart", "graph", "sequenceDiagram"), block.where


def test_no_block_hides_a_command_in_an_output_block() -> None:
    """A ``text`` block is output: commands to copy go in ``bash``/``console`` blocks."""
    hidden = [
        f"{block.where}: {line}"
        for block in BLOCKS
        if block.kind in OUTPUT_KINDS
        for line in block.text.splitlines()
        if line.startswith(("$ ", "graphops ", "nox -s"))
    ]
    assert not hidden, "commands in output blocks (make the block `console`):\n" + "\n".join(hidden)


OUTPUT_CURLS = [
    Command(tuple(shlex.split(line)), block, block.line + 1 + i)
    for block in BLOCKS
    if block.kind in OUTPUT_KINDS
    for i, line in enumerate(block.text.splitlines())
    if line.startswith("curl ")
]


@pytest.mark.parametrize("command", OUTPUT_CURLS, ids=ids(OUTPUT_CURLS))
def test_a_curl_line_that_a_program_prints_works_when_copied(command: Command) -> None:
    check_curl(command.argv, command.where)


@pytest.mark.parametrize(
    "line",
    [
        "graphops plan digits --bogus",  # unknown option
        "graphops plans digits",  # unknown command
        "graphops serve digits --port eighty",  # bad value
        "nox -s demoo",  # unknown session
        "nox -s demo -- --dwon",  # its arguments reach graphops demo
        "ray start --head --num-cpu=2",
        "python -m benchmarks.offline --rowz 10",
        "curl -s -X POST 127.0.0.1:8000/digits -d '{\"pixels\": [0, 0, 2, ...]}'",
        "grpahops list",  # no known program
    ],
)
def test_a_wrong_command_fails_the_check(line: str, tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(f"```bash\n{line}\n```\n")
    [command] = commands(Block(page, 1, "bash", line + "\n"))
    import click
    from typer._click.exceptions import UsageError

    with pytest.raises((AssertionError, UsageError, click.UsageError)):
        test_every_command_is_what_its_program_accepts(command)
