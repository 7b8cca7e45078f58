"""From a plan to Serve deployments: which stage runs where, with what resources (pure, no Ray).

The ingress deployment answers HTTP and runs, in its own process, every CPU stage that keeps the
default scaling: a hand-written Serve app does its pre- and postprocessing in the ingress too, and
every stage kept out of it costs a DeploymentHandle hop (+4-6 ms here) and a serialization. Model
stages, GPU stages, explicit ``stage=`` groups and CPU stages with their own scaling get a
deployment of their own. Compiled without fusion, every node is its own deployment and the ingress
only speaks HTTP: that is what fusion is measured against.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from graphops.errors import PlanError, did_you_mean
from graphops.graph import Scaling
from graphops.plan import Boundary, Plan, Stage

INGRESS = "ingress"
"""Name of the HTTP ingress deployment of every graph application."""

INGRESS_CPUS = 0.1
"""CPUs the ingress reserves when it runs no stage itself (it parses JSON and awaits handles)."""

INGRESS_MAX_ONGOING = 256
"""The ingress mostly awaits handles, so it holds many requests at once."""

STAGE_MAX_ONGOING = 64
"""A remote CPU stage without batching; enough in flight to keep its replica busy."""


class DeploymentOverride(BaseModel):
    """An environment's change to one deployment (scaling and resources), by deployment name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    replicas: Annotated[int | None, Field(ge=1, description="Fixed replica count.")] = None
    min_replicas: Annotated[int | None, Field(ge=0, description="Autoscaling lower bound.")] = None
    max_replicas: Annotated[int | None, Field(ge=1, description="Autoscaling upper bound.")] = None
    cpus: Annotated[float | None, Field(ge=0, description="CPUs per replica.")] = None
    gpus: Annotated[float | None, Field(ge=0, description="GPUs per replica.")] = None
    max_ongoing_requests: Annotated[
        int | None, Field(ge=1, description="Requests one replica holds at once.")
    ] = None


