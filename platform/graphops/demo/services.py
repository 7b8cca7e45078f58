"""Local stand-ins for an environment's services, for the main job and for trying graphops out.

Each environment gets its own Ray cluster (`ray start --head --block`, token auth on, every
port on 127.0.0.1 unless worker nodes join it: docs/security.md) and the MLflow store gets its
UI (`mlflow server`). They run in the background, in their own process groups, and are recorded in a state file, so a second run finds
and reuses them and `stop` ends exactly the processes started here, by pid.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Annotated

import requests
from pydantic import Field

import graphops.demo.processes as processes
from graphops._models import StrictModel
from graphops._net import free_port
from graphops.demo.processes import console_script, spawn
from graphops.errors import ConfigError
from graphops.runtime.loopback import LOOPBACK_ONLY_ENV
from graphops.runtime.serving import ServingConfig, cluster_env, loopback_haproxy, stop_haproxy

RAY_PORTS = (
    "port",
    "dashboard-port",
    "ray-client-server-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "metrics-export-port",
    "runtime-env-agent-port",
    "node-manager-port",
    "object-manager-port",
)
METRICS_PORT_ENV = {
    "autoscaler-metrics": "AUTOSCALER_METRIC_PORT",
    "dashboard-metrics": "DASHBOARD_METRIC_PORT",
}
"""Ports a head's monitor and dashboard serve Prometheus metrics on; Ray has no flag for them,
only these variables, and fixed defaults (44217, 44227) that a second cluster cannot bind."""

NO_DRAIN = {"RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
"""`ray start --block` drains its node on SIGTERM (for a pod beside other nodes), for up to 30 s.

`stop` signals the whole process group at once, so the drain would ask a GCS that got the same
signal and wait out its timeout (`--down` took 10 s per cluster: the SIGKILL after it). A local
cluster has no other node to drain to.
"""


class Service(StrictModel):
    """One background process started here: what it is, its pid and where it listens."""

    name: Annotated[str, Field(description="e.g. ray-dev, ray-staging, mlflow-ui.")]
    pid: Annotated[int, Field(description="Process id (also its process group id).")]
    url: Annotated[str, Field(description="Its main URL (Ray dashboard, MLflow UI).")]
    ports: Annotated[dict[str, int], Field(description="Every port it was given.")] = {}
    log: Annotated[str, Field(description="Its stdout/stderr log file.")]
    temp_dir: Annotated[str | None, Field(description="Ray's --temp-dir, removed on stop.")] = None
    token_file: Annotated[str | None, Field(description="File holding the cluster token.")] = None
    head: Annotated[
        str | None,
        Field(description="For a Ray worker node: the name of the head it joined (else None)."),
    ] = None
    loopback: Annotated[
        bool,
        Field(description="A Ray head kept on loopback (no worker node can join it)."),
    ] = False
    serving: Annotated[
        ServingConfig,
        Field(description="The serving path its Ray processes were started with (a Ray head)."),
    ] = ServingConfig()

    @property
    def token(self) -> str | None:
        """The cluster's token (None for services without one)."""
        return Path(self.token_file).read_text().strip() if self.token_file else None

    def alive(self) -> bool:
        """Whether the process still runs."""
        return processes.alive(self.pid)


class LocalState(StrictModel):
    """What the main job started and set up, saved in ``<work dir>/state.json``."""

    services: dict[str, Service] = {}
    source_head: Annotated[
        str | None, Field(description="Commit of the repository the GitOps sandbox was cloned at.")
    ] = None
    multinode: Annotated[
        bool, Field(description="The sandbox's dev has `gpus: true` (worker nodes beside it).")
    ] = False


def load_state(path: Path) -> LocalState:
    """The saved state, or an empty one."""
    if not path.is_file():
        return LocalState()
    try:
        return LocalState.model_validate_json(path.read_text())
    except ValueError as exc:
        raise ConfigError(
            f"{path} is not a state file graphops can read: {exc}",
            fix=f"Stop what it started by hand if anything runs, then delete {path}.",
            file=path,
        ) from exc


