"""The canary strategy without Ray: step decisions, the policy's schema, figures from counters."""

from __future__ import annotations

import pytest

from graphops.controller.rollout import STRATEGIES, Reading, Step, Verdict, strategy_for
from graphops.controller.rollout.canary import Canary
from graphops.controller.rollout.walk import figures
from graphops.environments import CanaryConfig, EnvironmentConfig, RolloutConfig
from graphops.runtime.figures import ArmCounters, delta, rates
from graphops.runtime.split import ArmFigures

POLICY = CanaryConfig(
    steps=(5, 25, 50, 100), min_seconds=10, min_requests=20, max_seconds=60, max_error_rate=0.05
)


def arm(requests: int, errors: int = 0, ms: float = 10.0) -> ArmFigures:
    stats = ArmCounters()
    for i in range(requests):
        stats.record(ms, 500 if i < errors else 200, 1, [])
    return figures(stats.state(), None)


def judge(
    policy: CanaryConfig, share: float, elapsed: float, stable: ArmFigures, candidate: ArmFigures
) -> Verdict:
    reading = Reading(elapsed_s=elapsed, stable=stable, candidate=candidate)
    return Canary(policy).judge(Step(share=share), reading)


def test_a_failing_candidate_is_aborted_before_the_step_ends() -> None:
    # 20% failing: 4 errors are already more than 5% of the 20 requests the step needs at least.
    verdict = judge(POLICY, 5, 2.0, arm(200), arm(5, errors=4))
    assert verdict.action == "abort"
    assert "failed 4 of 5 requests" in verdict.reason and "at 5%" in verdict.reason


def test_one_error_within_the_allowance_waits_then_advances() -> None:
    assert judge(POLICY, 5, 2.0, arm(100), arm(5, errors=1)).action == "wait"
    verdict = judge(POLICY, 5, 12.0, arm(400), arm(40, errors=1))
    assert verdict.action == "advance"
    assert "1 errors in 40 requests" in verdict.reason


def test_a_step_waits_for_both_its_time_and_its_requests() -> None:
    assert judge(POLICY, 25, 30.0, arm(50), arm(10)).action == "wait"
    assert judge(POLICY, 25, 5.0, arm(500), arm(100)).action == "wait"
    assert judge(POLICY, 25, 10.0, arm(500), arm(100)).action == "advance"


def test_too_little_traffic_aborts_after_max_seconds() -> None:
    verdict = judge(POLICY, 5, 61.0, arm(10), arm(3))
    assert verdict.action == "abort" and "too little traffic" in verdict.reason


def test_a_slow_candidate_is_aborted_on_p99() -> None:
    verdict = judge(POLICY, 5, 12.0, arm(400, ms=10), arm(40, ms=30))
    assert verdict.action == "abort" and "p99" in verdict.reason
    assert judge(POLICY, 5, 12.0, arm(400, ms=10), arm(40, ms=12)).action == "advance"


def test_without_stable_traffic_latency_is_not_compared_and_says_so() -> None:
    verdict = judge(POLICY, 50, 12.0, arm(0), arm(40, ms=30))
    assert verdict.action == "advance" and "not compared" in verdict.reason


def test_the_judged_steps_are_the_shares_below_100_whether_100_is_written_or_not() -> None:
    assert [s.share for s in Canary(POLICY).steps()] == [5, 25, 50]
    assert [s.share for s in Canary(CanaryConfig(steps=(10, 50))).steps()] == [10, 50]
    assert {s.mirror for s in Canary(POLICY).steps()} == {0}
    assert [s.label for s in Canary(POLICY).steps()] == ["5%", "25%", "50%"]


def test_the_strategy_is_chosen_by_config_per_graph() -> None:
    rollout = RolloutConfig.model_validate(
        {
            "strategy": "canary",
            "canary": {"steps": [10, 50]},
            "graphs": {"digits": {"strategy": "blue_green"}, "feed": {"canary": {"steps": [1]}}},
        }
    )
    assert strategy_for(rollout, "digits").steps() == ()  # blue/green: no judged step
    canary = strategy_for(rollout, "other")
    assert isinstance(canary, Canary) and [s.share for s in canary.steps()] == [10, 50]
    assert [s.share for s in strategy_for(rollout, "feed").steps()] == [1]
    assert canary.policy()["steps"] == [10, 50]  # recorded as the canary section
    assert set(STRATEGIES) >= {"blue_green", "canary"}
    assert all(STRATEGIES[name].name == name for name in STRATEGIES)


@pytest.mark.parametrize("steps", [(50, 10), (0, 50), (5, 120), (5, 5)])
def test_invalid_steps_are_refused(steps: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match=r"canary steps|share in percent"):
        CanaryConfig(steps=steps)


