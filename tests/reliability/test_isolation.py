"""Isolation: graph B loses no request while graph A goes through a canary, a crash loop and a
rollback on the same cluster (`nox -s reliability`).

A `ray start` cluster of its own on the suite's serving path (4 logical CPUs: A's two versions
side by side plus B), a git repository whose dev pins digits (A) and ``digits_b`` (B, a copy of
digits under another name, its own Serve application). Both routes are under the same steady
load from separate processes (loopback, bounded) in every phase; only what A goes through
changes:

- quiet: nothing (before and after the three others; the baseline);
- canary: A 1.0.0 -> 1.0.1 by canary (5%, 50%, 100%);
- crash loop: A 1.0.2, whose replicas raise in their constructor (Serve retries them until the
  application is DEPLOY_FAILED; apply restores the previous state and raises);
- rollback: A back to 1.0.0's lock (a revert in git), rolled out by canary.

B's failures must be 0 (asserted); B's p99 in each phase against the quiet one is reported in
benchmarks/results/reliability.json and under ``isolation.<ingress>`` in
benchmarks/results/footprint.json, never asserted (timings on a shared 2-core machine).
"""

from __future__ import annotations

import datetime
import json
import resource
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import pytest

import graphops
from graphops.controller.apply import apply
from graphops.controller.packaging import package_uri
from graphops.controller.render import render
from graphops.controller.rollout import RolloutAborted
from graphops.environments import GraphLock, Release, ReleaseEntry, write_release
from graphops.errors import ApplyError
from graphops.graph import load_graph
from graphops.registry import Registry, ResolvedModel
from graphops.runtime.checkout import request_example
from graphops.runtime.serving import ServingConfig
from tests.integration.test_canary import POLICY, rollout_checkout
from tests.integration.test_gitops import Cluster
from tests.reliability._load import Load, LoadResult
from tests.reliability.conftest import Rows, own_cluster

pytestmark = pytest.mark.usefixtures("champion")

A, B = "digits", "digits_b"
RPS = 15
"""Requests per second on each route (A's and B's), in every phase."""
QUIET_S = 30.0
LOAD_S = 115.0
"""Longest load of one phase (stopped a few seconds after apply returns)."""
CRASH = """

import os as _os

if _os.environ.get("RAY_RAYLET_PID"):  # in a Ray worker (a replica), not in the driver
    raise RuntimeError("digits 1.0.2 crashes in every replica's constructor (isolation test)")
"""
SLOW_S = 0.2
"""An answer of B slower than this is listed with when it was sent."""
FOOTPRINT = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "footprint.json"


