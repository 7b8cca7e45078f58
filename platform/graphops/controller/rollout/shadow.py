"""The shadow-then-canary strategy: mirrored first (its answers discarded), then canary steps.

First step: the stable ingress copies ``rollout.shadow.percent`` of the live requests to the
candidate after answering them itself, and compares the candidate's answers with its own (share
0: the candidate answers no client). It is judged on the mirrored requests, in this order:

- **errors**: abort as soon as the candidate's errors exceed what ``max_error_rate`` allows over
  ``max(requests, min_requests)``;
- **agreement**: abort as soon as its disagreements exceed what ``min_agreement`` allows over
  ``max(compared, min_requests)`` (even if every comparison still to come agreed, it could not
  pass);
- **too little traffic**: abort after ``max_seconds`` without ``min_requests`` compared;
- **wait** until both ``min_seconds`` and ``min_requests`` compared are reached;
- **latency**: abort when its p99 exceeds ``max_p99_ratio`` times the stable's;
- otherwise **advance** to the canary steps (``rollout.canary``), judged as `Canary` judges them.
"""

from __future__ import annotations

from typing import Any, Self

from graphops.controller.rollout.canary import judge_share
from graphops.controller.rollout.strategy import Reading, RolloutStrategy, Step, Verdict
from graphops.environments.rollout import CanaryConfig, RolloutConfig, ShadowConfig


class ShadowCanary(RolloutStrategy):
    """A mirrored step judged on errors, p99 and agreement, then the canary's shares."""

    name = "shadow_canary"

    def __init__(self, shadow: ShadowConfig, canary: CanaryConfig) -> None:
        self.shadow, self.canary = shadow, canary
        self.poll_seconds = canary.poll_seconds

    @classmethod
    def from_config(cls, rollout: RolloutConfig, graph: str) -> Self:
        """``rollout.shadow`` and ``rollout.canary``, each with ``graph``'s own fields over it."""
        return cls(rollout.section(graph, "shadow", ShadowConfig), rollout.canary_of(graph))

    def steps(self) -> tuple[Step, ...]:
        """The mirrored step, then one step per canary share below 100."""
        mirrored = Step(share=0, mirror=self.shadow.percent)
        return (mirrored, *(Step(share=s) for s in self.canary.judged))

    def judge(self, step: Step, reading: Reading) -> Verdict:
        """The mirrored step as the module docstring says; a share as `Canary` judges it."""
        if step.share:
            return judge_share(
                self.canary, step.share, reading.elapsed_s, reading.stable, reading.candidate
            )
        policy, seen, elapsed = self.shadow, reading.mirror, reading.elapsed_s
        at = f"at {step.label}"
        n, errors, compared = seen.requests, seen.errors, seen.compared
        if errors > policy.max_error_rate * max(n, policy.min_requests):
            return Verdict(
                "abort",
                f"{at}: the candidate failed {errors} of {n} mirrored requests, above "
                f"max_error_rate {policy.max_error_rate:.1%} (over at least {policy.min_requests}).",
            )
        differ = compared - seen.agreed
        allowed = round((1 - policy.min_agreement) * max(compared, policy.min_requests), 9)
        if differ > allowed:  # rounded: 1 - 0.9 is not 0.1 in binary
            return Verdict(
                "abort",
                f"{at}: the candidate disagreed with the stable on {differ} of {compared} "
                f"compared requests, below min_agreement {policy.min_agreement:.1%} (over at "
                f"least {policy.min_requests}).",
            )
        if compared < policy.min_requests and elapsed >= policy.max_seconds:
            return Verdict(
                "abort",
                f"{at}: only {compared} of min_requests {policy.min_requests} mirrored requests "
                f"compared in {elapsed:.0f} s (max_seconds {policy.max_seconds:g}): too little "
                "traffic to judge.",
            )
        if compared < policy.min_requests or elapsed < policy.min_seconds:
            return Verdict(
                "wait",
                f"{at}: {compared}/{policy.min_requests} compared, "
                f"{elapsed:.0f}/{policy.min_seconds:g} s.",
            )
        ours, theirs = seen.p99_ms, reading.stable.p99_ms
        if theirs and ours and ours > policy.max_p99_ratio * theirs:
            return Verdict(
                "abort",
                f"{at}: the candidate's p99 {ours:g} ms is {ours / theirs:.2f}x the stable's "
                f"{theirs:g} ms, above max_p99_ratio {policy.max_p99_ratio:g}.",
            )
        return Verdict(
            "advance",
            f"{at}: {errors} errors in {n} mirrored requests, agreed on {seen.agreed} of "
            f"{compared} ({seen.agreed / compared:.1%}), after {elapsed:.0f} s.",
        )

    def policy(self) -> dict[str, Any]:
        """The canary section, and the shadow section under ``shadow``."""
        return {
            **self.canary.model_dump(mode="json"),
            "shadow": self.shadow.model_dump(mode="json"),
        }


__all__ = ["ShadowCanary"]