def save_state(path: Path, state: LocalState) -> None:
    """Write the state (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(state.model_dump_json(indent=2))
    tmp.replace(path)


HAPROXY_PORTS = ("haproxy-stats", "haproxy-metrics", "serve-fallback", "serve-fallback-grpc")
"""A HAProxy node's own ports: HAProxy's stats and metrics, and the Serve proxy it falls back
to (on the head) while an application has no ingress replica (Ray's fixed defaults 8404, 9101,
8500, 9500 would clash between clusters of one machine)."""


def haproxy_dir(temp_dir: Path | str) -> Path:
    """HAProxy's folder of the node whose Ray temp dir is ``temp_dir`` (removed by `stop`).

    Not inside the temp dir: HAProxy's unix socket paths must stay short (`HAPROXY_DIR_MAX`).
    """
    return Path("/tmp") / f"gh-{hashlib.sha256(str(temp_dir).encode()).hexdigest()[:8]}"


def serving_env(
    serving: ServingConfig, temp_dir: Path | str, ports: dict[str, int]
) -> dict[str, str]:
    """The variables of a local node's serving path (`cluster_env`), its HAProxy kept apart.

    HAProxy's files go to the node's own `haproxy_dir` and its stats and metrics ports are the
    node's own (``ports["haproxy-stats"]``, ``ports["haproxy-metrics"]``), so nodes and clusters
    on one machine never share them; those two stay on 127.0.0.1 (`loopback_haproxy`), where
    Ray's template would bind them on every interface. ``serving`` is taken as given: pass it
    through `graphops.runtime.serving.usable` first.
    """
    if "haproxy-stats" not in ports:
        return cluster_env(serving)
    folder = haproxy_dir(temp_dir)
    return cluster_env(
        loopback_haproxy(serving, folder),
        state_dir=folder,
        haproxy_ports=(ports["haproxy-stats"], ports["haproxy-metrics"]),
        fallback_ports=(ports["serve-fallback"], ports["serve-fallback-grpc"]),
    )


def start_ray(
    name: str,
    work_dir: Path,
    *,
    dashboard_port: int | None,
    serve_port: int | None,
    tracking_uri: str,
    num_cpus: float,
    taken: set[int],
    loopback: bool = True,
    serving: ServingConfig | None = None,
) -> Service:
    """Start a Ray head in the background with token auth, on loopback.

    With ``loopback`` every listener is on 127.0.0.1 (`graphops.runtime.loopback`) and no worker
    node can join; without it (a head that worker nodes join, `graphops.demo.nodes`) Ray puts
    its agents and gRPC servers on the host's address (docs/security.md lists them). The
    dashboard and Serve's proxy are on 127.0.0.1 either way. ``serve_port`` is only reserved
    here (Serve's HTTP proxy starts on it when an application is applied); it is recorded as
    ``ports["serve"]``.

    ``serving`` (default: Serve's proxy) is the cluster's serving path, set in the environment
    of `ray start` (Ray reads it when its processes start); pass it through
    `graphops.runtime.serving.usable` first. HAProxy mode gets four more free ports
    (`HAPROXY_PORTS`), recorded under those names, all on 127.0.0.1 (`serving_env`).
    """
    serving = serving or ServingConfig()
    work_dir.mkdir(parents=True, exist_ok=True)
    token_file = work_dir / f"{name}.token"
    if not token_file.is_file():
        token_file.write_text(secrets.token_hex(24))
        token_file.chmod(0o600)
    ports = {key: free_port(None, taken) for key in RAY_PORTS}
    ports["dashboard-port"] = free_port(dashboard_port, taken)
    ports["serve"] = free_port(serve_port, taken)
    ports |= {key: free_port(None, taken) for key in METRICS_PORT_ENV}
    if serving.ingress == "haproxy":
        ports |= {key: free_port(None, taken) for key in HAPROXY_PORTS}
    # Unix socket paths are short (107 bytes): the temp dir lives under /tmp, named by the work dir.
    tag = hashlib.sha256(str(work_dir.resolve()).encode()).hexdigest()[:8]
    temp_dir = Path("/tmp") / f"graphops-{tag}-{name}"
    log = work_dir / f"{name}.log"
    command = [
        console_script("ray"),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        "--dashboard-host=127.0.0.1",
        f"--num-cpus={num_cpus:g}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
        *(f"--{key}={ports[key]}" for key in RAY_PORTS),
    ]
    env = (
        os.environ
        | NO_DRAIN
        | {
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": token_file.read_text().strip(),
            "MLFLOW_TRACKING_URI": tracking_uri,
            **{variable: str(ports[key]) for key, variable in METRICS_PORT_ENV.items()},
            **(LOOPBACK_ONLY_ENV if loopback else {}),
            **serving_env(serving, temp_dir, ports),
        }
    )
    env.pop("RAY_ADDRESS", None)
    if not loopback:
        for variable in LOOPBACK_ONLY_ENV:
            env.pop(variable, None)
    process = spawn(command, log, env=env)
    return Service(
        name=name,
        pid=process.pid,
        url=f"http://127.0.0.1:{ports['dashboard-port']}",
        ports=ports,
        log=str(log),
        temp_dir=str(temp_dir),
        token_file=str(token_file),
        loopback=loopback,
        serving=serving,
    )


WORKER_PORTS = (
    "node-manager-port",
    "object-manager-port",
    "runtime-env-agent-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "metrics-export-port",
)
"""The ports every extra node on the same machine needs of its own."""


def start_ray_worker(
    name: str,
    head: Service,
    *,
    num_cpus: int,
    num_gpus: int = 0,
    resources: str | None = None,
    labels: str | None = None,
    tracking_uri: str | None = None,
    taken: set[int],
) -> Service:
    """Join another node to ``head``'s cluster on this machine (token auth, loopback, its own ports).

    ``num_gpus`` advertises logical GPUs (no hardware needed): GPU placement can be tested on CPUs.
    ``labels`` (``k=v,...``) are the node's Ray labels: a CPU node's ``graphops.io/node-kind=cpu``.
    The node has a temp dir of its own (its sockets must not collide with the head's), removed
    by `stop`. It runs the head's serving path (`Service.serving`): its replicas and its
    HAProxy read the same variables, HAProxy's files in the node's own temp dir, on ports of
    its own.
    """
    token = head.token
    if head.loopback:
        raise ConfigError(
            f"{head.name} is kept on loopback, so no worker node can join it (Ray resolves "
            "its address to the host's, where it does not listen).",
            fix="Start the head with `start_ray(..., loopback=False)` (the multi-node demo does).",
        )
    if not token:
        raise ConfigError(
            f"{head.name} has no token file: a worker node must present the head's token.",
            fix="Start the head with `start_ray` (token auth on).",
        )
    ports = {key: free_port(None, taken) for key in WORKER_PORTS}
    if head.serving.ingress == "haproxy":
        ports |= {key: free_port(None, taken) for key in HAPROXY_PORTS}
    log = Path(head.log).with_name(f"{name}.log")
    temp_dir = f"{head.temp_dir or '/tmp/graphops'}-{name}"
    command = [
        console_script("ray"),
        "start",
        f"--address=127.0.0.1:{head.ports['port']}",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={num_cpus}",  # `ray start` takes whole CPUs only
        f"--num-gpus={num_gpus}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
        *(f"--{key}={ports[key]}" for key in WORKER_PORTS),
        *([f"--resources={resources}"] if resources else []),
        *([f"--labels={labels}"] if labels else []),
    ]
    env = (
        os.environ
        | NO_DRAIN
        | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
        | serving_env(head.serving, temp_dir, ports)
    )
    for variable in LOOPBACK_ONLY_ENV:  # `ray start --address` refuses to start with it
        env.pop(variable, None)
    if tracking_uri:  # the replicas on this node load models from there, as on the head
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    env.pop("RAY_ADDRESS", None)
    process = spawn(command, log, env=env)
    return Service(
        name=name,
        pid=process.pid,
        url=head.url,
        ports=ports,
        log=str(log),
        temp_dir=temp_dir,
        head=head.name,
        serving=head.serving,
    )


def start_mlflow_ui(
    work_dir: Path, tracking_uri: str, port: int | None, taken: set[int]
) -> Service:
    """Start the MLflow UI over the local store (one worker, loopback only, no job runners)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    chosen = free_port(port, taken)
    log = work_dir / "mlflow-ui.log"
    command = [
        console_script("mlflow"),
        "server",
        "--backend-store-uri",
        tracking_uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(chosen),
        "--workers",
        "1",
    ]
    # No job execution: it runs seven huey consumers for MLflow's GenAI jobs (scorers, trace
    # archival) that a UI over runs never uses, and they outlast SIGTERM (`--down` took 10 s).
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = spawn(command, log, env=env, cwd=work_dir)
    return Service(
        name="mlflow-ui",
        pid=process.pid,
        url=f"http://127.0.0.1:{chosen}",
        ports={"http": chosen},
        log=str(log),
    )


def ready(service: Service) -> bool:
    """Whether the service answers: the Serve REST API with the token, or the MLflow UI.

    A worker node answers nothing itself: it counts as ready while its process runs.
    """
    if service.head:
        return service.alive()
    token = service.token
    path = "/api/serve/applications/" if token else "/health"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        return requests.get(service.url + path, headers=headers, timeout=5).ok
    except requests.RequestException:
        return False


def wait_ready(service: Service, timeout_s: float = 180) -> None:
    """Wait until ``service`` answers; a `ConfigError` with the end of its log if it never does."""
    deadline = time.monotonic() + timeout_s
    while not ready(service):
        if not service.alive() or time.monotonic() > deadline:
            tail = "".join(Path(service.log).read_text(errors="replace").splitlines(True)[-15:])
            stop(service)
            raise ConfigError(
                f"{service.name} did not come up at {service.url} "
                f"({'exited' if not service.alive() else f'no answer in {timeout_s:.0f} s'}). "
                f"The end of {service.log}:\n{tail}",
                fix="Read the log; a port may be taken, or the machine too busy. "
                "Stop everything with `graphops demo --down` and try again.",
            )
        time.sleep(1)


def stop(service: Service, timeout_s: float = 10, linger_s: float = 1) -> None:
    """Stop the service's process group (`processes.stop_group`) and remove its temp dir.

    A node's HAProxy (ingress haproxy) is not in that group: it is stopped by its config's
    folder (`stop_haproxy`).
    """
    processes.stop_group(service.pid, timeout_s, linger_s)
    if service.temp_dir:
        shutil.rmtree(service.temp_dir, ignore_errors=True)
        stop_haproxy(haproxy_dir(service.temp_dir))  # not in the group: Ray's worker started it
        shutil.rmtree(haproxy_dir(service.temp_dir), ignore_errors=True)