@pytest.fixture(scope="module")
def cluster(
    registry: Registry, serving: ServingConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """This module's own `ray start` cluster on the suite's serving path; stopped by its pid."""
    with own_cluster("ray-isolation", registry, serving, tmp_path_factory) as cluster:
        yield cluster


@pytest.fixture(autouse=True)
def _token(cluster: Cluster, registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHOPS_TEST_TOKEN", cluster.token)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.tracking_uri)  # rollout records go here


@pytest.fixture(scope="module")
def repo(repo_copy: Path, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkout with dev on this cluster, a canary policy, and B (digits under another name)."""
    origin = tmp_path_factory.mktemp("origin") / "graphs.git"
    root = tmp_path_factory.mktemp("isolation") / "repo"
    root = rollout_checkout(root, repo_copy, cluster, POLICY, origin)
    shutil.copytree(
        root / "graphs" / A, root / "graphs" / B, ignore=shutil.ignore_patterns("__pycache__")
    )
    code = root / "graphs" / B / "__init__.py"
    text = code.read_text()
    assert text.count(f'name="{A}"') == 1
    code.write_text(text.replace(f'name="{A}"', f'name="{B}"'))
    commit(root, f"{B}: a second graph beside {A}")
    return root


def commit(repo: Path, message: str) -> None:
    with git.Repo(repo) as r:
        r.git.add(A=True)
        r.index.commit(message)


def lock_of(repo: Path, graph: str, version: str, champion: ResolvedModel) -> GraphLock:
    """The lock of ``graph`` as committed at HEAD (dev requires no validation here)."""
    package = load_graph(repo, graph)
    head = git.Repo(repo).head.commit.hexsha
    return GraphLock(
        version=version,
        content_hash=package.content_hash,
        manifest=package.manifest,
        commit=head,
        models={"logits": champion.model_copy(update={"alias": None})},
        package=package_uri(repo, graph, head),
        example=request_example(package),
        platform_version=graphops.__version__,
        request_fields=tuple(package.graph.request_fields),
    )


def pin(repo: Path, locks: dict[str, GraphLock], message: str) -> None:
    """Commit ``locks`` as dev's release (rendered), as a merged promotion would."""
    now = datetime.datetime.now(datetime.UTC)
    graphs = {g: ReleaseEntry(lock=lock, promoted_at=now) for g, lock in locks.items()}
    write_release(repo, "dev", Release(graphs=graphs))
    render(repo, "dev").write()
    commit(repo, message)


def _cpu_s() -> float:
    """CPU seconds this process (apply runs in it) and its finished children (git) used."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Phases:
    """The module's shared state: the locks, and each phase's load on B and on A."""

    def __init__(self) -> None:
        self.locks: dict[str, GraphLock] = {}
        self.first: GraphLock | None = None
        self.b: dict[str, LoadResult] = {}
        self.a: dict[str, LoadResult] = {}
        self.outcome: dict[str, str] = {}
        self.apply_s: dict[str, float] = {}
        self.apply_cpu_s: dict[str, float] = {}


@pytest.fixture(scope="module")
def phases() -> Phases:
    return Phases()


def under_load(cluster: Cluster, phases: Phases, name: str, action: Any = None) -> None:
    """Load A's and B's routes from two processes while ``action`` runs (or ``QUIET_S``)."""
    body_a = json.dumps(phases.locks[A].example).encode()
    body_b = json.dumps(phases.locks[B].example).encode()
    seconds = QUIET_S if action is None else LOAD_S
    load_b = Load(f"{cluster.serve}/{B}", body_b, rps=RPS, seconds=seconds, threads=64).start()
    load_a = Load(f"{cluster.serve}/{A}", body_a, rps=RPS, seconds=seconds, threads=64).start()
    if action is None:
        phases.b[name], phases.a[name] = load_b.result(), load_a.result()
        return
    time.sleep(3)  # the load runs before A's change starts
    started, cpu = time.monotonic(), _cpu_s()
    try:
        action()
        phases.outcome[name] = "applied"
    except (ApplyError, RolloutAborted) as exc:
        phases.outcome[name] = f"{type(exc).__name__}: {str(exc)[:200]}"
    phases.apply_s[name] = round(time.monotonic() - started, 1)
    phases.apply_cpu_s[name] = round(_cpu_s() - cpu, 1)
    time.sleep(3)
    phases.b[name], phases.a[name] = load_b.finish(), load_a.finish()


def test_a_and_b_are_applied(
    repo: Path, cluster: Cluster, champion: ResolvedModel, phases: Phases
) -> None:
    phases.locks = {g: lock_of(repo, g, "1.0.0", champion) for g in (A, B)}
    phases.first = phases.locks[A]
    pin(repo, phases.locks, "digits and digits_b 1.0.0 in dev")
    assert len(apply(repo, "dev", timeout_s=300).started) == 2


def test_quiet_before(cluster: Cluster, phases: Phases) -> None:
    under_load(cluster, phases, "quiet (before)")
    assert phases.b["quiet (before)"].failed == 0


def test_a_canary(repo: Path, cluster: Cluster, champion: ResolvedModel, phases: Phases) -> None:
    phases.locks[A] = lock_of(repo, A, "1.0.1", champion)
    pin(repo, phases.locks, "digits 1.0.1 in dev")
    under_load(cluster, phases, "A canary", lambda: apply(repo, "dev", timeout_s=300))
    assert phases.outcome["A canary"] == "applied"
    assert phases.b["A canary"].failed == 0, phases.b["A canary"].samples


def test_a_crash_loop(
    repo: Path, cluster: Cluster, champion: ResolvedModel, phases: Phases
) -> None:
    code = repo / "graphs" / A / "__init__.py"
    good = code.read_text()
    code.write_text(good + CRASH)
    commit(repo, "digits 1.0.2: crashes in its constructor")
    crashing = dict(phases.locks) | {A: lock_of(repo, A, "1.0.2", champion)}
    pin(repo, crashing, "digits 1.0.2 in dev")
    under_load(cluster, phases, "A crash loop", lambda: apply(repo, "dev", timeout_s=300))
    code.write_text(good)
    commit(repo, "digits: the crash reverted")
    assert phases.outcome["A crash loop"] != "applied"  # refused: the previous state is back
    assert phases.b["A crash loop"].failed == 0, phases.b["A crash loop"].samples


def test_a_rollback(repo: Path, cluster: Cluster, phases: Phases) -> None:
    assert phases.first is not None
    phases.locks[A] = phases.first
    pin(repo, phases.locks, "rollback: digits back to 1.0.0 in dev")
    under_load(cluster, phases, "A rollback", lambda: apply(repo, "dev", timeout_s=300))
    assert phases.outcome["A rollback"] == "applied"
    assert phases.b["A rollback"].failed == 0, phases.b["A rollback"].samples


def test_quiet_after_and_report(
    cluster: Cluster, phases: Phases, rows: Rows, serving: ServingConfig
) -> None:
    under_load(cluster, phases, "quiet (after)")
    quiet = [
        ms for name in ("quiet (before)", "quiet (after)") for ms in phases.b[name].latencies_ms
    ]
    base = LoadResult(latencies_ms=quiet)
    report: list[dict[str, Any]] = []
    for name, seen in phases.b.items():
        p99 = seen.percentile(0.99)
        row = {
            "phase": name,
            "b_total": seen.total,
            "b_failed": seen.failed,
            "b_p50_ms": round(seen.percentile(0.5), 1),
            "b_p99_ms": round(p99, 1),
            "b_p99_ratio_vs_quiet": round(p99 / base.percentile(0.99), 2),
            "a_total": phases.a[name].total,
            "a_failed": phases.a[name].failed,
            "a_outcome": phases.outcome.get(name, "-"),
            "apply_s": phases.apply_s.get(name),
            # CPU the control plane (apply, in this process, on the same 2 cores) used meanwhile.
            "apply_cpu_s": phases.apply_cpu_s.get(name),
            # When B's slow answers were sent (s since the phase's load began): clustered at
            # A's replica starts and route changes, or spread.
            "b_slow_sent_at_s": [
                sent for sent, answered, _ in seen.timeline if answered - sent > SLOW_S
            ][:40],
        }
        report.append(row)
        rows.add(
            f"isolation: B ({RPS} req/s) while A: {name}",
            failed=seen.failed,
            total=seen.total,
            p50_ms=row["b_p50_ms"],
            p99_ms=row["b_p99_ms"],
            p99_ratio_vs_quiet=row["b_p99_ratio_vs_quiet"],
            a_outcome=row["a_outcome"],
            statuses=seen.statuses,
        )
    kept = json.loads(FOOTPRINT.read_text()) if FOOTPRINT.is_file() else {}
    kept.setdefault("isolation", {})[serving.ingress] = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "rps_each_route": RPS,
        "quiet_b_p99_ms": round(base.percentile(0.99), 1),
        "target": "B's p99 during A's canary, crash loop and rollback <= 1.2x quiet; 0 failed",
        "phases": report,
    }
    FOOTPRINT.parent.mkdir(parents=True, exist_ok=True)
    FOOTPRINT.write_text(json.dumps(kept, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    assert all(r["b_failed"] == 0 for r in report), report
