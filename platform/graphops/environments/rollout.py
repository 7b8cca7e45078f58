"""The ``rollout:`` section of `environment.yaml`: which strategy moves a graph to a new version.

Public: each strategy of `graphops.controller.rollout` imports its own section from here
(``canary:``, ...). A section is overridable per graph under ``rollout.graphs.<graph>.<section>``,
checked merged over the environment's, so an unknown key or a bad value names the graph.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, field_validator, model_validator

from graphops._models import FrozenModel

Strategy = Literal["blue_green", "canary", "shadow_canary"]
"""The strategies `graphops.controller.rollout.STRATEGIES` registers, by name."""

Section = TypeVar("Section", bound=FrozenModel)


class CanaryConfig(FrozenModel):
    """How a canary rollout walks its steps and judges the candidate at each one."""

    steps: Annotated[
        tuple[float, ...],
        Field(
            min_length=1,
            description="Traffic shares (percent) of the candidate, increasing; each below 100 "
            "is judged; after the last the candidate takes the route alone (a final 100 is "
            "that end, written or not).",
        ),
    ] = (5, 25, 50, 100)
    min_seconds: Annotated[
        float, Field(ge=0, description="Shortest time a step lasts before it may advance.")
    ] = 30
    min_requests: Annotated[
        int,
        Field(
            ge=1, description="Requests the candidate must answer in a step before it is judged."
        ),
    ] = 50
    max_seconds: Annotated[
        float,
        Field(
            gt=0,
            description="A step that has not seen min_requests by then aborts (too little "
            "traffic to judge is no proof of health).",
        ),
    ] = 600
    max_error_rate: Annotated[
        float,
        Field(ge=0, le=1, description="Highest share of 5xx answers of the candidate in a step."),
    ] = 0.01
    max_p99_ratio: Annotated[
        float,
        Field(
            ge=1,
            description="Highest candidate p99 / stable p99 in a step (both as the stable "
            "version's ingress sees them).",
        ),
    ] = 1.5
    poll_seconds: Annotated[
        float,
        Field(gt=0, description="How often a step's figures are read from the stable ingress."),
    ] = 1.0

    @field_validator("steps")
    @classmethod
    def _increasing(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 < v <= 100 for v in value):
            raise ValueError("every canary step is a share in percent, above 0 and at most 100")
        if any(b <= a for a, b in itertools.pairwise(value)):
            raise ValueError("canary steps must increase, e.g. [5, 25, 50, 100]")
        return value

    @property
    def judged(self) -> tuple[float, ...]:
        """The steps that are judged (those below 100)."""
        return tuple(v for v in self.steps if v < 100)


class ShadowConfig(FrozenModel):
    """How ``shadow_canary`` mirrors live traffic to the candidate and judges its answers."""

    percent: Annotated[
        float,
        Field(
            gt=0,
            le=100,
            description="Percent of live requests copied to the candidate after the stable "
            "answered them (its answers are compared, never returned).",
        ),
    ] = 20
    min_seconds: Annotated[
        float, Field(ge=0, description="Shortest time the mirrored step lasts.")
    ] = 30
    min_requests: Annotated[
        int,
        Field(ge=1, description="Mirrored requests compared with the stable's answers first."),
    ] = 50
    max_seconds: Annotated[
        float,
        Field(gt=0, description="Without min_requests compared by then, it aborts."),
    ] = 600
    max_error_rate: Annotated[
        float, Field(ge=0, le=1, description="Highest share of failed mirrored requests.")
    ] = 0.01
    max_p99_ratio: Annotated[
        float, Field(ge=1, description="Highest candidate p99 / stable p99 while mirrored.")
    ] = 1.5
    min_agreement: Annotated[
        float,
        Field(
            ge=0,
            le=1,
            description="Lowest share of compared requests whose main output equals the "
            "stable's (floats within 1e-6).",
        ),
    ] = 0.99


class GraphRollout(FrozenModel):
    """One graph's rollout, where it differs from the environment's."""

    strategy: Annotated[Strategy | None, Field(description="None: the environment's.")] = None
    canary: Annotated[
        dict[str, Any],
        Field(description="Fields of the canary section that differ for this graph."),
    ] = {}
    shadow: Annotated[
        dict[str, Any],
        Field(description="Fields of the shadow section that differ for this graph."),
    ] = {}


class RolloutConfig(FrozenModel):
    """How `apply` moves a graph's stable route to a new version (see promote-and-rollback.md)."""

    strategy: Annotated[
        Strategy,
        Field(
            description="blue_green: the new version takes the route at once after its smoke "
            "test; canary: the stable version's ingress gives it growing shares of the route, "
            "judged on live figures, and it is aborted on a failed step; shadow_canary: first "
            "a copy of some live requests (its answers compared with the stable's, discarded), "
            "then the canary's steps."
        ),
    ] = "blue_green"
    canary: CanaryConfig = CanaryConfig()
    shadow: Annotated[
        ShadowConfig, Field(description="shadow_canary's mirrored step (then canary's steps).")
    ] = ShadowConfig()
    graphs: Annotated[
        dict[str, GraphRollout],
        Field(description="Graph name -> its own strategy and section fields."),
    ] = {}

    def strategy_of(self, graph: str) -> Strategy:
        """The strategy that applies to ``graph``."""
        own = self.graphs.get(graph)
        return own.strategy if own is not None and own.strategy is not None else self.strategy

    def section(self, graph: str, name: str, model: type[Section]) -> Section:
        """Section ``name`` as it applies to ``graph``: its own fields over the environment's."""
        base: Section = getattr(self, name)
        own = self.graphs.get(graph)
        fields: dict[str, Any] = getattr(own, name) if own is not None else {}
        return model.model_validate(base.model_dump() | fields) if fields else base

    def canary_of(self, graph: str) -> CanaryConfig:
        """The canary section that applies to ``graph``."""
        return self.section(graph, "canary", CanaryConfig)

    @model_validator(mode="after")
    def _graph_sections_valid(self) -> RolloutConfig:
        for graph, own in self.graphs.items():
            for name in GraphRollout.model_fields:
                if name == "strategy" or not getattr(own, name):
                    continue
                model = type(getattr(self, name))
                try:
                    self.section(graph, name, model)
                except ValueError as exc:
                    raise ValueError(f"rollout.graphs.{graph}.{name}: {exc}") from None
        return self


__all__ = ["CanaryConfig", "GraphRollout", "RolloutConfig", "ShadowConfig", "Strategy"]
