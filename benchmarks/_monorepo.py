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

REPO = Path(__file__).resolve().parents[1]
SHAPES = ("lookup", "blend", "topk")
ENVS = ("dev", "staging", "prod")
CLOSED = "http://127.0.0.1:9"
"""A loopback address nothing listens on: no cluster is reachable (discard port, refused)."""
ROWS = 64

_LOOKUP = '''"""{name}: lookup -> features -> classifier -> decision (a fraud-like shape)."""

from __future__ import annotations

from typing import Annotated, TypedDict

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from graphops import (
    Batching, Feature, FeatureTable, Graph, Metric, Model, Resources, Validation, lookup,
    model, node,
)

THRESHOLD = {threshold}


class Request(BaseModel):
    """One event to score."""

    model_config = ConfigDict(extra="forbid")

    account_id: Annotated[int, Field(ge=0, description="The account.")]
    amount: Annotated[float, Field(gt=0, description="Amount.")]
    hour: Annotated[int, Field(ge=0, le=23, description="Hour.")]


class Response(BaseModel):
    """Score and decision."""

    score: Annotated[float, Field(description="Probability.")]
    flagged: Annotated[bool, Field(description="score >= THRESHOLD.")]


ACCOUNTS = FeatureTable(
    name="accounts",
    key="account_id",
    source="accounts.parquet",
    features={{"avg": Feature(dtype="float32", default=0.0)}},
)
account = lookup(
    "account", table=ACCOUNTS, key="account_id", prefix="account_", timeout_ms=50,
    resources=Resources(cpus={cpus}),
)


@node(resources=Resources(cpus={cpus}))
def features(amount: np.ndarray, hour: np.ndarray, account_avg: np.ndarray) -> np.ndarray:
    """``(rows, 4)`` float32 inputs of the classifier."""
    a = np.asarray(amount, np.float64)
    h = np.asarray(hour, np.float64)
    avg = np.asarray(account_avg, np.float64)
    return np.stack([np.log1p(a), h / 23.0, np.log1p(avg), a / np.maximum(avg, 1.0)], 1).astype(
        np.float32
    )


@model("models:/{model}@champion", batching=Batching(max_batch_size={batch}, max_wait_ms=2),
       resources=Resources(cpus={cpus}))
def score(features: np.ndarray, model: Model) -> np.ndarray:
    """Probability of the positive class."""
    return np.asarray(model(features))[:, 1]


class Decision(TypedDict):
    """Output of `decision`."""

    flagged: np.ndarray


@node(resources=Resources(cpus={cpus}))
def decision(score: np.ndarray) -> Decision:
    """Flag scores at or above THRESHOLD."""
    return {{"flagged": np.asarray(score) >= THRESHOLD}}


graph = Graph(
    name="{name}",
    version="{version}",
    description="Synthetic {shape} graph of the scale benchmark.",
    request=Request,
    response=Response,
    nodes=[account, features, score, decision],
    validation=Validation(
        dataset="validation.parquet", label="truth", metrics=[Metric(name="auc", column="score")]
    ),
)
'''

_BLEND = '''"""{name}: features -> two classifiers -> blend (a two-model shape)."""

from __future__ import annotations

from typing import Annotated, TypedDict

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from graphops import Batching, Graph, Metric, Model, Resources, Validation, model, node

WEIGHT = {threshold}


class Request(BaseModel):
    """Four measurements."""

    model_config = ConfigDict(extra="forbid")

    x: Annotated[list[float], Field(min_length=4, max_length=4, description="Inputs.")]


class Response(BaseModel):
    """The blended score."""

    blended: Annotated[float, Field(description="Weighted mean of both scores.")]


@node(resources=Resources(cpus={cpus}))
def features(x: np.ndarray) -> np.ndarray:
    """``(rows, 4)`` float32."""
    return np.asarray(x, np.float32).reshape(-1, 4)


@model("models:/scale_a@champion", batching=Batching(max_batch_size={batch}, max_wait_ms=2),
       resources=Resources(cpus={cpus}))
def first(features: np.ndarray, model: Model) -> np.ndarray:
    """First classifier's probability."""
    return np.asarray(model(features))[:, 1]


@model("models:/scale_b@champion", resources=Resources(cpus={cpus}))
def second(features: np.ndarray, model: Model) -> np.ndarray:
    """Second classifier's probability."""
    return np.asarray(model(features))[:, 1]


class Blend(TypedDict):
    """Output of `blend`."""

    blended: np.ndarray


@node(resources=Resources(cpus={cpus}))
def blend(first: np.ndarray, second: np.ndarray) -> Blend:
    """WEIGHT * first + (1 - WEIGHT) * second."""
    return {{"blended": WEIGHT * np.asarray(first) + (1 - WEIGHT) * np.asarray(second)}}


graph = Graph(
    name="{name}",
    version="{version}",
    description="Synthetic {shape} graph of the scale benchmark.",
    request=Request,
    response=Response,
    nodes=[features, first, second, blend],
    validation=Validation(
        dataset="validation.parquet", label="truth", metrics=[Metric(name="auc", column="blended")]
    ),
)
'''

_TOPK = '''"""{name}: features -> classifier -> calibrated label (a post-processing shape)."""

from __future__ import annotations

from typing import Annotated, TypedDict

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from graphops import Graph, Metric, Model, Resources, Scaling, Validation, model, node

TEMPERATURE = {threshold}


class Request(BaseModel):
    """Four measurements."""

    model_config = ConfigDict(extra="forbid")

    x: Annotated[list[float], Field(min_length=4, max_length=4, description="Inputs.")]


class Response(BaseModel):
    """Calibrated probability and label."""

    probability: Annotated[float, Field(description="Tempered probability.")]
    label: Annotated[int, Field(description="1 when probability >= 0.5.")]


@node(resources=Resources(cpus={cpus}))
def features(x: np.ndarray) -> np.ndarray:
    """``(rows, 4)`` float32."""
    return np.asarray(x, np.float32).reshape(-1, 4)


@model("models:/{model}@champion", resources=Resources(cpus={cpus}),
       scaling=Scaling(min_replicas=1, max_replicas={replicas}))
def raw(features: np.ndarray, model: Model) -> np.ndarray:
    """Probability of the positive class."""
    return np.asarray(model(features))[:, 1]


class Calibrated(TypedDict):
    """Output of `calibrate`."""

    probability: np.ndarray
    label: np.ndarray


@node(resources=Resources(cpus={cpus}))
def calibrate(raw: np.ndarray) -> Calibrated:
    """Temper the logit, then threshold."""
    p = np.clip(np.asarray(raw, np.float64), 1e-6, 1 - 1e-6)
    q = 1 / (1 + np.exp(-np.log(p / (1 - p)) / TEMPERATURE))
    return {{"probability": q, "label": (q >= 0.5).astype(np.int64)}}


graph = Graph(
    name="{name}",
    version="{version}",
    description="Synthetic {shape} graph of the scale benchmark.",
    request=Request,
    response=Response,
    nodes=[features, raw, calibrate],
    validation=Validation(
        dataset="validation.parquet", label="truth",
        metrics=[Metric(name="auc", column="probability")],
    ),
)
'''
TEMPLATES = {"lookup": _LOOKUP, "blend": _BLEND, "topk": _TOPK}


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
    with git.Repo.init(root, initial_branch="main") as r:
        with r.config_writer() as config:
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
