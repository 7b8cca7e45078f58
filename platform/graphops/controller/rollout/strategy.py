"""The rollout-strategy interface: steps to walk, and a pure judge of each step's live figures.

A strategy decides; `graphops.controller.rollout.walk` does. A `Step` says how much of the live
traffic the candidate answers (``share``) and how much is copied to it with its answers
discarded (``mirror``); a `Reading` is what the stable version's ingress counted since the step
began; `RolloutStrategy.judge` turns one into a `Verdict`. No I/O here: unit tests call
``judge`` directly, as `graphops.features` stores are tried without a server.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import Field

from graphops._models import FrozenModel
from graphops.environments.rollout import RolloutConfig
from graphops.runtime.split import ArmFigures

Action = Literal["wait", "advance", "abort"]

NO_REQUESTS = ArmFigures(requests=0, errors=0, error_rate=0.0, p50_ms=None, p99_ms=None)
"""The figures of an arm that saw nothing (the candidate while it is only mirrored)."""


@dataclass(frozen=True)
class Step:
    """One judged step: the candidate's share of live answers and of mirrored copies (percent)."""

    share: float
    """Percent of the route's requests the candidate answers (its answers reach clients)."""
    mirror: float = 0.0
    """Percent of the requests copied to the candidate after the stable answered (discarded)."""

    @property
    def label(self) -> str:
        """How logs and records name the step: ``5%``, ``mirror 20%`` or ``5% + mirror 20%``."""
        parts = [f"{self.share:g}%"] if self.share or not self.mirror else []
        return " + ".join([*parts, *([f"mirror {self.mirror:g}%"] if self.mirror else [])])


class Reading(FrozenModel):
    """What the stable ingress counted over a step so far (deltas from the step's start)."""

    elapsed_s: Annotated[float, Field(ge=0, description="Seconds since the step's first reading.")]
    stable: Annotated[ArmFigures, Field(description="Requests the stable version answered.")]
    candidate: Annotated[
        ArmFigures, Field(description="Requests the candidate answered (its share).")
    ] = NO_REQUESTS
    mirror: Annotated[
        ArmFigures, Field(description="Copies the candidate answered, compared with the stable.")
    ] = NO_REQUESTS


@dataclass(frozen=True)
class Verdict:
    """What to do with a step now, and why (the sentence goes into the rollout's record)."""

    action: Action
    reason: str


class RolloutStrategy(ABC):
    """Base of the strategies: named, built from config, judged steps, a pure judge.

    A strategy with no steps is blue/green: `apply` starts the candidate, smoke-tests it and
    switches the route at once. Subclasses register in `graphops.controller.rollout.STRATEGIES`
    under ``name``, the value of ``rollout.strategy`` in ``environment.yaml``.
    """

    name: ClassVar[str]
    """Its ``rollout.strategy`` value."""
    poll_seconds: float = 1.0
    """How often the walker reads a step's figures."""

    @classmethod
    @abstractmethod
    def from_config(cls, rollout: RolloutConfig, graph: str) -> Self:
        """The strategy as ``rollout`` (``environment.yaml``'s section) sets it for ``graph``."""

    @abstractmethod
    def steps(self) -> tuple[Step, ...]:
        """The judged steps, in order; after the last one the candidate takes the route alone."""

    @abstractmethod
    def judge(self, step: Step, reading: Reading) -> Verdict:
        """Wait, advance or abort ``step`` after ``reading`` (pure: no I/O, no clock)."""

    def policy(self) -> dict[str, Any]:
        """The settings it judges by, as recorded with every rollout (``policy:``)."""
        return {}


__all__ = ["NO_REQUESTS", "Action", "Reading", "RolloutStrategy", "Step", "Verdict"]
