"""The canary strategy: the candidate answers growing shares of the route, each step judged.

Its steps are ``rollout.canary.steps`` below 100 (`graphops.environments.CanaryConfig`); `judge`
decides each from the candidate's and the stable's figures over the step, in this order:

- **errors**: abort as soon as the candidate's errors exceed what ``max_error_rate`` allows over
  ``max(requests, min_requests)``: even if every request still to come succeeded, the step could
  not pass (so a candidate failing 20% is stopped after a few of its requests);
- **too little traffic**: abort after ``max_seconds`` without ``min_requests``;
- **wait** until both ``min_seconds`` and ``min_requests`` are reached;
- **latency**: abort when the candidate's p99 exceeds ``max_p99_ratio`` times the stable's
  (skipped, and said so, when the stable answered nothing in the step);
- otherwise **advance**.
"""

from __future__ import annotations

from typing import Any, Self

from graphops.controller.rollout.strategy import Reading, RolloutStrategy, Step, Verdict
from graphops.environments.rollout import CanaryConfig, RolloutConfig
from graphops.runtime.split import ArmFigures


class Canary(RolloutStrategy):
    """Growing shares of live traffic (``rollout.canary``), judged on errors and p99."""

    name = "canary"

    def __init__(self, config: CanaryConfig) -> None:
        self.config = config
        self.poll_seconds = config.poll_seconds

    @classmethod
    def from_config(cls, rollout: RolloutConfig, graph: str) -> Self:
        """``rollout.canary`` with ``graph``'s own fields over it."""
        return cls(rollout.canary_of(graph))

    def steps(self) -> tuple[Step, ...]:
        """One step per share below 100."""
        return tuple(Step(share=s) for s in self.config.judged)

    def judge(self, step: Step, reading: Reading) -> Verdict:
        """See the module docstring."""
        return judge_share(
            self.config, step.share, reading.elapsed_s, reading.stable, reading.candidate
        )

    def policy(self) -> dict[str, Any]:
        """The canary section (as records before strategies had their own files wrote it)."""
        return self.config.model_dump(mode="json")


def judge_share(
    policy: CanaryConfig,
    share: float,
    elapsed_s: float,
    stable: ArmFigures,
    candidate: ArmFigures,
) -> Verdict:
    """Advance, abort or wait, for a step at ``share`` percent after ``elapsed_s`` seconds."""
    n, errors = candidate.requests, candidate.errors
    allowed = policy.max_error_rate * max(n, policy.min_requests)
    at = f"at {share:g}%"
    if errors > allowed:
        rate = errors / n if n else 1.0
        return Verdict(
            "abort",
            f"{at}: the candidate failed {errors} of {n} requests ({rate:.1%}), above "
            f"max_error_rate {policy.max_error_rate:.1%} (over at least {policy.min_requests}).",
        )
    if n < policy.min_requests and elapsed_s >= policy.max_seconds:
        return Verdict(
            "abort",
            f"{at}: only {n} of min_requests {policy.min_requests} reached the candidate in "
            f"{elapsed_s:.0f} s (max_seconds {policy.max_seconds:g}): too little traffic to judge.",
        )
    if n < policy.min_requests or elapsed_s < policy.min_seconds:
        return Verdict(
            "wait",
            f"{at}: {n}/{policy.min_requests} requests, {elapsed_s:.0f}/{policy.min_seconds:g} s.",
        )
    ours, theirs = candidate.p99_ms, stable.p99_ms
    if theirs and ours and ours > policy.max_p99_ratio * theirs:
        return Verdict(
            "abort",
            f"{at}: the candidate's p99 {ours:g} ms is {ours / theirs:.2f}x the stable's "
            f"{theirs:g} ms, above max_p99_ratio {policy.max_p99_ratio:g}.",
        )
    latency = (
        f"p99 {ours:g} ms vs stable {theirs:g} ms"
        if theirs and ours
        else "p99 not compared (the stable answered nothing in the step)"
    )
    return Verdict(
        "advance",
        f"{at}: {errors} errors in {n} requests ({errors / n:.1%}), {latency}, "
        f"after {elapsed_s:.0f} s.",
    )


__all__ = ["Canary", "judge_share"]
