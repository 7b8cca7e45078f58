"""The scale benchmark's generator and figures: a small monorepo, as `benchmarks.scale` uses it."""

from __future__ import annotations

import git
import pytest

from benchmarks._monorepo import Monorepo, generate, graph_name
from benchmarks.scale import markdown, summarize
from graphops.controller.render import render_all
from graphops.environments import load_release
from graphops.graph import discover, load_graph
from graphops.registry import Registry
from graphops.validation.changes import changed_graphs
from graphops.validation.reuse import passed_validation


@pytest.fixture(scope="module")
def monorepo(tmp_path_factory: pytest.TempPathFactory) -> Monorepo:
    return generate(tmp_path_factory.mktemp("scale"), 3)


def test_generated_graphs_load_with_three_shapes_and_are_pinned_everywhere(
    monorepo: Monorepo,
) -> None:
    catalog = discover(monorepo.root)
    assert not catalog.failures
    assert sorted(p.name for p in catalog.packages) == sorted(graph_name(i) for i in range(3))
    assert {p.name.split("_")[0] for p in catalog.packages} == {"lookup", "blend", "topk"}
    assert sorted(load_release(monorepo.root, "dev").graphs) == sorted(monorepo.graphs)
    for env in ("staging", "prod"):  # the measured graph waits in dev for its promotion
        assert sorted(load_release(monorepo.root, env).graphs) == sorted(monorepo.graphs[1:])
    assert all(not r.stale() for r in render_all(monorepo.root, ray_schema=False))
    with git.Repo(monorepo.root) as r:
        assert not r.is_dirty(untracked_files=True)
        assert r.head.commit == r.remotes.origin.refs["main"].commit


def test_every_lock_has_its_passed_record_and_the_changed_graph_too(monorepo: Monorepo) -> None:
    registry = Registry(monorepo.root / ".graphops", monorepo.tracking_uri)
    for name in monorepo.graphs:
        entry = load_release(monorepo.root, "dev").graphs[name]
        record = registry.validation(entry.lock.validation_run or "")
        assert (record.status, record.content_hash) == ("passed", entry.lock.content_hash)
    change = changed_graphs(monorepo.changed, base="main")
    assert list(change.graphs) == [monorepo.one]
    package = load_graph(monorepo.changed, monorepo.one)
    assert package.graph.version == "1.0.1"
    found = passed_validation(registry, package, parity=True, history=monorepo.changed)
    assert found is not None and found.content_hash == package.content_hash


def test_summary_takes_medians_and_the_ratio_of_the_largest_to_the_smallest_n() -> None:
    runs = {
        "10": {"plan": [{"wall_s": 1.0}, {"wall_s": 3.0}, {"wall_s": 2.0}]},
        "200": {"plan": [{"wall_s": 3.0}, {"wall_s": 5.0}, {"wall_s": 4.0}]},
    }
    summary = summarize(runs)
    assert summary["medians_s"] == {"10": {"plan": 2.0}, "200": {"plan": 4.0}}
    assert summary["ratios"] == {"sizes": ["10", "200"], "plan": 2.0}
    table = markdown({"summary": summary}, names=("plan",))
    assert "| `plan` | 2.00 s | 4.00 s | 2.00x |" in table
