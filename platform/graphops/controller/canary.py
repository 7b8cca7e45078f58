"""Canary decisions as pure functions: judge one step of a rollout from its per-arm figures.

`graphops.controller.rollout` walks the steps on a cluster and calls `judge` on every reading;
unit tests call it directly. Figures are raw counters of the two arms (`ArmCounters.state`) as the
stable version's splitting ingress counts them (merged across its replicas), already reduced to
what happened during the step (the ingress keeps totals; the rollout diffs the reading at the
step's start from the current one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from graphops.environments import CanaryConfig

Action = Literal["wait", "advance", "abort"]


@dataclass(frozen=True)
class Verdict:
    """What to do with a step now, and why (the sentence goes into the rollout's record)."""

    action: Action
    reason: str


def figures(raw: dict[str, Any]) -> dict[str, Any]:
    """Requests, errors, error rate, p50/p99 (ms) of raw counters: what a step records per arm."""
    from graphops.runtime.figures import figures_of

    return figures_of(raw).model_dump(
        include={"requests", "errors", "error_rate", "p50_ms", "p99_ms"}
    )


def judge(
    policy: CanaryConfig,
    share: float,
    elapsed_s: float,
    stable: dict[str, Any],
    candidate: dict[str, Any],
) -> Verdict:
    """Advance, abort or wait, for a step at ``share`` percent after ``elapsed_s`` seconds.

    ``stable`` and ``candidate`` are the step's figures (`figures`). In order:

    - **errors**: abort as soon as the candidate's errors exceed what ``max_error_rate`` allows
      over ``max(requests, min_requests)``: even if every request still to come succeeded, the
      step could not pass (so a candidate failing 20% is stopped after a few of its requests);
    - **too little traffic**: abort after ``max_seconds`` without ``min_requests``;
    - **wait** until both ``min_seconds`` and ``min_requests`` are reached;
    - **latency**: abort when the candidate's p99 exceeds ``max_p99_ratio`` times the stable's
      (skipped, and said so, when the stable answered nothing in the step);
    - otherwise **advance**.
    """
    n, errors = candidate["requests"], candidate["errors"]
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
    ours, theirs = candidate.get("p99_ms"), stable.get("p99_ms")
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


def shares(policy: CanaryConfig) -> tuple[float, ...]:
    """The candidate's shares, step by step, ending at 100 (the candidate alone, no router)."""
    return (*policy.judged, 100.0)


__all__ = ["Verdict", "figures", "judge", "shares"]
