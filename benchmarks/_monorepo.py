"""A synthetic monorepo of N graphs, as if each had been validated and promoted everywhere.

What `benchmarks.scale` measures the commands on. Each graph is one of three shapes taken from
the repository's own graphs (fraud's feature lookup -> features -> model -> decision; two models
blended; features -> model -> top-k style post-processing), with varied settings (CPUs,
batching, thresholds). Cheap by construction: two tiny scikit-learn models (skops, no pickle)
are registered once and shared by every graph; each graph's validation record is written
through graphops' own `Registry.record_validation` with the tags `validate_graph` writes (its
metrics are not measured: nothing of the benchmark reads them), its lock is built by
`lock_from_checkout` as `promote` does, and dev/staging/prod pin every lock (release.yaml
written once per environment, then rendered and committed). A second worktree holds one changed
graph on a branch, with its own record, for `validate --changed`.
"""

from __future__ import annotations

import datetime
import shutil
from dataclasses import dataclass
from pathlib import Path

import git
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from benchmarks._shapes import SHAPES, TEMPLATES

REPO = Path(__file__).resolve().parents[1]
ENVS = ("dev", "staging", "prod")
CLOSED = "http://127.0.0.1:9"
"""A loopback address nothing listens on: no cluster is reachable (discard port, refused)."""
ROWS = 64


@dataclass
class Monorepo:
    """A generated monorepo: its checkout (on ``main``), the changed worktree, the store."""

    root: Path
    changed: Path
    tracking_uri: str
    graphs: list[str]

    @property
    def one(self) -> str:
        """The graph single-graph commands are measured on (the changed one)."""
        return self.graphs[0]


def graph_name(i: int) -> str:
    """The ``i``-th graph's name; its shape cycles through `SHAPES`."""
    return f"{SHAPES[i % len(SHAPES)]}_{i:03d}"


def write_graph(graphs: Path, i: int, version: str = "1.0.0") -> str:
    """Write graph ``i``'s package (code, validation data, feature table) under ``graphs``."""
    name, shape = graph_name(i), SHAPES[i % len(SHAPES)]
    rng = np.random.default_rng(i)
    folder = graphs / name
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "name": name,
        "shape": shape,
        "version": version,
        "cpus": (0.05, 0.1, 0.25)[i % 3],
        "batch": (16, 32, 64)[i % 3],
        "replicas": 1 + i % 3,
        "threshold": round(0.3 + 0.4 * ((i * 7) % 10) / 10, 2),
        "model": ("scale_a", "scale_b")[i % 2],
    }
    (folder / "__init__.py").write_text(TEMPLATES[shape].format(**settings))
    label = rng.integers(0, 2, ROWS)
    if shape == "lookup":
        ids = np.arange(ROWS)
        pq.write_table(
            pa.table({"account_id": ids, "avg": rng.uniform(1, 100, ROWS).astype("float32")}),
            folder / "accounts.parquet",
        )
        data = {
            "account_id": ids,
            "amount": rng.uniform(1, 500, ROWS),
            "hour": rng.integers(0, 24, ROWS),
        }
    else:
        data = {"x": [list(map(float, rng.normal(size=4))) for _ in range(ROWS)]}
    pq.write_table(pa.table(data | {"truth": label}), folder / "validation.parquet")
    return name


def _environments(root: Path, store: Path) -> None:
    """environments/ of this repository, releases and rendered files left out, no cluster."""
    shutil.copytree(REPO / "environments", root / "environments")
    for path in root.glob("environments/*/*.yaml"):
        if path.name in ("serve.yaml", "rayservice.yaml", "release.yaml"):
            path.unlink()
    for env in ENVS:  # one machine: every environment reads this machine's artifact files
        path = root / f"environments/{env}/environment.yaml"
        data = yaml.safe_load(path.read_text())
        data.setdefault("models", {})["artifact_stores"] = ["file://", "mlflow-artifacts:"]
        if env == "dev":
            data["cluster"] |= {"dashboard": CLOSED, "serve_url": CLOSED}
            data["code"]["store"] = store.as_uri()
        path.write_text(yaml.safe_dump(data))


def _register_models(tracking_uri: str, work: Path) -> None:
    """scale_a and scale_b: two tiny logistic regressions, saved with skops, @champion."""
    from sklearn.linear_model import LogisticRegression

    from graphops.registry import Registry

    registry = Registry(work, tracking_uri)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    for name, column in (("scale_a", 0), ("scale_b", 1)):
        fitted = LogisticRegression().fit(x, (x[:, column] > 0).astype(int))
        registry.register_flavor(
            name=name,
            flavor="sklearn",
            model=fitted,
            alias="champion",
            serialization_format="skops",
            pip_requirements=["scikit-learn", "skops"],
        )