def test_a_graph_overrides_fields_of_the_environments_canary() -> None:
    env = EnvironmentConfig.model_validate(
        {
            "name": "dev",
            "rollout": {
                "strategy": "canary",
                "canary": {"min_requests": 30},
                "graphs": {"digits": {"strategy": "blue_green", "canary": {"steps": [10, 50]}}},
            },
        }
    )
    assert env.rollout.strategy_of("digits") == "blue_green"
    assert env.rollout.strategy_of("feed_ranking") == "canary"
    own = env.rollout.canary_of("digits")
    assert own.steps == (10, 50) and own.min_requests == 30
    assert EnvironmentConfig(name="x").rollout.strategy_of("digits") == "blue_green"
    with pytest.raises(ValueError, match=r"rollout.graphs.digits.canary"):
        EnvironmentConfig.model_validate(
            {"name": "dev", "rollout": {"graphs": {"digits": {"canary": {"steps": [50, 10]}}}}}
        )
    with pytest.raises(ValueError, match=r"(?s)rollout.graphs.digits.canary.*min_request"):
        EnvironmentConfig.model_validate(  # an unknown key of a graph's section is refused
            {"name": "dev", "rollout": {"graphs": {"digits": {"canary": {"min_request": 5}}}}}
        )


def test_live_rates_come_from_the_difference_of_two_readings() -> None:
    stats = ArmCounters()
    for _ in range(10):
        stats.record(5.0, 200, 1, [1])
    before = stats.state()
    for i in range(30):
        stats.record(50.0, 500 if i < 3 else 200, 1, [2])
    delta_ = delta(stats.state(), before)
    assert delta_["requests"] == 30 and delta_["errors"] == 3
    assert delta_["categories"] == {"2": 30}
    live = rates(delta_, 2.0)
    assert live["rps"] == 15.0 and live["error_rate"] == 0.1
    assert live["p50_ms"] is not None and live["p50_ms"] >= 50.0
    assert delta(before, None) == before


def test_a_rollout_split_is_set_in_the_stable_ingress_and_an_interrupted_one_is_found() -> None:
    from graphops.controller.applications import split_in, version_of, with_split
    from graphops.controller.rollout.edge import interrupted_stable, split_for

    stable_name, name = "digits-1.0.0-3c9f0a12", "digits-1.1.0-d70f0194"
    assert version_of("digits", name) == "1.1.0"
    args = {"graph": "digits", "content_hash": "abc"}
    candidate = {"name": name, "route_prefix": "/x", "args": args}
    rendered = [{"name": "ingress", "user_config": {}}, {"name": "logits", "num_replicas": 2}]
    stable = {"name": stable_name, "route_prefix": "/digits", "args": args, "deployments": rendered}
    split = split_for("digits", stable_name, candidate, Step(share=5))
    assert (split.purpose, split.own_version, split.mirror) == ("rollout", "1.0.0", None)
    [arm] = split.arms
    assert (arm.app, arm.version, arm.weight) == (name, "1.1.0", 5)
    assert (arm.content_hash, arm.fuse) == ("abc", True)  # the ingress compares its own
    assert split.name == "digits-rollout-1.0.0-vs-1.1.0"
    mirrored = split_for("digits", stable_name, candidate, Step(share=0, mirror=20))
    assert mirrored.arms == () and mirrored.mirror is not None
    assert (mirrored.mirror.app, mirrored.mirror.percent) == (name, 20)
    zero = split_for("digits", stable_name, candidate, None)
    assert (zero.arms, zero.mirror, zero.name) == ((), None, split.name)  # names no app
    splitting = with_split(stable, split)
    assert splitting["deployments"][1] == rendered[1]  # other entries kept as they are
    assert split_in(splitting) == split and split_in(stable) is None
    assert with_split(splitting, None) == stable  # exactly what git renders again
    assert with_split({"name": "a"}, None) == {"name": "a"}
    assert split_in(with_split({"name": "a"}, split)) == split  # rendered before: listed now
    assert interrupted_stable("digits", {stable_name: splitting, name: candidate}) == stable_name
    assert interrupted_stable("digits", {stable_name: stable, name: candidate}) is None
    assert interrupted_stable("feed_ranking", {stable_name: splitting}) is None
    # A router left by a controller from before the split moved into the ingress.
    arms = [{"version": "1.0.0", "app": stable_name, "weight": 95}]
    old = {
        "deployments": [
            {"name": "Router", "user_config": {"experiment": "digits-canary-x", "arms": arms}}
        ]
    }
    assert interrupted_stable("digits", {"digits-router": old}) == stable_name
    ab = {"deployments": [{"name": "Router", "user_config": {"experiment": "ab", "arms": arms}}]}
    assert interrupted_stable("digits", {"digits-router": ab}) is None
    assert interrupted_stable("digits", {}) is None
