"""Finding and importing graph packages under ``graphs/``; one broken graph never hides others."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from graphops.errors import GraphLoadError, GraphOpsError, did_you_mean
from graphops.graph._graph import Graph
from graphops.graph._hash import manifest_hash, manifest_of, read_package
from graphops.graph._verified import LockedCode, check_code, forget, install

GRAPHS_DIR = "graphs"
REPO_ENV = "GRAPHOPS_REPO"


@dataclass(frozen=True)
class GraphPackage:
    """A loaded graph together with where it lives and what its files hash to."""

    graph: Graph
    path: Path
    content_hash: str
    manifest: dict[str, str] = field(default_factory=dict, compare=False)
    """Each file of the package (path inside it -> sha256 hex): what a lock records."""

    @property
    def name(self) -> str:
        """The graph's name (equal to its folder name)."""
        return self.graph.name

    @property
    def repo(self) -> Path:
        """The repository root holding the package (``<repo>/graphs/<name>``)."""
        return self.path.parent.parent

    @property
    def validation_dataset(self) -> Path | None:
        """Absolute path of the graph's validation data, if it declares any."""
        v = self.graph.validation
        return self.path / v.dataset if v else None

    def trainer(self) -> Callable[..., Any] | None:
        """The package's training entry point, ``train(registry)`` in ``train.py``, if it has one."""
        if not (self.path / "train.py").is_file():
            return None
        _use_repo(self.repo)
        module = _import(f"{GRAPHS_DIR}.{self.name}.train", self.path)
        fn: object = getattr(module, "train", None)
        if not callable(fn):
            raise GraphLoadError(
                "train.py defines no function `train(registry)`.",
                fix="Add `def train(registry: Registry) -> ResolvedModel` that registers the model.",
                graph=self.name,
                file=self.path / "train.py",
            )
        return fn


@dataclass(frozen=True)
class LoadFailure:
    """A graph package that could not be loaded, and why."""

    name: str
    path: Path
    error: GraphOpsError


@dataclass(frozen=True)
class Catalog:
    """Everything found under ``graphs/``: loaded packages and failures."""

    repo: Path
    packages: tuple[GraphPackage, ...] = ()
    failures: tuple[LoadFailure, ...] = field(default=())

    def get(self, name: str) -> GraphPackage:
        """The package named ``name``; raise its load error, or a "did you mean" error."""
        for pkg in self.packages:
            if pkg.name == name:
                return pkg
        for failure in self.failures:
            if failure.name == name:
                raise failure.error
        raise _unknown(self.repo, name, [p.name for p in self.packages])


def find_repo(start: Path | None = None) -> Path:
    """The repository root: ``$GRAPHOPS_REPO``, else the nearest parent holding ``graphs/``."""
    if env := os.environ.get(REPO_ENV):
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / GRAPHS_DIR).is_dir():
            return candidate
    raise GraphLoadError(
        f"No {GRAPHS_DIR}/ folder in {here} or any parent.",
        fix=f"Run graphops inside a graphops repository, or set {REPO_ENV}=/path/to/repo.",
    )


def graph_names(repo: Path) -> list[str]:
    """Names of the package folders under ``graphs/`` (those with an ``__init__.py``)."""
    root = repo / GRAPHS_DIR
    return (
        sorted(p.name for p in root.iterdir() if (p / "__init__.py").is_file())
        if root.is_dir()
        else []
    )


def discover(repo: Path) -> Catalog:
    """Import every graph package under ``repo/graphs``; collect failures instead of raising."""
    packages, failures = [], []
    for name in graph_names(repo):
        try:
            packages.append(_load(repo, name))
        except GraphOpsError as exc:
            failures.append(LoadFailure(name, repo / GRAPHS_DIR / name, exc))
    return Catalog(repo, tuple(packages), tuple(failures))


def load_graph(repo: Path, name: str) -> GraphPackage:
    """Import one graph package; raise a `GraphOpsError` naming the file and line on failure."""
    names = graph_names(repo)
    if name not in names:
        raise _unknown(repo, name, names)
    return _load(repo, name)


def _unknown(repo: Path, name: str, names: list[str]) -> GraphLoadError:
    return GraphLoadError(
        f'No graph named "{name}" under {repo / GRAPHS_DIR}.{did_you_mean(name, names)}',
        fix=f"Available: {', '.join(names) or 'none'}.",
    )


