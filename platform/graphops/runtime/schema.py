"""The runtime's public contract: what render, apply, environments and the CLI exchange with it.

Plain data and pure functions (no Ray, no files, no registry), the way Ray Serve keeps
``serve/schema.py`` public over its ``_private`` package: the arguments of a graph application,
its Serve deployments and an environment's overrides of them, and `GraphSpec`, the one carrier of
what a worker needs to rebuild a graph (online: `AppArgs`; offline: one per stage). How a route
is split is the other half of the contract, in `graphops.runtime.split`; filling a spec from a
checkout (pins, example) is `graphops.runtime.checkout`. The ``graphops.runtime._*`` modules are
private (an import-linter contract keeps them so).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from graphops._models import FrozenModel
from graphops.errors import PlanError, did_you_mean
from graphops.features import FeaturesConfig
from graphops.graph import Scaling
from graphops.planner import Boundary, Plan, Stage
from graphops.registry import ResolvedModel

APP_IMPORT_PATH = "graphops.runtime.online:app"
"""What a Serve config's ``import_path`` names for every graph application."""
INGRESS = "ingress"
"""Name of the HTTP ingress deployment of every graph application."""
INGRESS_CPUS = 0.1
"""CPUs the ingress reserves when it runs no stage itself (it parses JSON and awaits handles)."""
INGRESS_MAX_ONGOING = 256
"""The ingress mostly awaits handles, so it holds many requests at once."""
STAGE_MAX_ONGOING = 64
"""A remote CPU stage without batching; enough in flight to keep its replica busy."""
MAX_BODY_BYTES = 1024 * 1024
"""Default payload limit of a graph's route (1 MiB); larger bodies get a 413."""
BODY_TIMEOUT_S = 10.0
"""Longest a replica waits for a request's body to arrive (then 408): slow clients hold a slot."""
MAX_SLOW_BODIES = 32
"""Bodies one replica waits on past `SLOW_BODY_GRACE_S` at once; more are refused with 503."""
SLOW_BODY_GRACE_S = 0.5
"""A body still arriving after this long counts as slow (a loopback or LAN body takes far less)."""
STAGE_TIMEOUT_S = 30.0
"""Longest the ingress waits for one remote stage's answer (then 504)."""
REQUEST_TIMEOUT_S = 60.0
"""Serve's ``http_options.request_timeout_s``: the proxy answers 408 to anything older."""
CPU_NODE_LABEL = "graphops.io/node-kind"
"""The Ray node label CPU nodes advertise (`ray start --labels graphops.io/node-kind=cpu`)."""
CPU_NODE_VALUE = "cpu"
"""Its value on a CPU node; GPU nodes do not carry the label."""
CPU_NODE_SELECTOR = {CPU_NODE_LABEL: CPU_NODE_VALUE}
"""The ``label_selector`` of CPU-only work on a cluster with GPU nodes: a hard constraint."""
NOT_CPU_NODE_SELECTOR = {CPU_NODE_LABEL: f"!{CPU_NODE_VALUE}"}
"""The selector of GPU work where a default selects CPU nodes (Ray Data's context): any node but
a CPU node (an unlabelled node matches, as Ray 2.60's ``!value`` does)."""


class GraphSpec(FrozenModel):
    """Which graph, at which lock, with which models: what a worker needs to rebuild it.

    Plain data (JSON-able, picklable, hashable): `AppArgs` extend it online, and the offline
    runtime's per-stage spec extends it as the cache key of each Ray worker process.
    """

    graph: Annotated[str, Field(description="Graph name: a package under graphs/.")]
    repo: Annotated[
        str,
        Field(
            description="Repository root holding graphs/ on the cluster; '.' means the "
            "application's working_dir."
        ),
    ] = "."
    content_hash: Annotated[
        str | None,
        Field(description="Refuse to start unless the graph's files hash to this (the lock)."),
    ] = None
    manifest: Annotated[
        dict[str, str] | None,
        Field(
            description="Each file of graphs/<graph>/ -> its sha256 (the lock): a worker names "
            "the file that differs."
        ),
    ] = None
    code_uri: Annotated[
        str | None,
        Field(
            description="Zip of the locked code that the worker downloads and checks before "
            "importing anything (code.mode uri); unset: the code is under `repo`."
        ),
    ] = None
    code_repository: Annotated[
        bool,
        Field(
            description="`code_uri` holds a whole repository (only graphs/<graph>/ is used); "
            "else it holds that folder and nothing else."
        ),
    ] = False
    models: Annotated[
        dict[str, ResolvedModel],
        Field(description="Exact model version and artifact digest per model node (the lock)."),
    ] = {}
    tracking_uri: Annotated[
        str | None, Field(description="MLflow tracking URI the models are loaded from.")
    ] = None
    pickle_allowed: Annotated[
        tuple[str, ...],
        Field(
            description="Registered models of this graph a platform team allowed to load by "
            "unpickling (`models.pickle_allowed`); every other pickled model is refused."
        ),
    ] = ()
    work_dir: Annotated[
        str, Field(description="Local folder for MLflow's default sqlite store and downloads.")
    ] = ".graphops"
    fuse: Annotated[
        bool, Field(description="Fuse compatible nodes (False: one deployment per node).")
    ] = True

    def __hash__(self) -> int:
        # A frozen model hashes field by field, and `models` is a dict: hash the JSON instead.
        return hash((type(self), self.model_dump_json()))


