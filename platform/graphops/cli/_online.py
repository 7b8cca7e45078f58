"""Online commands: `graphops serve` (a graph as a Ray Serve application on loopback)."""

from __future__ import annotations

import json
import shlex
import signal
import time
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import typer

from graphops._views import deployments_table

from ._common import GraphArg, console
from ._features import EnvOption, env_features

if TYPE_CHECKING:
    from graphops.graph import GraphPackage
    from graphops.runtime.serving import ServingConfig


class Ingress(StrEnum):
    """How requests reach the ingress replicas (`graphops.runtime.serving.Ingress`)."""

    proxy = "proxy"
    direct = "direct"
    haproxy = "haproxy"


DEFAULT_INGRESS = Ingress.haproxy
"""The fast path where the machine allows it (without haproxy: direct ingress, with a notice)."""


def _lookups(package: GraphPackage) -> list[str]:
    from graphops.graph import FeatureLookup

    return [n.name for n in package.graph.nodes if isinstance(n, FeatureLookup)]


def serve(
    ctx: typer.Context,
    graph: GraphArg,
    port: Annotated[
        int,
        typer.Option(
            min=1,
            max=65535,
            help="HTTP port on 127.0.0.1 (refused when another process holds it).",
        ),
    ] = 8000,
    no_fuse: Annotated[
        bool,
        typer.Option("--no-fuse", help="One deployment per node (to measure what fusion buys)."),
    ] = False,
    max_body_bytes: Annotated[
        int | None, typer.Option(min=1, help="Payload limit per request (default 1 MiB).")
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(envvar="RAY_ADDRESS", help="Ray cluster (default: a local one, started now)."),
    ] = None,
    once: Annotated[
        bool,
        typer.Option(
            "--once", help="Deploy, answer the example request, then stop (a smoke test)."
        ),
    ] = False,
    env: EnvOption = None,
    ingress: Annotated[
        Ingress | None,
        typer.Option(
            help="How requests reach the graph's ingress on the local cluster started now: "
            "proxy (Serve's HTTP proxy), direct (each ingress replica also on its own port; "
            "the stable route stays on the proxy), haproxy (HAProxy on --port, straight to the "
            "replicas' ports). Default: --env's `serving.ingress`, else haproxy (direct where "
            "haproxy is not installed). A running cluster (--address) keeps its own.",
        ),
    ] = None,
) -> None:
    """Serve a graph on Ray Serve: print its URL, an example `curl` and its OpenAPI address.

    The models are resolved once at start (alias -> exact version + digest) and every replica
    loads exactly that. Ctrl-C (or SIGTERM) deletes the application and stops the local
    cluster cleanly. A port another process holds on 127.0.0.1 is refused before anything starts.
    """
    import ray
    import requests

    from graphops.runtime.online import deploy, replica_urls, undeploy

    settings = ctx.obj
    package = settings.package(graph)
    serving = _serving(ctx, env, ingress, address)
    with console.status(f"Starting {graph} on Ray Serve (replicas load their models) ..."):
        online = deploy(
            package,
            settings.registry(),
            port=port,
            address=address,
            fuse=not no_fuse,
            max_body_bytes=max_body_bytes,
            features=env_features(ctx, env),
            serving=serving,
        )
    fused = "fused" if online.args.fuse else "unfused"
    console.print(
        deployments_table(
            online.deployments,
            f"{graph} {package.graph.version}: {len(online.deployments)} deployments ({fused}), "
            f"ready in {online.seconds:.1f} s",
        )
    )
    if online.args.cpu_only and any(s.resources.gpus for s in package.graph.nodes):
        console.print("[yellow]note:[/] this cluster has no GPU; GPU stages run on CPUs.")
    if _lookups(package):
        console.print(f"feature store: {online.args.features.store}")
    for node, pin in online.args.models.items():
        console.print(f"model {node}: {pin.uri} ({pin.digest[:19]})")
    path = f"ingress {serving.ingress}" if serving else "the cluster's own ingress"
    console.print(f"\nServing [bold]{online.url}[/]   ({path})")
    for url in replica_urls(online.name, urlsplit(online.url).path):
        console.print(f"Replica  {url}   (its own port: direct ingress, no proxy)")
    console.print(f"OpenAPI  {online.openapi_url}   (interactive: {online.docs_url})")
    console.print(f"Health   {online.health_url}")
    example = online.args.example
    if example is not None:
        body = json.dumps(example, separators=(",", ":"))
        curl = f"curl -s -X POST {online.url} -H 'Content-Type: application/json' -d {shlex.quote(body)}"
        console.print("\nTry it:", style="bold")
        console.print(curl, markup=False, highlight=False, soft_wrap=True)
        answer = requests.post(online.url, data=body, timeout=30)
        console.print(f"-> {answer.status_code} {answer.text}", markup=False, highlight=False)
        if answer.status_code != 200:
            raise typer.Exit(1)
    if once:
        undeploy(online.name)
        return
    console.print("\nPress Ctrl-C to stop.")
    previous = signal.signal(signal.SIGTERM, _interrupt)  # nox, systemd, kill: same as Ctrl-C
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print("\nStopping ...")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the cleanup
        undeploy(online.name)
        if not address:
            # The local cluster goes, Serve's controller and proxy with it: no serve.shutdown()
            # first, whose graceful_shutdown call waits until the controller is killed and then
            # has Ray print "(raylet) Task ServeController.graceful_shutdown failed" (it retries).
            ray.shutdown()
        signal.signal(signal.SIGTERM, previous)
        console.print(f"Stopped {graph}.")


def _serving(
    ctx: typer.Context, env: str | None, ingress: Ingress | None, address: str | None
) -> ServingConfig | None:
    """The serving path of the local cluster `serve` starts (None: it joins ``address``)."""
    from graphops.runtime.serving import ServingConfig, usable

    if address:
        if ingress is not None:
            console.print(
                f"[yellow]note:[/] --ingress {ingress.value} is ignored: the cluster at "
                f"{address} serves with the path it was started with."
            )
        return None
    declared = ServingConfig(ingress=DEFAULT_INGRESS.value)
    if env is not None:
        from graphops.environments import load_environment

        declared = load_environment(ctx.obj.root(), env).serving
    if ingress is not None:
        declared = declared.model_copy(update={"ingress": ingress.value})
    if declared.scale_to_zero and declared.ingress != "proxy":  # the schema's rule, for --ingress
        console.print(
            f"[yellow]note:[/] scale_to_zero is off: it needs ingress proxy, not {declared.ingress}."
        )
        declared = declared.model_copy(update={"scale_to_zero": False})
    chosen, why = usable(declared)
    if why:
        console.print(f"[yellow]note:[/] {why}.")
    return chosen


def _interrupt(signum: int, frame: object) -> None:
    """Turn SIGTERM into KeyboardInterrupt, so the cleanup of Ctrl-C runs."""
    raise KeyboardInterrupt
