"""Traffic splitting without Ray: arm choice, stickiness, statistics, and the render-time checks."""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

import pytest
import yaml

from graphops.controller.render import ARM_ROUTE, app_name, render, router_name
from graphops.environments import Arm, Release, ReleaseEntry, Shadow, Traffic, write_release
from graphops.errors import ConfigError
from graphops.runtime._traffic import ArmStats, Picker, agree, merge, outputs, summary
from graphops.runtime.router import _renumber
from graphops.runtime.schema import RouteArm, RouterConfig
from tests.fixtures.locks import lock

REPO = Path(__file__).resolve().parents[2]
NOW = datetime.datetime(2026, 11, 28, tzinfo=datetime.UTC)


def config(*weights: float, experiment: str = "e") -> RouterConfig:
    arms = tuple(
        RouteArm(version=f"1.{i}.0", app=f"app{i}", weight=w) for i, w in enumerate(weights)
    )
    return RouterConfig(experiment=experiment, arms=arms, sticky_key="member")


def test_keys_split_by_weight_and_stick() -> None:
    picker = Picker(config(90, 10))
    picks = [picker.pick(f"member-{i}") for i in range(10_000)]
    assert abs(picks.count(1) / len(picks) - 0.10) <= 0.02
    assert [picker.pick(f"member-{i}") for i in range(1000)] == picks[:1000]
    assert Picker(config(90, 10)).pick({"a": [1, 2]}) == picker.pick({"a": [1, 2]})


def test_reweighing_only_moves_keys_towards_the_growing_arm() -> None:
    before, after = Picker(config(90, 10)), Picker(config(50, 50))
    keys = [f"k{i}" for i in range(5000)]
    moved = [(before.pick(k), after.pick(k)) for k in keys]
    assert all(b == 1 for a, b in moved if a == 1)  # the 10% keep their arm
    assert abs(sum(b for _, b in moved) / len(keys) - 0.5) <= 0.02


def test_another_experiment_reshuffles_and_zero_weight_gets_nothing() -> None:
    a, b = Picker(config(50, 50, experiment="x")), Picker(config(50, 50, experiment="y"))
    keys = [str(i) for i in range(2000)]
    assert sum(a.pick(k) != b.pick(k) for k in keys) > 500
    only = Picker(config(100, 0))
    assert {only.pick(k) for k in keys} == {0} and {only.pick() for _ in range(200)} == {0}
    random_split = [Picker(config(50, 50)).pick() for _ in range(4000)]
    assert 0.45 < sum(random_split) / len(random_split) < 0.55


def test_stats_merge_and_summarize() -> None:
    one, two = ArmStats(), ArmStats()
    for ms in (1, 2, 3, 4, 100):
        one.record(ms, 200, 1, [7])
    two.record(5, 500, 1, [])
    two.record(5, 200, 2, [3, 3])
    total = merge(merge({}, one.state()), two.state())
    figures = summary(total)
    assert (figures["requests"], figures["rows"], figures["errors"]) == (7, 8, 1)
    assert figures["output"] == {"7": pytest.approx(5 / 7), "3": pytest.approx(2 / 7)}
    assert 2 <= figures["p50_ms"] <= 5.8 and figures["p99_ms"] >= 100
    scores = ArmStats()
    scores.record(1, 200, 2, [0.25, 0.75])
    assert summary(scores.state())["output_numeric"]["mean"] == pytest.approx(0.5)


def test_outputs_and_agreement() -> None:
    assert outputs([{"label": 1, "confidence": 0.5}, {"label": 2}], None) == [1, 2]
    assert outputs({"label": 1, "confidence": 0.5}, "confidence") == [0.5]
    assert outputs({"items": [4, 5]}, None) == [4]
    assert agree([1, 2, 0.5], [1, 3, 0.5 + 1e-12]) == (3, 2)


