"""Every task, locally and in CI: `nox -s <session>`. CI calls these sessions and nothing else.

One environment, `.nox/dev`, serves every session but `lock`: graphops with all its
extras, every version pinned by constraints.txt, created once and installed with uv when nox came
with it (`pip install "nox[uv]"`), else with venv + pip. Those sessions are `python=False` for nox
(nox gives each session a virtualenv of its own) and run the programs of `.nox/dev/bin`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nox

nox.options.default_venv_backend = "uv|venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests", "reliability"]

PYTHON = "3.11"
CONSTRAINTS = ("-c", "constraints.txt")
DEV = Path(".nox", "dev")
DEV_BIN = DEV / "bin"
DEV_EXTRAS = "test,lint,examples,bench"
# What the last install of .nox/dev was made from: when these files change, install again.
DEV_STAMP = DEV / "graphops-install.sha256"
# Seconds `graphops serve` gets to stop cleanly on Ctrl-C before nox sends SIGTERM, then SIGKILL.
SERVE_STOP_S = 30.0


def _uv() -> str | None:
    """The uv that came with nox (`nox[uv]`) or one on PATH; None when there is none."""
    try:
        from uv import find_uv_bin
    except ImportError:
        return shutil.which("uv")
    try:
        return find_uv_bin()
    except FileNotFoundError:
        return shutil.which("uv")


def _find_links() -> list[str]:
    """pip's find-links (PIP_FIND_LINKS or pip's config) as uv arguments: uv reads neither.

    This is how uv sees the same local wheels as pip (here the CPU torch 2.13.0 wheel in
    /opt/wheels); without them it would resolve torch from PyPI with its CUDA packages.
    """
    if os.environ.get("UV_FIND_LINKS"):
        return []
    links = os.environ.get("PIP_FIND_LINKS", "").split()
    if not links:
        listed = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        for line in listed.splitlines():
            key, _, value = line.partition("=")
            if key.endswith(".find-links"):
                links += [v for v in value.strip("'\"").split() if v not in links]
    return [arg for link in links for arg in ("--find-links", link)]


def _dev(session: nox.Session) -> None:
    """Create `.nox/dev` once, install into it when pyproject.toml or constraints.txt changed.

    Also puts `.nox/dev/bin` first on the session's PATH, so what the commands start
    (`ray start`, `mlflow`, `graphops`) comes from the same environment.
    """
    uv = _uv()
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "constraints.txt"):
        digest.update(Path(name).read_bytes())
    stamp = f"{digest.hexdigest()} {DEV_EXTRAS} bytecode\n"
    python = DEV_BIN / "python"
    if not python.exists():
        if uv:
            session.run_install(uv, "venv", "--clear", "--seed", "--python", PYTHON, str(DEV))
        else:
            interpreter = shutil.which(f"python{PYTHON}")
            if interpreter is None:
                session.error(f"Python {PYTHON} is not on PATH: install it, then run nox again.")
            session.run_install(interpreter, "-m", "venv", "--clear", str(DEV), external=True)
        DEV_STAMP.unlink(missing_ok=True)
    if not DEV_STAMP.exists() or DEV_STAMP.read_text() != stamp:
        spec = f".[{DEV_EXTRAS}]"
        if uv:
            where = ("--python", str(python), *_find_links())
            # uv writes no bytecode unless asked (pip does): without it every run of a command,
            # a test or a Ray worker compiles what it imports again where PYTHONDONTWRITEBYTECODE
            # is set (`graphops --help`: 0.3 s with, 0.9 s without, here).
            compile_ = "--compile-bytecode"
            done = session.run_install(
                uv, "pip", "install", compile_, *where, *CONSTRAINTS, "-e", spec
            )
        else:
            done = session.run_install(
                str(python), "-m", "pip", "install", *CONSTRAINTS, "-e", spec, external=True
            )
        if done is not None:  # None: skipped by --no-install
            DEV_STAMP.write_text(stamp)
    session.env["VIRTUAL_ENV"] = str(DEV.resolve())
    session.env["PATH"] = os.pathsep.join([str(DEV_BIN.resolve()), os.environ.get("PATH", "")])


def _run(session: nox.Session, program: str, *args: str, **kwargs: Any) -> None:
    """Run a program of `.nox/dev/bin` (after `_dev`); ``kwargs`` go to `Session.run`."""
    session.run(str(DEV_BIN / program), *args, **kwargs)


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """Unit and integration tests (real MLflow, git, Ray; no mocks outside tests/unit).

    The 25 slowest tests are listed at the end: what to look at when the suite grows too long.
    """
    _dev(session)
    _run(session, "pytest", "--durations=25", *session.posargs)


@nox.session(python=False)
def reliability(session: nox.Session) -> None:
    """Faults under load (tests/reliability): writes benchmarks/results/reliability.json.

    The scenarios run on the HAProxy path (`--ingress haproxy`, what the environments declare):
    haproxy is installed first where it is missing (Debian's package; CI runs as root).
    `nox -s reliability -- --ingress proxy` runs them on Serve's proxy.
    """
    _dev(session)
    if shutil.which("haproxy") is None:
        session.run("apt-get", "update", external=True)
        session.run("apt-get", "install", "-y", "haproxy", external=True)
    _run(session, "pytest", "tests/reliability", "-m", "reliability", *session.posargs)


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """ruff (lint + format), import-linter (layers), mypy, actionlint (.github/workflows)."""
    _dev(session)  # mypy checks the code against its real dependencies (Ray, MLflow, pydantic)
    _run(session, "ruff", "check", ".")
    _run(session, "ruff", "format", "--check", ".")
    _run(session, "lint-imports")
    _run(session, "mypy")
    _run(session, "actionlint")


@nox.session(python=False)
def demo(session: nox.Session) -> None:
    """The main job on embedded defaults: train + register, plan, run on validation data."""
    _dev(session)
    _run(session, "graphops", "demo", *session.posargs)


@nox.session(python=False)
def validate(session: nox.Session) -> None:
    """Validate graphs offline on Ray Data: `nox -s validate -- --changed --base origin/main`."""
    _dev(session)
    _run(session, "graphops", "validate", "--train-missing", *session.posargs)


@nox.session(python=False)
def train(session: nox.Session) -> None:
    """Train and register a graph's model: `nox -s train -- digits`."""
    _dev(session)
    _run(session, "graphops", "train", *(session.posargs or ["digits"]))


@nox.session(python=False)
def plan(session: nox.Session) -> None:
    """Print a graph's plan: `nox -s plan -- digits`."""
    _dev(session)
    _run(session, "graphops", "plan", *(session.posargs or ["digits"]))


@nox.session(python=False)
def bench(session: nox.Session) -> None:
    """Benchmarks (results in benchmarks/results/): `nox -s bench`, `nox -s bench -- floor`.

    `floor` is graphops online against the one-process floor and a one-deployment Serve app on
    every ingress path (proxy, direct, HAProxy), for digits and feed_ranking; it writes the
    ``floor`` key of online.json, `online` the other comparisons of that file. `scale` times the
    commands on generated monorepos of 10, 50 and 200 graphs, and an apply among 30 running
    graphs (scale.json). `footprint` is what an idle graph holds on a cluster under each option
    of `serving:` (footprint.json).
    """
    which, *extra = session.posargs or ["all"]
    names = ("offline", "online", "floor", "features", "formats", "scale", "footprint")
    if which not in ("all", *names):
        session.error(
            f"Got {which!r}: start with {', '.join(names)}, e.g. `-- online --repeats 1`."
        )
    _dev(session)
    for name in names if which == "all" else (which,):
        _run(session, "python", "-m", f"benchmarks.{name}", *extra)


@nox.session(python=False)
def serve(session: nox.Session) -> None:
    """Serve a graph on a local Ray Serve until Ctrl-C: `nox -s serve -- digits`."""
    _dev(session)
    # On Ctrl-C nox sends SIGTERM after interrupt_timeout and SIGKILL after terminate_timeout
    # (0.3 s and 0.2 s by default): graphops needs longer to delete the application and stop
    # its local Ray cluster, or Ray's agents are left behind with parent 1.
    _run(
        session,
        "graphops",
        "serve",
        *(session.posargs or ["digits"]),
        interrupt_timeout=SERVE_STOP_S,
        terminate_timeout=SERVE_STOP_S,
    )


@nox.session(python=False)
def render(session: nox.Session) -> None:
    """Render environments/*/serve.yaml + rayservice.yaml: `nox -s render -- --check`."""
    _dev(session)
    _run(session, "graphops", "render", *session.posargs)


@nox.session(python=False)
def promote(session: nox.Session) -> None:
    """Promote a graph: `nox -s promote -- digits --to staging` (CI: `-- --auto --to dev`)."""
    _dev(session)
    _run(session, "graphops", "promote", *session.posargs)


@nox.session(python=False, name="pin-image")
def pin_image(session: nox.Session) -> None:
    """Pin the cluster image's digest and re-render: `nox -s pin-image -- sha256:<hex>` (CI)."""
    _dev(session)
    _run(session, "graphops", "pin-image", *session.posargs)


@nox.session(python=False)
def apply(session: nox.Session) -> None:
    """Reconcile an environment's cluster with git: `nox -s apply -- --env dev`."""
    _dev(session)
    _run(session, "graphops", "apply", *session.posargs)


# lock resolves from scratch with pip (its `pip freeze` writes constraints.txt): a fresh env.
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
