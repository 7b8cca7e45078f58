"""Traffic splitting without Ray: arm choice, stickiness, counters, and the render-time checks."""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from graphops.controller.render import ARM_ROUTE, app_name, render
from graphops.environments import Arm, Release, ReleaseEntry, Shadow, Traffic, write_release
from graphops.errors import ConfigError
from graphops.runtime._traffic import Picker, agree, column_outputs, groups, outputs, renumber
from graphops.runtime.figures import ArmCounters, delta, figures_of, merge, summary
from graphops.runtime.split import SplitReport, TrafficSplit
from tests.fixtures.locks import lock

REPO = Path(__file__).resolve().parents[2]
NOW = datetime.datetime(2026, 11, 28, tzinfo=datetime.UTC)


def test_keys_split_by_weight_and_stick() -> None:
    picker = Picker([90, 10], "e")
    picks = [picker.pick(f"member-{i}") for i in range(10_000)]
    assert abs(picks.count(1) / len(picks) - 0.10) <= 0.02
    assert [picker.pick(f"member-{i}") for i in range(1000)] == picks[:1000]
    assert Picker([90, 10], "e").pick({"a": [1, 2]}) == picker.pick({"a": [1, 2]})
    # A parsed column's value (numpy) lands where its JSON value does.
    assert picker.pick(np.array([1, 2])) == picker.pick([1, 2])
    assert picker.pick(np.int64(7)) == picker.pick(7)


def test_reweighing_only_moves_keys_towards_the_growing_arm() -> None:
    before, after = Picker([90, 10], "e"), Picker([50, 50], "e")
    keys = [f"k{i}" for i in range(5000)]
    moved = [(before.pick(k), after.pick(k)) for k in keys]
    assert all(b == 1 for a, b in moved if a == 1)  # the 10% keep their arm
    assert abs(sum(b for _, b in moved) / len(keys) - 0.5) <= 0.02


def test_another_name_reshuffles_and_zero_weight_gets_nothing() -> None:
    a, b = Picker([50, 50], "x"), Picker([50, 50], "y")
    keys = [str(i) for i in range(2000)]
    assert sum(a.pick(k) != b.pick(k) for k in keys) > 500
    only = Picker([100, 0], "e")
    assert {only.pick(k) for k in keys} == {0} and {only.pick() for _ in range(200)} == {0}
    middle = Picker([0, 100, 0], "e")
    assert {middle.pick(k) for k in keys} == {1}
    last_empty = Picker([30, 70, 0], "e")
    assert {last_empty.pick(k) for k in keys} == {0, 1}
    random_split = [Picker([50, 50], "e").pick() for _ in range(4000)]
    assert 0.45 < sum(random_split) / len(random_split) < 0.55


def test_a_split_keeps_the_rest_and_refuses_more_than_all() -> None:
    arm = {"app": "b", "version": "1.1.0", "weight": 30}
    split = TrafficSplit(name="s", purpose="experiment", arms=(arm,))
    assert split.own_weight == 70
    with pytest.raises(ValueError, match="sum to 130"):
        TrafficSplit(name="s", purpose="rollout", arms=(arm, arm | {"app": "c", "weight": 100}))
    with pytest.raises(ValueError, match="named by two arms"):
        TrafficSplit(name="s", purpose="rollout", arms=(arm, arm))


def test_rows_group_by_arm_in_order() -> None:
    assert groups([0, 1, 0, 2, 1]) == {0: [0, 2], 1: [1, 4], 2: [3]}
    assert column_outputs(np.array([[0.1, 0.9], [0.8, 0.2]])) == [0.1, 0.8]
    assert column_outputs(np.array([3, 4])) == [3, 4]


def test_stats_merge_and_summarize() -> None:
    one, two = ArmCounters(), ArmCounters()
    for ms in (1, 2, 3, 4, 100):
        one.record(ms, 200, 1, [7])
    two.record(5, 500, 1, [])
    two.record(5, 200, 2, [3, 3])
    total = merge(merge({}, one.state()), two.state())
    figures = summary(total)
    assert (figures["requests"], figures["rows"], figures["errors"]) == (7, 8, 1)
    assert figures["output"] == {"7": pytest.approx(5 / 7), "3": pytest.approx(2 / 7)}
    assert 2 <= figures["p50_ms"] <= 5.8 and figures["p99_ms"] >= 100
    scores = ArmCounters()
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
    fixed = json.loads(renumber(json.dumps(error).encode(), [0, 5]))
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


def test_render_an_experiment_as_a_split_of_the_control_ingress(repo: Path) -> None:
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
    candidate, shadowed = app_name("digits", fields("1.1.0")), app_name("digits", fields("1.2.0"))
    assert len(apps) == 3  # no router: the control's own ingress splits its route
    assert apps[control]["route_prefix"] == "/digits"
    assert apps[candidate]["route_prefix"] == ARM_ROUTE + candidate
    assert apps[shadowed]["route_prefix"] == ARM_ROUTE + shadowed
    [ingress] = [d for d in apps[control]["deployments"] if d["name"] == "ingress"]
    split = TrafficSplit.model_validate(ingress["user_config"])
    assert split.name == "digits-1.0.0-vs-1.1.0" and split.purpose == "experiment"
    assert split.own_version == "1.0.0" and split.own_weight == 90
    assert [(a.app, a.version, a.weight) for a in split.arms] == [(candidate, "1.1.0", 10)]
    assert split.arms[0].content_hash == fields("1.1.0").content_hash
    assert split.mirror is not None and (split.mirror.app, split.mirror.percent) == (shadowed, 5)
    assert split.sticky_key == "member_id"
    for name in (candidate, shadowed):  # not split: an empty user_config ends any split
        [other] = [d for d in apps[name]["deployments"] if d["name"] == "ingress"]
        assert other["user_config"] == {}


def test_a_split_report_reads_back_and_its_figures_come_from_deltas() -> None:
    one = ArmCounters()
    for ms in (1, 2, 3):
        one.record(ms, 200, 1, [1])
    before = one.state()
    one.record(200, 500, 1, [])
    one.compared, one.agreed = 4, 3
    figures = figures_of(delta(one.state(), before))
    assert (figures.requests, figures.errors, figures.error_rate) == (1, 1, 1.0)
    assert figures.p50_ms is not None and figures.p50_ms >= 200
    assert figures.agreement == 0.75
    report = SplitReport(
        graph="digits",
        name="s",
        purpose="experiment",
        since=0,
        now=1,
        arms=({"role": "stable", "version": "1", "app": "a", "weight": 90, "raw": before},),
    )
    back = SplitReport.model_validate_json(report.model_dump_json())
    assert back.arm("a") is not None and back.arm("a").raw == before  # type: ignore[union-attr]
    assert back.arm("b") is None


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
        (
            Traffic(
                weight=90,
                arms={
                    "1.1.0": arm("1.1.0", 10).model_copy(
                        update={
                            "lock": fields("1.1.0").model_copy(update={"request_fields": ("x",)})
                        }
                    )
                },
            ),
            r"arms\.1\.1\.0 \(1\.1\.0\) takes the request fields x; the control 1\.0\.0 takes",
        ),
    ],
)
def test_invalid_experiments_are_refused_at_render(
    repo: Path, traffic: Traffic, message: str
) -> None:
    path = release_with(repo, traffic)
    with pytest.raises(ConfigError, match=message) as caught:
        render(repo, "dev")
    assert caught.value.file == str(path) and caught.value.fix
