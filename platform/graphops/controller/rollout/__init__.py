"""Rollouts: how `apply` moves a graph's route to a new version, one strategy at a time.

A strategy (`RolloutStrategy`, in `strategy`) decides: its judged steps, and a pure ``judge`` of
each step's live figures. The walker (`walk`) does, with its I/O at an `Edge`
(`edge.ClusterEdge` on a cluster). Every rollout with steps leaves a `RolloutRecord` (`record`)
in git and MLflow (`recording`). Strategies are chosen by ``rollout.strategy`` in
``environment.yaml`` (per graph under ``rollout.graphs``), from `STRATEGIES`:

- ``blue_green`` (`blue_green`): no judged step; the candidate takes the route after its smoke;
- ``canary`` (`canary`): growing shares of the live traffic, judged on errors and p99;
- ``shadow_canary`` (`shadow`): first mirrored (answers compared, discarded), then canary steps.
"""

from graphops.controller.rollout.blue_green import BlueGreen
from graphops.controller.rollout.canary import Canary
from graphops.controller.rollout.edge import interrupted_stable, rollouts_due, run_rollout
from graphops.controller.rollout.record import RolloutRecord, StepRecord, load_records
from graphops.controller.rollout.recording import record_again, record_rollout
from graphops.controller.rollout.shadow import ShadowCanary
from graphops.controller.rollout.strategy import Reading, RolloutStrategy, Step, Verdict
from graphops.controller.rollout.walk import Edge, RolloutAborted, walk
from graphops.environments.rollout import RolloutConfig

STRATEGIES: dict[str, type[RolloutStrategy]] = {
    "blue_green": BlueGreen,
    "canary": Canary,
    "shadow_canary": ShadowCanary,
}
"""``rollout.strategy`` -> its class (`graphops.environments.Strategy` lists the same names)."""


def strategy_for(rollout: RolloutConfig, graph: str) -> RolloutStrategy:
    """The strategy ``rollout`` (an environment's section) sets for ``graph``, configured."""
    return STRATEGIES[rollout.strategy_of(graph)].from_config(rollout, graph)


__all__ = [
    "STRATEGIES",
    "Edge",
    "Reading",
    "RolloutAborted",
    "RolloutRecord",
    "RolloutStrategy",
    "Step",
    "StepRecord",
    "Verdict",
    "interrupted_stable",
    "load_records",
    "record_again",
    "record_rollout",
    "rollouts_due",
    "run_rollout",
    "strategy_for",
    "walk",
]
