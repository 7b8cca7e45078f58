"""The blue/green strategy: no judged step; the candidate takes the route once it answers its smoke.

`apply` starts every blue/green candidate beside the running versions, smoke-tests them and
switches their routes in one config (`graphops.controller.apply`); the walker has nothing to walk.
"""

from __future__ import annotations

from typing import Self

from graphops.controller.rollout.strategy import Reading, RolloutStrategy, Step, Verdict
from graphops.environments.rollout import RolloutConfig


class BlueGreen(RolloutStrategy):
    """Smoke test, then the whole route at once (the default)."""

    name = "blue_green"

    @classmethod
    def from_config(cls, rollout: RolloutConfig, graph: str) -> Self:
        """Nothing to configure."""
        return cls()

    def steps(self) -> tuple[Step, ...]:
        """None: the switch follows the smoke test."""
        return ()

    def judge(self, step: Step, reading: Reading) -> Verdict:
        """Never asked (no steps); advances."""
        return Verdict("advance", "blue/green: nothing to judge")


__all__ = ["BlueGreen"]