def _use_repo(repo: Path) -> None:
    """Bind the ``graphs`` package to ``repo/graphs`` (evicting one bound to another repository).

    Binding explicitly (rather than through ``sys.path`` order) means a ``graphs`` package elsewhere
    on the path can never shadow the repository being loaded.
    """
    target = (repo / GRAPHS_DIR).resolve()
    current = sys.modules.get(GRAPHS_DIR)
    if current is not None and [Path(p).resolve() for p in getattr(current, "__path__", [])] == [
        target
    ]:
        return
    for mod in [m for m in sys.modules if m == GRAPHS_DIR or m.startswith(GRAPHS_DIR + ".")]:
        del sys.modules[mod]
    spec = importlib.machinery.PathFinder.find_spec(GRAPHS_DIR, [str(target.parent)])
    if spec is None:
        raise GraphLoadError(
            f"No {GRAPHS_DIR}/ package in {repo}.", fix=f"Create {target}/__init__.py."
        )
    module = importlib.util.module_from_spec(spec)
    sys.modules[GRAPHS_DIR] = module
    if spec.loader is not None:
        spec.loader.exec_module(module)


_imported_at: dict[str, str] = {}  # module name -> content hash of the files it was imported from


def load_locked(
    root: Path,
    locked: LockedCode,
    files: Mapping[str, bytes] | None = None,
    *,
    source: str | None = None,
    outside: Sequence[str] = (),
) -> GraphPackage:
    """Import the locked graph under ``root/graphs/`` after checking its files against the lock.

    ``files`` are the package's bytes when the caller already read them (from an archive);
    else they are read from ``root`` here. Either way they are checked (`check_code`) before
    anything is imported, and imported from those bytes (`graphops.graph._verified`).

    Raises:
        TamperedCodeError: The files differ from the lock (or ``outside`` is not empty).
        GraphLoadError: The checked package fails to import or exposes no ``graph``.
    """
    path = root / GRAPHS_DIR / locked.graph
    files = read_package(path) if files is None else files
    digest = check_code(files, locked, source=source or str(root), outside=outside)
    install(locked.graph, path, files)
    _imported_at.pop(f"{GRAPHS_DIR}.{locked.graph}", None)
    return _package(locked.graph, path, digest, manifest_of(files))


def _load(repo: Path, name: str) -> GraphPackage:
    path = repo / GRAPHS_DIR / name
    forget(name)  # an author's checkout is imported as it is on disk
    _use_repo(repo)
    module_name = f"{GRAPHS_DIR}.{name}"
    manifest = manifest_of(read_package(path))
    digest = manifest_hash(manifest)
    if _imported_at.get(module_name) != digest:  # files changed since imported: import afresh
        for mod in [m for m in sys.modules if m == module_name or m.startswith(module_name + ".")]:
            del sys.modules[mod]
    _imported_at[module_name] = digest
    return _package(name, path, digest, manifest)


def _package(name: str, path: Path, digest: str, manifest: dict[str, str]) -> GraphPackage:
    module_name = f"{GRAPHS_DIR}.{name}"
    module = _import(module_name, path)
    graph = getattr(module, "graph", None)
    if not isinstance(graph, Graph):
        raise GraphLoadError(
            f"{module_name} does not expose a Graph named `graph` (found {type(graph).__name__}).",
            fix="Add `graph = Graph(name=..., ...)` at module level in __init__.py.",
            file=path / "__init__.py",
        )
    if graph.name != name:
        raise GraphLoadError(
            f'The graph is named "{graph.name}" but lives in folder "{name}".',
            fix=f'Rename one so they match (name="{name}").',
            graph=graph.name,
            file=path / "__init__.py",
        )
    return GraphPackage(graph, path, digest, manifest)


def _import(module_name: str, path: Path) -> Any:
    """Import a module of the graph package at ``path``; any failure but Ctrl-C is located."""
    try:
        return importlib.import_module(module_name)
    except GraphOpsError as exc:
        raise exc.locate(**_where(exc, path)) from None
    except SyntaxError as exc:
        raise GraphLoadError(
            f"Syntax error: {exc.msg}.", fix="Fix the syntax.", file=exc.filename, line=exc.lineno
        ) from exc
    except (KeyboardInterrupt, GeneratorExit):
        raise
    except SystemExit as exc:  # a graph must not end (or green-light) the whole run by exiting
        raise GraphLoadError(
            f"Importing {module_name} called sys.exit({exc.code!r}); "
            "a graph package must not exit the process.",
            fix="Remove the sys.exit()/exit() call at that line (raise an exception to fail).",
            **_where(exc, path),
        ) from exc
    except BaseException as exc:  # any other failure is this graph's alone
        raise GraphLoadError(
            f"Importing {module_name} failed: {type(exc).__name__}: {exc}",
            fix="Fix the error at that line; `python -c 'import "
            + module_name
            + "'` reproduces it.",
            **_where(exc, path),
        ) from exc


class _Frame(TypedDict):
    """A source location, as keyword arguments of `GraphOpsError` and its ``locate``."""

    file: str | Path
    line: int | None


def _where(exc: BaseException, package: Path) -> _Frame:
    """The deepest traceback frame inside the graph package, as file/line keyword arguments."""
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if Path(f.filename).resolve().is_relative_to(package.resolve())
    ]
    if not frames:
        return {"file": package / "__init__.py", "line": None}
    return {"file": frames[-1].filename, "line": frames[-1].lineno}