class DeploymentSpec(BaseModel):
    """One Serve deployment of a graph application, as the compiler decided it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(description="Deployment name (unique in the application).")]
    stages: Annotated[tuple[str, ...], Field(description="Plan stages it runs, in order.")]
    nodes: Annotated[tuple[str, ...], Field(description="Nodes it runs, in order.")]
    cpus: Annotated[float, Field(description="CPUs per replica.")]
    gpus: Annotated[float, Field(description="GPUs per replica.")] = 0.0
    memory: Annotated[int | None, Field(description="Memory per replica in bytes.")] = None
    scaling: Annotated[Scaling, Field(description="Replicas or autoscaling bounds.")]
    max_ongoing_requests: Annotated[int, Field(description="Requests one replica holds at once.")]
    max_batch_size: Annotated[int | None, Field(description="Dynamic batching: largest batch.")] = (
        None
    )
    batch_wait_timeout_s: Annotated[
        float | None, Field(description="Dynamic batching: longest wait for a batch.")
    ] = None

    def options(self) -> dict[str, Any]:
        """Keyword arguments for ``Deployment.options`` (Ray Serve's own names)."""
        actor: dict[str, Any] = {"num_cpus": self.cpus}
        if self.gpus:
            actor["num_gpus"] = self.gpus
        if self.memory:
            actor["memory"] = self.memory
        out: dict[str, Any] = {
            "name": self.name,
            "ray_actor_options": actor,
            "max_ongoing_requests": self.max_ongoing_requests,
            # Serve's per-request access log costs time on every call; errors are still logged.
            "logging_config": {"enable_access_log": False},
        }
        s = self.scaling
        if s.autoscaling:
            out["autoscaling_config"] = {
                "min_replicas": s.min_replicas,
                "max_replicas": s.max_replicas,
                "initial_replicas": s.replicas,
                "target_ongoing_requests": s.target_ongoing_requests,
            }
        else:
            out["num_replicas"] = s.replicas
        return out


def in_ingress(stage: Stage) -> bool:
    """Whether ``stage`` runs inside the ingress process (fused plan, CPU, default scaling)."""
    return stage.kind is Boundary.CPU and stage.scaling == Scaling()


def deployment_specs(
    the_plan: Plan,
    *,
    overrides: dict[str, DeploymentOverride] | None = None,
    cpu_only: bool = False,
    cpu_budget: float | None = None,
) -> list[DeploymentSpec]:
    """The deployments of a graph application: the ingress first, then one per remote stage.

    Args:
        the_plan: The graph's plan (fused or not).
        overrides: Per-deployment changes from an environment, by deployment name.
        cpu_only: The cluster has no GPUs: GPU requests become 0 (the stage stays apart).
        cpu_budget: Scale every CPU request down proportionally when their sum exceeds this
            (a laptop or CI machine smaller than production); None keeps them as declared.

    Raises:
        PlanError: An override names no deployment of this graph.
    """
    local = [s for s in the_plan.stages if in_ingress(s)]
    specs = [
        DeploymentSpec(
            name=INGRESS,
            stages=tuple(s.name for s in local),
            nodes=tuple(n.name for s in local for n in s.nodes),
            cpus=max((s.resources.cpus for s in local), default=INGRESS_CPUS) or INGRESS_CPUS,
            memory=max((s.resources.memory or 0 for s in local), default=0) or None,
            scaling=Scaling(),
            max_ongoing_requests=INGRESS_MAX_ONGOING,
        )
    ]
    for stage in the_plan.stages:
        if in_ingress(stage):
            continue
        batching = stage.batching
        specs.append(
            DeploymentSpec(
                name=stage.name,
                stages=(stage.name,),
                nodes=tuple(n.name for n in stage.nodes),
                cpus=stage.resources.cpus,
                gpus=stage.resources.gpus,
                memory=stage.resources.memory,
                scaling=stage.scaling,
                # Twice the batch size: one batch runs while the next one fills.
                max_ongoing_requests=2 * batching.max_batch_size if batching else STAGE_MAX_ONGOING,
                max_batch_size=batching.max_batch_size if batching else None,
                batch_wait_timeout_s=batching.max_wait_ms / 1000 if batching else None,
            )
        )
    specs = _overridden(the_plan, specs, overrides or {})
    if cpu_only:
        specs = [s.model_copy(update={"gpus": 0.0}) for s in specs]
    total = sum(s.cpus * s.scaling.replicas for s in specs)
    if cpu_budget is not None and total > cpu_budget:
        factor = cpu_budget / total
        specs = [s.model_copy(update={"cpus": round(s.cpus * factor, 4)}) for s in specs]
    return specs


def _overridden(
    the_plan: Plan, specs: list[DeploymentSpec], overrides: dict[str, DeploymentOverride]
) -> list[DeploymentSpec]:
    names = [s.name for s in specs]
    unknown = [k for k in overrides if k not in names]
    if unknown:
        raise PlanError(
            f'Got "{unknown[0]}" as a deployment to override; graph "{the_plan.graph.name}" has '
            f"the deployments {', '.join(names)}.{did_you_mean(unknown[0], names)}",
            fix="Name one of those deployments (see `graphops plan`).",
            graph=the_plan.graph.name,
        )
    out = []
    for spec in specs:
        o = overrides.get(spec.name)
        if o is None:
            out.append(spec)
            continue
        scaling = spec.scaling.model_dump()
        if o.replicas is not None:
            scaling["replicas"] = o.replicas
        if o.max_replicas is not None or o.min_replicas is not None:
            scaling["min_replicas"] = o.min_replicas
            scaling["max_replicas"] = o.max_replicas
        try:
            new_scaling = Scaling(**scaling)
        except ValueError as exc:
            raise PlanError(
                f'The override of deployment "{spec.name}" is invalid: {exc}',
                fix="Give replicas, or both min_replicas and max_replicas around replicas.",
                graph=the_plan.graph.name,
            ) from exc
        update: dict[str, Any] = {"scaling": new_scaling}
        for field in ("cpus", "gpus", "max_ongoing_requests"):
            value = getattr(o, field)
            if value is not None:
                update[field] = value
        out.append(spec.model_copy(update=update))
    return out