def record_passed(root: Path, name: str, tracking_uri: str, commit: str) -> str:
    """A passed validation record of ``name`` as it is in ``root``, with the tags validate writes.

    Its figures are placeholders (auc 1.0, parity 0 mismatches): the benchmark measures the
    commands that read records, not a validation.
    """
    import graphops
    from graphops.graph import load_graph
    from graphops.registry import Registry
    from graphops.validation.reuse import PARITY_METRIC, file_digest

    registry = Registry(root / ".graphops", tracking_uri)
    package = load_graph(root, name)
    g = package.graph
    tags = {
        "graphops.graph": name,
        "graphops.version": g.version,
        "graphops.content_hash": package.content_hash,
        "graphops.commit": commit,
        "graphops.platform_version": graphops.__version__,
    }
    if package.validation_dataset is not None:
        tags["graphops.dataset_digest"] = file_digest(package.validation_dataset)
    for node in g.model_nodes:
        pinned = registry.resolve(node.uri)
        tags[f"graphops.model.{node.name}"] = pinned.uri
        tags[f"graphops.model.{node.name}.digest"] = pinned.digest
    metrics = {"auc": 1.0, "gate.auc.passed": 1.0, "rows": float(ROWS), "seconds": 0.0}
    metrics |= {PARITY_METRIC: 0.0, "parity.rows": float(ROWS), "parity.requests": 1.0}
    return registry.record_validation(
        graph=name,
        tags=tags,
        params={"dataset": f"graphs/{name}/validation.parquet"},
        metrics=metrics,
        status="passed",
        artifacts=lambda _: {},
    )


def _commit(root: Path, message: str) -> str:
    with git.Repo(root) as r:
        r.git.add(A=True)
        r.index.commit(message)
        return r.head.commit.hexsha


def generate(target: Path, n: int) -> Monorepo:
    """Write a monorepo of ``n`` graphs under ``target`` (created), every environment pinned."""
    from graphops.controller.lock import lock_from_checkout
    from graphops.controller.promote import publish_code
    from graphops.controller.render import render_all
    from graphops.environments import Release, ReleaseEntry, write_release
    from graphops.registry import Registry

    root, origin = target / "repo", target / "origin.git"
    tracking_uri = f"sqlite:///{target / 'mlflow.db'}"
    root.mkdir(parents=True)
    shutil.copy(REPO / ".gitignore", root / ".gitignore")
    (root / "graphs").mkdir()
    shutil.copy(REPO / "graphs/__init__.py", root / "graphs")
    names = [write_graph(root / "graphs", i) for i in range(n)]
    _environments(root, target / "packages")
    with git.Repo.init(root, initial_branch="main") as r, r.config_writer() as config:
        config.set_value("user", "name", "bench").set_value("user", "email", "b@example.com")
    commit = _commit(root, f"{n} graphs")
    _register_models(tracking_uri, target / "work")
    for name in names:
        record_passed(root, name, tracking_uri, commit)
    registry = Registry(root / ".graphops", tracking_uri)
    promoted = datetime.datetime.now(datetime.UTC).replace(microsecond=0) - datetime.timedelta(
        days=7
    )
    entries = {
        name: ReleaseEntry(lock=lock_from_checkout(root, name, registry), promoted_at=promoted)
        for name in names
    }
    for env in ENVS:  # the measured graph only in dev: its promotion to staging commits
        pinned = entries if env == "dev" else {k: v for k, v in entries.items() if k != names[0]}
        write_release(root, env, Release(graphs=pinned))
    for rendered in render_all(root):
        rendered.write()
    for env in ENVS:
        publish_code(root, env)
    _commit(root, "promote every graph to dev, staging and prod")
    git.Repo.init(origin, bare=True).close()
    with git.Repo(root) as r:
        r.create_remote("origin", str(origin)).push("main:main")
        r.git.fetch("origin")
        r.git.branch("--set-upstream-to=origin/main", "main")
        r.git.worktree("add", str(target / "changed"), "-b", "change")
    changed = target / "changed"
    write_graph(changed / "graphs", 0, version="1.0.1")
    (changed / "graphs" / names[0] / "__init__.py").write_text(
        (changed / "graphs" / names[0] / "__init__.py").read_text() + "\n# a changed comment\n"
    )
    record_passed(changed, names[0], tracking_uri, _commit(changed, f"change {names[0]}"))
    return Monorepo(root=root, changed=changed, tracking_uri=tracking_uri, graphs=names)