class DeploymentOverride(FrozenModel):
    """An environment's change to one deployment (scaling and resources), by deployment name."""

    replicas: Annotated[int | None, Field(ge=1, description="Fixed replica count.")] = None
    min_replicas: Annotated[int | None, Field(ge=0, description="Autoscaling lower bound.")] = None
    max_replicas: Annotated[int | None, Field(ge=1, description="Autoscaling upper bound.")] = None
    cpus: Annotated[float | None, Field(ge=0, description="CPUs per replica.")] = None
    gpus: Annotated[float | None, Field(ge=0, description="GPUs per replica.")] = None
    max_ongoing_requests: Annotated[
        int | None, Field(ge=1, description="Requests one replica holds at once.")
    ] = None


class BodyLimits(FrozenModel):
    """How an HTTP replica (a graph's ingress) reads request bodies."""

    max_body_bytes: Annotated[
        int, Field(gt=0, description="Payload limit per request; larger bodies get a 413.")
    ] = MAX_BODY_BYTES
    body_timeout_s: Annotated[
        float, Field(gt=0, description="Seconds a request's body may take to arrive (then 408).")
    ] = BODY_TIMEOUT_S
    max_slow_bodies: Annotated[
        int,
        Field(
            ge=0,
            description="Slow bodies (still arriving after 0.5 s) one replica waits on at once; "
            "one more and the oldest gets a 503, so slow clients cannot hold every request "
            "slot.",
        ),
    ] = MAX_SLOW_BODIES


class AppArgs(GraphSpec, BodyLimits):
    """Arguments of ``graphops.runtime.online:app`` (validated; unknown keys are rejected).

    A rendered Serve config carries them under ``args`` of that ``import_path``, so no graph ever
    needs Serve code of its own.
    """

    cpu_only: Annotated[
        bool, Field(description="The cluster has no GPUs: GPU requests become 0.")
    ] = False
    cpu_nodes: Annotated[
        bool,
        Field(
            description="CPU-only deployments run only on nodes labelled "
            "graphops.io/node-kind=cpu (Ray's label_selector, a hard constraint): rendered for "
            "clusters with GPU nodes (`cluster.gpus`), so CPU work never takes a GPU node."
        ),
    ] = False
    cpu_budget: Annotated[
        float | None,
        Field(
            gt=0,
            description="Scale CPU requests down proportionally when they exceed this "
            "(a machine smaller than production).",
        ),
    ] = None
    deployments: Annotated[
        dict[str, DeploymentOverride],
        Field(description="Per-deployment scaling/resource overrides, by deployment name."),
    ] = {}
    route: Annotated[
        str | None,
        Field(description="Route prefix the app is served under (default /<graph>); for links."),
    ] = None
    stage_timeout_s: Annotated[
        float, Field(gt=0, description="Seconds the ingress waits for a remote stage (then 504).")
    ] = STAGE_TIMEOUT_S
    min_replicas: Annotated[
        int,
        Field(
            ge=1,
            description="Replica floor of every deployment (the environment's "
            "policy.min_replicas); autoscaling bounds are raised to it too.",
        ),
    ] = 1
    features: Annotated[
        FeaturesConfig,
        Field(description="The feature store lookup nodes read (the environment's `features:`)."),
    ] = FeaturesConfig()
    colocate: Annotated[
        bool,
        Field(
            description="Model stages that need no GPU here run inside the ingress replica "
            "(`in_ingress`; the environment's `serving.colocate`)."
        ),
    ] = True
    example: Annotated[
        dict[str, Any] | None,
        Field(description="One request object, shown in the OpenAPI document."),
    ] = None


