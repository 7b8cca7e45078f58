"""The walker: runs any `RolloutStrategy`, with every piece of I/O behind an `Edge`.

`walk` starts the candidate beside the stable version (the edge smoke-tests it and restores the
previous config when it fails), then for each of the strategy's steps sets the split, reads the
stable ingress's totals every ``poll_seconds`` and asks ``strategy.judge`` about what happened
since the step's first reading, until the verdict is not ``wait``. On **abort** the edge sets
the split to zero, drops it and removes the candidate, then makes git say so (`Edge.revert`),
and `walk` raises `RolloutAborted`. After the last step it returns the promoted record: the
caller (`graphops.controller.apply`) switches the route to the candidate and retires the old
version, as for blue/green. The edge on a cluster is `graphops.controller.rollout.edge`; unit
tests pass a fake one.
"""

from __future__ import annotations

from typing import Annotated, Protocol

from pydantic import Field

from graphops._models import FrozenModel
from graphops.controller.rollout.record import RolloutRecord, StepRecord
from graphops.controller.rollout.strategy import (
    NO_REQUESTS,
    Reading,
    RolloutStrategy,
    Step,
    Verdict,
)
from graphops.errors import ApplyError
from graphops.runtime.figures import Raw, delta, figures_of
from graphops.runtime.split import ArmFigures


class RolloutAborted(ApplyError):
    """A rollout was aborted: the stable version serves alone again and git says so."""


class Tally(FrozenModel):
    """One reading of a split: each arm's totals since the split began, and when it was read."""

    at: Annotated[float, Field(description="When it was read (monotonic seconds).")]
    stable: Annotated[Raw, Field(description="The stable version's raw totals.")]
    candidate: Annotated[Raw | None, Field(description="The candidate's, answering its share.")]
    mirror: Annotated[Raw | None, Field(description="The candidate's, answering copies.")]
    path: Annotated[str, Field(description="no hop (same code) or via its ingress.")]


class Edge(Protocol):
    """The I/O of one rollout: a cluster, a clock, git and MLflow (a fake one in unit tests)."""

    def start(self) -> None:
        """Start the candidate beside the stable version and smoke-test it.

        Raises:
            ApplyError: It failed; the previous config is restored.
        """

    def put(self, step: Step) -> None:
        """Set the stable ingress's split for ``step`` (an in-place update)."""

    def read(self, step: Step) -> Tally:
        """The split's totals, once the stable ingress answers with ``step``'s split."""

    def abort(self) -> None:
        """Split to zero, then dropped; the candidate removed: the stable serves alone."""

    def revert(self, record: RolloutRecord) -> str:
        """Record the aborted rollout and make git name the stable version; what git says now."""

    def sleep(self, seconds: float) -> None:
        """Wait between readings."""

    def now(self) -> str:
        """The wall-clock time records write (UTC, ISO 8601)."""

    def log(self, message: str) -> None:
        """Say what happens."""


def figures(after: Raw | None, before: Raw | None) -> ArmFigures:
    """What an arm did between two readings of its totals (`NO_REQUESTS` without any)."""
    return NO_REQUESTS if after is None else figures_of(delta(after, before))


def reading(first: Tally, last: Tally) -> Reading:
    """The figures of a step between its first reading and its last."""
    return Reading(
        elapsed_s=max(last.at - first.at, 0.0),
        stable=figures(last.stable, first.stable),
        candidate=figures(last.candidate, first.candidate),
        mirror=figures(last.mirror, first.mirror),
    )


def walk_step(strategy: RolloutStrategy, step: Step, edge: Edge, graph: str) -> StepRecord:
    """Set ``step``'s split and read it until the strategy decides; the step's record."""
    edge.put(step)
    started = edge.now()
    first = edge.read(step)
    while True:
        edge.sleep(strategy.poll_seconds)
        last = edge.read(step)
        seen = reading(first, last)
        verdict: Verdict = strategy.judge(step, seen)
        if verdict.action != "wait":
            break
    edge.log(f"{graph} at {step.label}: {verdict.action}: {verdict.reason}")
    return StepRecord(
        share=step.share,
        mirror=step.mirror,
        started=started,
        ended=edge.now(),
        seconds=round(seen.elapsed_s, 1),
        decision="advance" if verdict.action == "advance" else "abort",
        reason=verdict.reason,
        path=last.path,
        stable=seen.stable,
        candidate=seen.candidate,
        mirrored=seen.mirror if step.mirror else None,
    )


def walk(strategy: RolloutStrategy, edge: Edge, record: RolloutRecord) -> RolloutRecord:
    """Start the candidate and walk every judged step; the promoted record (module docstring).

    Raises:
        ApplyError: The candidate failed to start or to answer its smoke example (the stable
            version is left serving alone, nothing recorded).
        RolloutAborted: A step aborted: the stable serves alone, git says so, the record is
            committed (and in MLflow).
    """
    edge.start()
    record.started, record.strategy, record.policy = edge.now(), strategy.name, strategy.policy()
    steps = strategy.steps()
    labels = ", ".join(s.label for s in steps)
    edge.log(f"{strategy.name} of {record.graph}: steps {labels}, then /{record.graph} alone")
    for step in steps:
        done = walk_step(strategy, step, edge, record.graph)
        record.steps.append(done)
        if done.decision == "abort":
            edge.abort()
            record.outcome, record.reason, record.ended = "aborted", done.reason, edge.now()
            said = edge.revert(record)
            raise RolloutAborted(
                f"{record.env}: the rollout ({strategy.name}) of {record.graph} "
                f"{record.candidate} was aborted {record.reason} {record.stable} serves "
                f"/{record.graph} alone again and {said}.",
                fix=f"See `graphops status` and environments/{record.env}/rollouts.yaml; fix "
                "the version and promote a new one.",
            )
    record.outcome, record.ended = "promoted", edge.now()
    record.reason = f"passed {len(steps)} steps; takes /{record.graph} alone"
    return record


__all__ = ["Edge", "RolloutAborted", "Tally", "figures", "reading", "walk", "walk_step"]