def test_split_list_errors_name_the_clients_rows() -> None:
    error = {
        "error": "1 error(s) in the request to graph 'digits'; first: row 2, field pixels: bad.",
        "detail": [{"loc": ["body", 1, "pixels"], "msg": "bad"}],
    }
    fixed = json.loads(_renumber(json.dumps(error).encode(), [0, 5]))
    assert "first: row 6, field pixels" in fixed["error"]
    assert fixed["detail"][0]["loc"] == ["body", 5, "pixels"]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "environments", tmp_path / "environments")
    return tmp_path


def fields(version: str) -> object:
    return lock(version).model_copy(update={"request_fields": ("pixels", "member_id")})


def release_with(repo: Path, traffic: Traffic) -> Path:
    entry = ReleaseEntry(lock=fields("1.0.0"), promoted_at=NOW, traffic=traffic)
    return write_release(repo, "dev", Release(graphs={"digits": entry}))


def arm(version: str, weight: float) -> Arm:
    return Arm(lock=fields(version), weight=weight, promoted_at=NOW)


def test_render_an_experiment_router_and_private_routes(repo: Path) -> None:
    shadow = Shadow(lock=fields("1.2.0"), percent=5, promoted_at=NOW)
    traffic = Traffic(weight=90, sticky_key="member_id", arms={"1.1.0": arm("1.1.0", 10)})
    release_with(repo, traffic.model_copy(update={"shadow": shadow}))
    rendered = render(repo, "dev")
    apps = {
        a["name"]: a
        for a in yaml.safe_load(rendered.files[repo / "environments/dev/serve.yaml"])[
            "applications"
        ]
    }
    control = app_name("digits", fields("1.0.0"))
    assert apps[router_name("digits")]["route_prefix"] == "/digits"
    assert apps[control]["route_prefix"] == ARM_ROUTE + control
    [deployment] = apps[router_name("digits")]["deployments"]
    routed = RouterConfig.model_validate(deployment["user_config"])
    assert [(a.version, a.weight) for a in routed.arms] == [("1.0.0", 90), ("1.1.0", 10)]
    assert routed.shadow is not None and routed.shadow.version == "1.2.0"
    assert routed.sticky_key == "member_id" and len(apps) == 4


@pytest.mark.parametrize(
    ("traffic", "message"),
    [
        (
            Traffic(weight=85, arms={"1.1.0": arm("1.1.0", 10)}),
            r"graphs\.digits\.traffic: the weights add up to 95 \(1\.0\.0 85, 1\.1\.0 10",
        ),
        (
            Traffic(weight=90, sticky_key="member", arms={"1.1.0": arm("1.1.0", 10)}),
            r'sticky_key "member" is no field of the request of digits 1\.0\.0\. '
            r'Did you mean "member_id"',
        ),
        (
            Traffic(weight=90, arms={"1.2.0": arm("1.1.0", 10)}),
            r"arms\.1\.2\.0: arm 1\.2\.0 holds a lock of version 1\.1\.0",
        ),
        (
            Traffic(
                weight=90,
                arms={"1.1.0": arm("1.1.0", 10)},
                shadow=Shadow(lock=fields("1.1.0"), percent=5, promoted_at=NOW),
            ),
            r"the shadow 1\.1\.0 is also an arm",
        ),
        (
            Traffic(
                weight=90,
                arms={
                    "1.1.0": arm("1.1.0", 10).model_copy(
                        update={"lock": fields("1.1.0").model_copy(update={"validation_run": None})}
                    )
                },
            ),
            r"arms\.1\.1\.0 \(1\.1\.0\) names no validation run",
        ),
        (Traffic(), r"declares neither arms nor a shadow"),
    ],
)
def test_invalid_experiments_are_refused_at_render(
    repo: Path, traffic: Traffic, message: str
) -> None:
    path = release_with(repo, traffic)
    with pytest.raises(ConfigError, match=message) as caught:
        render(repo, "dev")
    assert caught.value.file == str(path) and caught.value.fix