class DeploymentSpec(FrozenModel):
    """One Serve deployment of a graph application, as the compiler decided it."""

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
    label_selector: Annotated[
        dict[str, str],
        Field(description="Labels a node must carry to hold a replica (empty: any node)."),
    ] = {}

    def options(self) -> dict[str, Any]:
        """Keyword arguments for ``Deployment.options`` (Ray Serve's own names)."""
        actor: dict[str, Any] = {"num_cpus": self.cpus}
        if self.gpus:
            actor["num_gpus"] = self.gpus
        if self.memory:
            actor["memory"] = self.memory
        if self.label_selector:
            actor["label_selector"] = dict(self.label_selector)
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


def in_ingress(stage: Stage, args: AppArgs | None = None) -> bool:
    """Whether ``stage`` runs inside the ingress process.

    A CPU stage of a fused plan with the default scaling always does. With ``args.colocate`` so
    does a model stage that needs no GPU there (none declared, or ``cpu_only``), keeps the
    default scaling and is not named by an override: a CPU-only graph is then one deployment,
    with no handle hop (2.4-5.5 ms here) and no second process holding the same libraries.
    """
    if stage.scaling != Scaling():
        return False
    if stage.kind is Boundary.CPU:
        return True
    if args is None or not args.colocate or stage.kind not in (Boundary.MODEL, Boundary.GPU):
        return False
    needs_gpu = stage.resources.gpus > 0 and not args.cpu_only
    return not needs_gpu and stage.name not in args.deployments


def deployment_specs(the_plan: Plan, args: AppArgs | None = None) -> list[DeploymentSpec]:
    """The deployments of a graph application: the ingress first, then one per remote stage.

    The ingress answers HTTP and runs, in its own process, every CPU stage that keeps the default
    scaling (each stage kept out costs a DeploymentHandle hop, +4-6 ms here, and a serialization).
    Model and GPU stages, explicit ``stage=`` groups and CPU stages with their own scaling get a
    deployment of their own; without fusion every node does, and the ingress only speaks HTTP.

    Args:
        the_plan: The graph's plan (fused or not; ``args.fuse`` is not consulted).
        args: The application's arguments: its ``deployments`` overrides are applied, GPU
            requests dropped when ``cpu_only``, and every CPU request scaled down proportionally
            when their sum exceeds ``cpu_budget``. None: the deployments as the graph declares them.

    Raises:
        PlanError: An override names no deployment of this graph, or makes its scaling invalid.
    """
    local = [s for s in the_plan.stages if in_ingress(s, args)]
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
        if in_ingress(stage, args):
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
    if args is None:
        return specs
    # A colocated stage becomes a deployment of its own when an override names it.
    inside = [s.name for s in local if not in_ingress(s)]
    specs = _overridden(the_plan, specs, args.deployments, inside)
    if args.min_replicas > 1:
        specs = [
            s.model_copy(update={"scaling": floored(s.scaling, args.min_replicas)}) for s in specs
        ]
    if args.cpu_only:
        specs = [s.model_copy(update={"gpus": 0.0}) for s in specs]
    if args.cpu_nodes:  # CPU-only deployments: on CPU nodes only (docs/environments.md)
        specs = [
            s if s.gpus else s.model_copy(update={"label_selector": dict(CPU_NODE_SELECTOR)})
            for s in specs
        ]
    total = sum(s.cpus * s.scaling.replicas for s in specs)
    if args.cpu_budget is not None and total > args.cpu_budget:
        factor = args.cpu_budget / total
        specs = [s.model_copy(update={"cpus": round(s.cpus * factor, 4)}) for s in specs]
    return specs


def floored(scaling: Scaling, floor: int) -> Scaling:
    """``scaling`` with at least ``floor`` replicas (and autoscaling bounds at least that)."""
    if scaling.autoscaling:
        low = max(scaling.min_replicas or 0, floor)
        high = max(scaling.max_replicas or 0, low)
        return Scaling(
            replicas=min(max(scaling.replicas, low), high), min_replicas=low, max_replicas=high
        )
    return Scaling(replicas=max(scaling.replicas, floor))


def _overridden(
    the_plan: Plan,
    specs: list[DeploymentSpec],
    overrides: dict[str, DeploymentOverride],
    colocated: list[str],
) -> list[DeploymentSpec]:
    """``specs`` with their overrides applied; raise `PlanError` for an override of no deployment."""
    names = [s.name for s in specs] + colocated
    unknown = [k for k in overrides if k not in names]
    if unknown:
        raise PlanError(
            f'Got "{unknown[0]}" as a deployment to override; graph "{the_plan.graph.name}" has '
            f"the deployments {', '.join(names)}.{did_you_mean(unknown[0], names)}",
            fix="Name one of those deployments (see `graphops plan`); a model stage that runs "
            "in the ingress (serving.colocate) becomes a deployment of its own when named.",
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
