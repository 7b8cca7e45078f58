"""Every task, locally and in CI: `nox -s <session>`. CI calls these sessions and nothing else."""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]

PYTHON = "3.11"
CONSTRAINTS = ("-c", "constraints.txt")


def _install(session: nox.Session, *extras: str, deps: bool = True) -> None:
    """Install graphops (editable) with extras, every version pinned by constraints.txt."""
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install(*CONSTRAINTS, *(() if deps else ("--no-deps",)), "-e", spec)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit and integration tests (real MLflow, git, Ray; no mocks outside tests/unit)."""
    _install(session, "test")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff (lint + format), import-linter (layers), mypy, actionlint (.github/workflows)."""
    _install(session, "lint")  # with graphops' dependencies: mypy checks the code against them
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("lint-imports")
    session.run("mypy")
    session.run("actionlint")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The main job on embedded defaults: train + register, plan, run on validation data."""
    _install(session, "examples")
    session.run("graphops", "demo", *session.posargs)


@nox.session(python=PYTHON)
def validate(session: nox.Session) -> None:
    """Validate graphs offline on Ray Data: `nox -s validate -- --changed --base origin/main`."""
    _install(session, "examples")
    session.run("graphops", "validate", "--train-missing", *session.posargs)


@nox.session(python=PYTHON)
def train(session: nox.Session) -> None:
    """Train and register a graph's model: `nox -s train -- digits`."""
    _install(session, "examples")
    session.run("graphops", "train", *(session.posargs or ["digits"]))


@nox.session(python=PYTHON)
def plan(session: nox.Session) -> None:
    """Print a graph's plan: `nox -s plan -- digits`."""
    _install(session, "examples")
    session.run("graphops", "plan", *(session.posargs or ["digits"]))


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks (results in benchmarks/results/): `nox -s bench`, `nox -s bench -- features`."""
    _install(session, "bench")
    which, *extra = session.posargs or ["all"]
    names = ("offline", "online", "features")
    if which not in ("all", *names):
        session.error(
            f"Got {which!r}: start with {', '.join(names)}, e.g. `-- online --repeats 1`."
        )
    for name in names if which == "all" else (which,):
        session.run("python", "-m", f"benchmarks.{name}", *extra)


@nox.session(python=PYTHON)
def serve(session: nox.Session) -> None:
    """Serve a graph on a local Ray Serve until Ctrl-C: `nox -s serve -- digits`."""
    _install(session, "examples")
    session.run("graphops", "serve", *(session.posargs or ["digits"]))


@nox.session(python=PYTHON)
def render(session: nox.Session) -> None:
    """Render environments/*/serve.yaml + rayservice.yaml: `nox -s render -- --check`."""
    _install(session)
    session.run("graphops", "render", *session.posargs)


@nox.session(python=PYTHON)
def promote(session: nox.Session) -> None:
    """Promote a graph: `nox -s promote -- digits --to staging` (CI: `-- --auto --to dev`)."""
    _install(session, "examples")
    session.run("graphops", "promote", *session.posargs)


@nox.session(python=PYTHON)
def apply(session: nox.Session) -> None:
    """Reconcile an environment's cluster with git: `nox -s apply -- --env dev`."""
    _install(session, "examples")
    session.run("graphops", "apply", *session.posargs)


@nox.session(python=PYTHON, venv_backend="venv", reuse_venv=False)
def lock(session: nox.Session) -> None:
    """Re-resolve every dependency from scratch and rewrite constraints.txt."""
    session.install("torch==2.13.0", "-e", ".[test,lint,examples,bench]", "nox")
    frozen = session.run("python", "-m", "pip", "freeze", "--exclude-editable", silent=True) or ""
    lines = [
        "torch==2.13.0" if line.startswith("torch==") else line
        for line in frozen.splitlines()
        if line and not line.startswith("graphops")
    ]
    path = Path("constraints.txt")
    header = [h for h in path.read_text().splitlines() if h.startswith("#")]
    path.write_text("\n".join([*header, *lines]) + "\n")
