"""Offline operators: a plan's stages grouped into Ray Data operators, and their pool sizes.

Online, every stage is a Serve deployment. Offline, a CPU stage next to a model stage runs inside
the model stage's actor (co-location), so its batches never cross the object store between cheap
steps; everything else is one ``map_batches`` per stage. Pure functions of the plan and of the
cluster's size: no Ray here (the runtime passes ``ray.cluster_resources()`` in).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from graphops.graph import Batching, Resources, Scaling
from graphops.planner._planner import Boundary, Plan, Stage

CPU_BATCH_SIZE = 1024
"""Rows per batch of an operator without a model (model operators use `Batching.offline_rows`)."""


@dataclass(frozen=True)
class Operator:
    """One ``map_batches`` of an offline run: one stage, or a model stage and its CPU neighbours.

    Attributes:
        name: The operator's name (its model stage's when it has one).
        stages: The stages it runs, in order, in one process.
        resources: What each task or actor reserves (the model stage's when co-located).
        scaling: Scaling of the stage that decides the pool (the model stage's).
        colocated: Names of the CPU stages run inside the model stage's actor.
    """

    name: str
    stages: tuple[Stage, ...]
    resources: Resources
    scaling: Scaling
    colocated: tuple[str, ...] = ()

    @property
    def model_stage(self) -> Stage | None:
        """The stage holding models, if any (an operator holds at most one)."""
        return next((s for s in self.stages if s.model_nodes), None)

    @property
    def actors(self) -> bool:
        """Whether it runs in an actor pool (it loads a model once per actor)."""
        return self.model_stage is not None

    @property
    def batching(self) -> Batching | None:
        """Batching of its model stage, if any."""
        model = self.model_stage
        return model.batching if model else None

    @property
    def batch_size(self) -> int:
        """Rows per batch: the model's `Batching.offline_rows`, else `CPU_BATCH_SIZE`."""
        b = self.batching
        return b.offline_rows if b else CPU_BATCH_SIZE

    @property
    def inputs(self) -> tuple[str, ...]:
        """Columns it reads that none of its own stages produce."""
        produced: set[str] = set()
        inputs: dict[str, None] = {}
        for stage in self.stages:
            inputs.update((c, None) for c in stage.inputs if c not in produced)
            produced.update(stage.outputs)
        return tuple(inputs)

    @property
    def outputs(self) -> tuple[str, ...]:
        """Columns its last stage hands on (earlier stages' columns stay inside it)."""
        return self.stages[-1].outputs


def can_colocate(cpu: Stage, model: Stage) -> bool:
    """Whether CPU stage ``cpu`` may run inside ``model``'s actor.

    Only a stage the planner fused by itself (kind `Boundary.CPU`: no model, no GPU, no explicit
    ``stage=`` name, not an unfused plan) whose reservation the actor covers: no more CPUs and
    memory than the model stage reserves.
    """
    if cpu.kind is not Boundary.CPU or cpu.model_nodes or cpu.resources.needs_gpu:
        return False
    if cpu.resources.cpus > model.resources.cpus:
        return False
    memory, actor_memory = cpu.resources.memory, model.resources.memory
    return memory is None or (actor_memory is not None and memory <= actor_memory)


def offline_operators(the_plan: Plan, *, colocate: bool = True) -> tuple[Operator, ...]:
    """Group ``the_plan``'s stages into the operators of an offline run.

    A CPU stage that may run in a neighbouring model stage's actor (`can_colocate`) joins it: the
    model stage before it (postprocessing) first, else the one after it (preprocessing).
    Every other stage is an operator of its own.

    Args:
        the_plan: The plan (fused or not; an unfused plan co-locates nothing).
        colocate: ``False`` gives one operator per stage (to measure what co-location buys).
    """
    stages = the_plan.stages
    owner: list[int] = list(range(len(stages)))  # index of the stage whose operator runs it
    if colocate:
        for i, stage in enumerate(stages):
            if stage.model_nodes:
                continue
            before = i - 1 if i > 0 and stages[i - 1].model_nodes else None
            after = i + 1 if i + 1 < len(stages) and stages[i + 1].model_nodes else None
            for j in (before, after):
                if j is not None and can_colocate(stage, stages[j]):
                    owner[i] = j
                    break
    operators: list[Operator] = []
    for i, stage in enumerate(stages):
        group = [s for s, o in zip(stages, owner, strict=True) if o == i]
        if not group:
            continue
        anchor = stage
        operators.append(
            Operator(
                name=anchor.name,
                stages=tuple(group),
                resources=anchor.resources,
                scaling=anchor.scaling,
                colocated=tuple(s.name for s in group if s is not anchor),
            )
        )
    return tuple(operators)


def pool_size(
    operator: Operator, cpus: float, gpus: float, *, others: float = 0.0
) -> tuple[int, int]:
    """(min, max) actors of a model operator on a cluster with ``cpus`` CPUs and ``gpus`` GPUs.

    A node's offline setting wins (`Scaling.offline_replicas`, then its autoscaling bounds);
    otherwise the pool starts at one actor and may grow to what the cluster holds: the GPUs over
    the operator's GPU request where it asks for GPUs and the cluster has them, else the CPUs left
    once ``others`` (what the other operators reserve) are set aside, over its CPU request.

    Args:
        operator: A model operator (see `Operator.actors`).
        cpus: The cluster's CPUs.
        gpus: The cluster's GPUs.
        others: CPUs the other operators of the run reserve (their tasks must still run).
    """
    s = operator.scaling
    if s.offline_replicas is not None:
        return s.offline_replicas, s.offline_replicas
    if s.autoscaling:
        assert s.max_replicas is not None  # autoscaling means both bounds are set
        return max(s.min_replicas or 1, 1), s.max_replicas
    r = operator.resources
    if r.needs_gpu and gpus > 0:
        fits = math.floor(gpus / r.gpus + 1e-9)
    elif r.cpus > 0:
        fits = math.floor(max(cpus - others, 0.0) / r.cpus + 1e-9)
    else:
        fits = math.floor(cpus) or 1
    return 1, max(fits, s.replicas, 1)


BLOCKS_PER_CPU = 2
"""Input blocks per cluster CPU an offline read aims for (see `read_blocks`)."""


def read_blocks(cpus: float) -> int:
    """The fewest input blocks a read should make on a cluster with ``cpus`` CPUs.

    Ray Data's default (``DataContext.read_op_min_num_blocks``, 200) splits a small input into
    hundreds of blocks, and every block costs each operator a task or an actor call and the
    write a file: on 2 CPUs, 200,000 rows took 18-32 s in 112 blocks and 10-16 s in 8
    (docs/performance.md). Two blocks per CPU keep every worker busy; files still give at least
    one block each and Ray still splits blocks above its target size.
    """
    return max(BLOCKS_PER_CPU * math.floor(cpus), 1)
