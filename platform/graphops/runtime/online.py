"""The online runtime: a graph compiled to a Ray Serve application by one generic builder.

``graphops.runtime.online:app`` is the ``import_path`` of every graph application: its ``args``
(`AppArgs`) say which graph, at which lock, how scaled. The builder plans the graph and binds one
deployment per remote stage plus an ingress that speaks HTTP and runs the CPU stages in-process
(see `graphops.runtime.schema.deployment_specs`). A Serve config file therefore never needs
per-graph code.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ray
from pydantic import ValidationError
from ray import serve

from graphops.errors import ServeError
from graphops.features import FeaturesConfig
from graphops.graph import GraphPackage
from graphops.planner import plan
from graphops.registry import Registry, ResolvedModel
from graphops.runtime._deployed import batch_stats, replica_urls, wait_running
from graphops.runtime._ray import (
    cluster_is_local,
    ensure_ray,
    has_gpus,
    init_local,
    require_free_port,
)
from graphops.runtime._remote import open_graph
from graphops.runtime._serve import GraphIngress, StageDeployment, deployment_of
from graphops.runtime.checkout import request_example, resolve_pins, spec_of
from graphops.runtime.schema import (
    APP_IMPORT_PATH,
    INGRESS,
    REQUEST_TIMEOUT_S,
    AppArgs,
    DeploymentOverride,
    DeploymentSpec,
    deployment_specs,
)
from graphops.runtime.serving import ServingConfig
from graphops.runtime.split import TrafficSplit

IMPORT_PATH = APP_IMPORT_PATH

DEFAULT_PORT = 8000
DEPLOY_TIMEOUT_S = 300.0
"""How long `deploy` waits for an application to run (model downloads included)."""


def app(args: dict[str, Any] | AppArgs) -> serve.Application:
    """Build a graph's Serve application (the generic builder a Serve config points at).

    Serve calls it with the config's ``args`` alone (a builder takes exactly one parameter);
    a split of its route comes as the ingress's ``user_config``.

    Raises:
        ServeError: The arguments are invalid (the field and the fix are named).
        GraphOpsError: The graph cannot be loaded, or its files differ from ``content_hash``.
    """
    return build(args)


def build(
    args: dict[str, Any] | AppArgs,
    split: TrafficSplit | None = None,
    autoscaling: dict[str, Any] | None = None,
) -> serve.Application:
    """A graph's Serve application from ``args``, its ingress splitting its route by ``split``.

    ``autoscaling``: the ingress's ``autoscaling_config`` (`ServingConfig.ingress_autoscaling`).

    Raises:
        ServeError: The arguments are invalid (the field and the fix are named).
        GraphOpsError: The graph cannot be loaded, or its files differ from ``content_hash``.
    """
    parsed = _parse(args)
    package = open_graph(parsed)
    the_plan = plan(package.graph, fuse=parsed.fuse)
    specs = deployment_specs(the_plan, parsed)
    payload = parsed.model_dump(mode="json")
    handles = {
        s.name: deployment_of(StageDeployment).options(**s.options()).bind(payload, s.stages[0])
        for s in specs
        if s.name != INGRESS
    }
    options = next(s for s in specs if s.name == INGRESS).options()
    if split is not None:
        options["user_config"] = split.model_dump(mode="json")
    if autoscaling is not None:
        options = {k: v for k, v in options.items() if k != "num_replicas"}
        options["autoscaling_config"] = autoscaling
    return deployment_of(GraphIngress).options(**options).bind(payload, handles)


def _parse(args: dict[str, Any] | AppArgs) -> AppArgs:
    if isinstance(args, AppArgs):
        return args
    try:
        return AppArgs.model_validate(args)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = ".".join(map(str, err["loc"])) or "(args)"
        raise ServeError(
            f"Got {err.get('input')!r:.80} for args.{field} of {IMPORT_PATH}: {err['msg']}.",
            fix="Fix the application's args in the Serve config (see AppArgs in "
            "docs/online.md); unknown keys are rejected.",
        ) from exc


def app_args(
    package: GraphPackage,
    registry: Registry,
    *,
    pins: Mapping[str, ResolvedModel] | None = None,
    fuse: bool = True,
    cpu_only: bool = False,
    cpu_budget: float | None = None,
    route: str | None = None,
    overrides: Mapping[str, DeploymentOverride] | None = None,
    max_body_bytes: int | None = None,
    body_timeout_s: float | None = None,
    max_slow_bodies: int | None = None,
    stage_timeout_s: float | None = None,
    features: FeaturesConfig | None = None,
    colocate: bool = True,
) -> AppArgs:
    """Arguments that serve ``package`` from this checkout and ``registry``.

    Model aliases are resolved once here (``pins`` from a lock take precedence), so every replica
    loads exactly the same version, whatever happens to the alias later. ``features`` is the
    environment's feature store (default: embedded); ``colocate`` runs the model stages that need
    no GPU inside the ingress (`graphops.runtime.schema.in_ingress`). The request limits (body size, body
    deadline, slow bodies, stage deadline) keep `AppArgs`' defaults unless given.
    """
    limits = {
        "max_body_bytes": max_body_bytes,
        "body_timeout_s": body_timeout_s,
        "max_slow_bodies": max_slow_bodies,
        "stage_timeout_s": stage_timeout_s,
    }
    extra = {k: v for k, v in limits.items() if v is not None}
    return spec_of(
        AppArgs,
        package,
        registry,
        resolve_pins(package, registry, pins),
        fuse=fuse,
        cpu_only=cpu_only,
        cpu_budget=cpu_budget,
        deployments=dict(overrides or {}),
        route=route or f"/{package.name}",
        example=request_example(package),
        features=features or FeaturesConfig(),
        colocate=colocate,
        **extra,
    )


@dataclass(frozen=True)
class OnlineApp:
    """A graph application running on Serve: where to reach it and what it is made of."""

    name: str
    url: str
    args: AppArgs
    deployments: list[DeploymentSpec]
    seconds: float

    @property
    def health_url(self) -> str:
        """The health route."""
        return f"{self.url}/health"

    @property
    def openapi_url(self) -> str:
        """The OpenAPI document."""
        return f"{self.url}/openapi.json"

    @property
    def docs_url(self) -> str:
        """The interactive API docs (Swagger UI)."""
        return f"{self.url}/docs"


def start_http(port: int = DEFAULT_PORT) -> int:
    """Start Serve's HTTP proxy on loopback at ``port``; returns the port it really listens on.

    When Serve already runs on the cluster its proxy keeps its own port (Serve applies HTTP
    options only at start), so the answer may differ from ``port``: that is no clash.

    Raises:
        PortInUseError: Serve does not run yet, the cluster is on this machine and another
            process holds ``port`` on 127.0.0.1 (a second proxy there would get half the
            requests).
    """
    from ray.serve.context import _get_global_client  # no public getter for the proxy's port

    running = _get_global_client(raise_if_no_controller_running=False)
    if running is not None:  # also spares Serve's "new HTTP config ... ignored" warning
        return int(running.http_config.port)
    if cluster_is_local():
        require_free_port(port)
    serve.start(
        http_options={"host": "127.0.0.1", "port": port, "request_timeout_s": REQUEST_TIMEOUT_S}
    )
    client = _get_global_client()
    assert client is not None  # serve.start connected it
    return int(client.http_config.port)


def deploy(
    package: GraphPackage,
    registry: Registry,
    *,
    name: str | None = None,
    port: int = DEFAULT_PORT,
    address: str | None = None,
    timeout_s: float = DEPLOY_TIMEOUT_S,
    split: TrafficSplit | None = None,
    serving: ServingConfig | None = None,
    **options: Any,
) -> OnlineApp:
    """Serve ``package`` on Ray (``address``, ``$RAY_ADDRESS`` or a local cluster) and wait until healthy.

    On a local cluster GPU requests are dropped when it has none and CPU requests are scaled to fit
    it, each with a notice in `OnlineApp.deployments`; on a remote cluster they stay as declared.

    Args:
        package: The graph package.
        registry: Where the models are resolved and loaded from.
        name: Application name (default: the graph's name).
        port: HTTP port of Serve's proxy on 127.0.0.1.
        address: Ray cluster address.
        timeout_s: How long replicas may take to be scheduled and start.
        split: How its ingress shares its route with other applications (already running).
        serving: The serving path of the local cluster started here (default: Serve's proxy);
            a cluster that runs already keeps its own (`graphops.runtime.serving`). Its
            ``scale_to_zero`` applies to this application either way; its ``ingress_cpus``
            when ``overrides`` name no CPUs for the ingress.
        **options: Passed to `app_args` (pins, fuse, route, overrides, max_body_bytes...).

    Raises:
        PortInUseError: ``port`` is held by another process on 127.0.0.1 (Serve not yet
            running on a cluster of this machine); nothing was deployed.
        ServeError: The application failed to start, or did not within ``timeout_s`` (the
            replica's own error, or Serve's scheduling message, is in the message); it is then
            deleted.
    """
    local = not (address or _ray_address())
    if local and not ray.is_initialized():
        require_free_port(port)  # before a local cluster starts in vain (it has no Serve yet)
    resources = ensure_ray(package.repo, address=address, serving=serving)
    options.setdefault("cpu_only", not has_gpus())
    if local:
        options.setdefault("cpu_budget", resources.get("CPU"))
    if serving is not None and serving.ingress_cpus is not None:
        overrides = dict(options.get("overrides") or {})
        own = overrides.get(INGRESS, DeploymentOverride())
        if own.cpus is None:
            overrides[INGRESS] = own.model_copy(update={"cpus": serving.ingress_cpus})
        options["overrides"] = overrides
    args = app_args(package, registry, **options)
    app_name = name or package.name
    port = start_http(port)
    started = time.perf_counter()
    scaling = serving.ingress_autoscaling() if serving is not None else None
    built = build(args, split, scaling)
    target = serve.RunTarget(target=built, name=app_name, route_prefix=args.route)
    serve.run_many([target], wait_for_applications_running=False)
    try:
        wait_running(app_name, timeout_s, package.name)
    except ServeError:
        serve.delete(app_name)  # nothing half-started lingers on the cluster
        raise
    specs = deployment_specs(plan(package.graph, fuse=args.fuse), args)
    return OnlineApp(
        name=app_name,
        url=f"http://127.0.0.1:{port}{args.route}",
        args=args,
        deployments=specs,
        seconds=time.perf_counter() - started,
    )


def undeploy(name: str) -> None:
    """Delete an application (and its replicas) from Serve."""
    serve.delete(name)


def _ray_address() -> str | None:
    import os

    return os.environ.get("RAY_ADDRESS")


__all__ = [
    "IMPORT_PATH",
    "OnlineApp",
    "app",
    "app_args",
    "batch_stats",
    "build",
    "deploy",
    "ensure_ray",
    "init_local",
    "replica_urls",
    "start_http",
    "undeploy",
]
