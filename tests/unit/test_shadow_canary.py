"""The shadow-then-canary strategy without Ray: its mirrored step's judge, its steps, its config."""

from __future__ import annotations

import pytest

from graphops.controller.rollout import (
    STRATEGIES,
    Reading,
    RolloutAborted,
    Step,
    strategy_for,
    walk,
)
from graphops.controller.rollout.shadow import ShadowCanary
from graphops.environments import EnvironmentConfig
from graphops.environments.rollout import CanaryConfig, RolloutConfig, ShadowConfig
from graphops.runtime.split import ArmFigures
from tests.unit.test_rollout_walk import FakeEdge, counters, record

SHADOW = ShadowConfig(percent=50, min_seconds=2, min_requests=20, max_seconds=60, min_agreement=0.9)
CANARY = CanaryConfig(steps=(25, 100), min_seconds=1, min_requests=5)
STRATEGY = ShadowCanary(SHADOW, CANARY)
MIRRORED = Step(share=0, mirror=50)


def figures(
    requests: int, errors: int = 0, agreed: int | None = None, p99: float = 10.0
) -> ArmFigures:
    compared = requests - errors
    return ArmFigures(
        requests=requests,
        errors=errors,
        error_rate=errors / requests if requests else 0.0,
        p50_ms=p99 / 2 if requests else None,
        p99_ms=p99 if requests else None,
        compared=compared,
        agreed=compared if agreed is None else agreed,
    )


def judge(elapsed: float, mirror: ArmFigures, stable_p99: float = 10.0) -> tuple[str, str]:
    verdict = STRATEGY.judge(
        MIRRORED, Reading(elapsed_s=elapsed, stable=figures(100, p99=stable_p99), mirror=mirror)
    )
    return verdict.action, verdict.reason


def test_its_steps_are_a_mirrored_one_then_the_canary_shares() -> None:
    assert STRATEGY.steps() == (MIRRORED, Step(share=25))
    assert [s.label for s in STRATEGY.steps()] == ["mirror 50%", "25%"]
    assert STRATEGY.policy()["shadow"]["min_agreement"] == 0.9


def test_a_candidate_that_agrees_advances_after_its_window() -> None:
    assert judge(1.0, figures(30))[0] == "wait"  # its time
    assert judge(5.0, figures(10))[0] == "wait"  # its compared requests
    action, reason = judge(5.0, figures(30, agreed=29))
    assert action == "advance" and "agreed on 29 of 30" in reason


def test_a_candidate_that_disagrees_is_aborted_as_soon_as_it_cannot_pass() -> None:
    # 90% over at least 20 compared allows 2 disagreements: a third aborts at once.
    assert judge(0.5, figures(5, agreed=3))[0] == "wait"
    action, reason = judge(0.5, figures(6, agreed=3))
    assert action == "abort" and "disagreed with the stable on 3 of 6" in reason
    assert "min_agreement 90.0%" in reason


def test_errors_latency_and_too_little_traffic_abort() -> None:
    action, reason = judge(0.5, figures(10, errors=3))
    assert action == "abort" and "failed 3 of 10 mirrored requests" in reason
    action, reason = judge(5.0, figures(30, p99=40.0), stable_p99=10.0)
    assert action == "abort" and "p99" in reason
    action, reason = judge(61.0, figures(3))
    assert action == "abort" and "too little traffic" in reason


def test_the_canary_steps_are_judged_as_the_canary_judges_them() -> None:
    reading = Reading(elapsed_s=2.0, stable=figures(40), candidate=figures(8, errors=3))
    verdict = STRATEGY.judge(Step(share=25), reading)
    assert verdict.action == "abort" and "at 25%: the candidate failed 3 of 8" in verdict.reason


def test_it_is_chosen_by_config_with_its_own_section_per_graph() -> None:
    env = EnvironmentConfig.model_validate(
        {
            "name": "dev",
            "rollout": {
                "strategy": "shadow_canary",
                "shadow": {"percent": 10, "min_agreement": 0.95},
                "canary": {"steps": [10, 50]},
                "graphs": {"digits": {"shadow": {"percent": 100}}},
            },
        }
    )
    digits = strategy_for(env.rollout, "digits")
    assert isinstance(digits, ShadowCanary) and STRATEGIES["shadow_canary"] is ShadowCanary
    assert (digits.shadow.percent, digits.shadow.min_agreement) == (100, 0.95)
    assert [s.label for s in digits.steps()] == ["mirror 100%", "10%", "50%"]
    assert strategy_for(env.rollout, "other").steps()[0].mirror == 10
    with pytest.raises(ValueError, match=r"rollout.graphs.digits.shadow"):
        RolloutConfig.model_validate({"graphs": {"digits": {"shadow": {"percent": 0}}}})


def test_walked_a_disagreeing_candidate_is_aborted_before_it_answers_a_client() -> None:
    from graphops.runtime.figures import ArmCounters

    def mirrored(requests: int, agreed: int) -> dict[str, object]:
        stats = ArmCounters()
        for _ in range(requests):
            stats.record(5.0, 200, 1, [])
        stats.compared, stats.agreed = requests, agreed
        return stats.state()

    edge = FakeEdge({})
    reads = iter(
        [
            (counters(0), mirrored(0, 0)),
            (counters(40), mirrored(20, 12)),  # 8 of 20 disagree
        ]
    )

    def read(step: Step):  # type: ignore[no-untyped-def]
        from graphops.controller.rollout.walk import Tally

        stable, mirror = next(reads)
        return Tally(at=edge.clock, stable=stable, candidate=None, mirror=mirror, path="p")

    edge.read = read  # type: ignore[method-assign]
    with pytest.raises(RolloutAborted, match="aborted at mirror 50%"):
        walk(STRATEGY, edge, record())
    moves = [e for e in edge.events if not e.startswith("log")]
    assert moves == ["start", "put mirror 50%", "abort", "revert aborted"]
    [aborted] = edge.reverted
    [step] = aborted.steps
    assert (step.share, step.mirror, step.decision) == (0, 50, "abort")
    assert step.candidate.requests == 0 and step.stable.requests == 40  # no client saw it
    assert step.mirrored is not None and (step.mirrored.compared, step.mirrored.agreed) == (20, 12)
    assert aborted.strategy == "shadow_canary" and aborted.policy["shadow"]["percent"] == 50
