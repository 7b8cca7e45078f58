"""Rendering an environment: `release.yaml` + `environment.yaml` -> `serve.yaml` + `rayservice.yaml`.

Pure and deterministic: the same inputs give byte-identical files, so CI can refuse stale or
hand-edited ones (`graphops render --check`). `serve.yaml` is validated with Ray's own
`ServeDeploySchema`; `rayservice.yaml` carries the same config as KubeRay's `serveConfigV2`.
A little over 350 lines on purpose: one job, read top to bottom from a release entry to its
Serve applications (versions, experiment splits, overrides, code source) and the files.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphops.controller.checks import check_models, check_serve_schema, check_traffic
from graphops.controller.packaging import archive_uri
from graphops.controller.rayservice import rayservice
from graphops.environments import (
    ENVIRONMENTS_DIR,
    EnvironmentConfig,
    GraphLock,
    Release,
    ReleaseEntry,
    dump_yaml,
    environment_names,
    load_environment,
    load_release,
    release_path,
)
from graphops.errors import ConfigError
from graphops.runtime.schema import APP_IMPORT_PATH as IMPORT_PATH
from graphops.runtime.schema import (
    INGRESS,
    REQUEST_TIMEOUT_S,
    AppArgs,
    DeploymentOverride,
)
from graphops.runtime.split import Mirror, SplitArm, TrafficSplit

SERVE_FILE = "serve.yaml"
RAYSERVICE_FILE = "rayservice.yaml"
HEADER = (
    "# Rendered by `graphops render --env {env}` from environments/{env}/release.yaml and\n"
    "# environment.yaml. Do not edit: CI runs `graphops render --check` and refuses changes.\n"
)
DELIVERY = {
    "gcs": "# Code: mode gcs. DEPLOYABLE ONLY THROUGH `graphops apply`, which uploads each\n"
    "# gcs://_ray_pkg_<hash>.zip first; Ray's own `serve deploy` or KubeRay would fail.\n",
    "uri": "# Code: mode uri. Self-contained: each application's code_uri is a zip its replicas\n"
    "# download and check against the lock's manifest before importing any of it (published by\n"
    "# `graphops promote`); `serve deploy` of this file works on a fresh cluster.\n",
    "image": "# Code: mode image. Self-contained: graphs and graphops are in the cluster's image\n"
    "# ({image}); no working_dir.\n",
}


ARM_ROUTE = "/_graphops/arm/"
"""Private route of the arms and shadow of an experiment (the control version keeps ``/<graph>``)."""


@dataclass(frozen=True)
class Version:
    """One application a release asks for: a pinned version of a graph and how it is scaled."""

    graph: str
    role: (
        str  # "serving" (owns the stable route; under an experiment, the control), "arm", "shadow"
    )
    lock: GraphLock
    deployments: dict[str, DeploymentOverride]
    weight: float = 100.0

    @property
    def app(self) -> str:
        """Its Serve application name."""
        return app_name(self.graph, self.lock)


def app_name(graph: str, lock: GraphLock) -> str:
    """The Serve application of a graph version: ``<graph>-<version>-<lock id>``.

    The lock id changes with anything that needs new replicas (code, models, code source), so
    such a change starts a new application beside the old one; scaling overrides do not.
    """
    identity = json.dumps(
        {
            "content_hash": lock.content_hash,
            "models": {k: v.model_dump(mode="json") for k, v in sorted(lock.models.items())},
            "package": lock.package,
        },
        sort_keys=True,
    )
    return f"{graph}-{lock.version}-{hashlib.sha256(identity.encode()).hexdigest()[:8]}"


def versions(graph: str, entry: ReleaseEntry) -> list[Version]:
    """The applications of one graph: its lock, then (under an experiment) arms and shadow."""
    traffic = entry.traffic
    if traffic is None:
        return [Version(graph, "serving", entry.lock, entry.deployments)]
    out = [Version(graph, "serving", entry.lock, entry.deployments, traffic.weight)]
    for _, arm in sorted(traffic.arms.items()):
        out.append(Version(graph, "arm", arm.lock, arm.deployments, arm.weight))
    if traffic.shadow is not None:
        out.append(Version(graph, "shadow", traffic.shadow.lock, traffic.shadow.deployments, 0))
    return out


def experiment_name(graph: str, entry: ReleaseEntry) -> str:
    """The stable id of an experiment: its graph and the versions of its control and arms."""
    answering = [v for v in versions(graph, entry) if v.role != "shadow"]
    return f"{graph}-" + "-vs-".join(v.lock.version for v in answering)


def experiment_split(graph: str, entry: ReleaseEntry) -> TrafficSplit | None:
    """How the control version's ingress splits ``/<graph>`` under ``entry``'s experiment."""
    traffic = entry.traffic
    if traffic is None:
        return None
    all_versions = versions(graph, entry)
    shadow = next((v for v in all_versions if v.role == "shadow"), None)
    return TrafficSplit(
        name=experiment_name(graph, entry),
        purpose="experiment",
        own_version=entry.lock.version,
        arms=tuple(
            SplitArm(
                app=v.app,
                version=v.lock.version,
                content_hash=v.lock.content_hash,
                weight=v.weight,
            )
            for v in all_versions
            if v.role == "arm"
        ),
        sticky_key=traffic.sticky_key,
        mirror=Mirror(
            app=shadow.app,
            version=shadow.lock.version,
            content_hash=shadow.lock.content_hash,
            percent=traffic.shadow.percent,
        )
        if shadow is not None and traffic.shadow is not None
        else None,
        output=traffic.output,
    )


def application(
    version: Version, env: EnvironmentConfig, split: TrafficSplit | None = None
) -> dict[str, Any]:
    """One application of the Serve config: ``version`` of its graph, its ingress split by ``split``.

    The ingress is always listed with a ``user_config``: ``{}`` when the route is not split, so
    that ending a split is a ``reconfigure`` too (Serve calls none when a ``user_config`` is
    removed, and the replica would keep splitting).

    Raises:
        ConfigError: The lock predates per-file manifests (it must be locked again).
    """
    graph, lock = version.graph, version.lock
    if lock.manifest is None:
        raise ConfigError(
            f"The lock of {graph} {lock.version} in environments/{env.name}/release.yaml has no "
            f"manifest (locked by graphops {lock.platform_version}): replicas now check every "
            "file of a graph against its lock before importing it, and this lock lists none.",
            fix=f"Lock it again: `graphops promote {graph} --to {env.name}` (the code and models "
            "stay the same; CI's validation record is reused).",
            graph=graph,
        )
    floor = env.policy.min_replicas
    overrides = {k: floored_override(o, floor) for k, o in version.deployments.items()}
    overrides = with_footprint(overrides, env)
    code = env.code
    args = AppArgs(
        graph=graph,
        repo=code.image_root if code.delivery == "image" else ".",
        content_hash=lock.content_hash,
        manifest=lock.manifest,
        code_uri=code_uri_for(env, graph, lock),
        code_repository=code.delivery == "uri" and not code.store,
        models=lock.models,
        tracking_uri=env.models.tracking_uri,
        pickle_allowed=tuple(
            sorted({m.name for m in lock.models.values()} & set(env.models.pickle_allowed))
        ),
        cpu_only=not env.cluster.gpus,
        cpu_nodes=env.cluster.gpus,  # CPU-only deployments on CPU nodes only
        cpu_budget=env.cluster.app_cpu_budget,
        deployments=resource_overrides(overrides),
        route=f"/{graph}",
        example=lock.example,
        features=env.features,
        min_replicas=floor,
    )
    runtime_env: dict[str, Any] = {}
    if code.delivery == "gcs":  # Ray's package of the locked files; apply uploads it
        runtime_env["working_dir"] = lock.package
    if env.code.pip:
        runtime_env["pip"] = list(env.code.pip)
    route = f"/{graph}" if version.role == "serving" else ARM_ROUTE + version.app
    out: dict[str, Any] = {
        "name": version.app,
        "route_prefix": route,
        "import_path": IMPORT_PATH,
        "args": args.model_dump(mode="json", exclude_defaults=True),
    }
    if runtime_env:
        out["runtime_env"] = runtime_env
    scaling = scaling_overrides(overrides, env.serving.idle_s)
    if not any(d["name"] == INGRESS for d in scaling):
        # Listed even without overrides: Serve merges the application's runtime_env into the
        # actor options of the deployments its config lists, and only those, so listing the
        # ingress later (a split in its user_config) would restart its replicas.
        scaling = sorted([*scaling, {"name": INGRESS}], key=lambda d: str(d["name"]))
    user_config = split.model_dump(mode="json") if split is not None else {}
    out["deployments"] = [
        d | {"user_config": user_config} if d["name"] == INGRESS else d for d in scaling
    ]
    return out


_SCALING = ("replicas", "min_replicas", "max_replicas", "max_ongoing_requests")


def with_footprint(
    overrides: dict[str, DeploymentOverride], env: EnvironmentConfig
) -> dict[str, DeploymentOverride]:
    """``overrides`` with the environment's ingress footprint where the release sets none.

    `serving.ingress_cpus` and `serving.scale_to_zero` (not under a replica floor above 1).
    """
    serving = env.serving
    own = overrides.get(INGRESS, DeploymentOverride())
    update: dict[str, float | int] = {}
    if serving.ingress_cpus is not None and own.cpus is None:
        update["cpus"] = serving.ingress_cpus
    bounds = serving.ingress_autoscaling()
    scaled = (own.replicas, own.min_replicas, own.max_replicas) != (None, None, None)
    if bounds is not None and not scaled and env.policy.min_replicas <= 1:
        update |= {"min_replicas": 0, "max_replicas": int(bounds["max_replicas"]), "replicas": 1}
    if not update:
        return overrides
    return overrides | {INGRESS: own.model_copy(update=update)}


def floored_override(override: DeploymentOverride, floor: int) -> DeploymentOverride:
    """An environment's scaling override raised to the policy's replica floor."""
    if floor <= 1:
        return override
    update: dict[str, int] = {}
    if override.replicas is not None:
        update["replicas"] = max(override.replicas, floor)
    if override.min_replicas is not None:
        update["min_replicas"] = max(override.min_replicas, floor)
    if override.max_replicas is not None:
        update["max_replicas"] = max(override.max_replicas, floor)
    return override.model_copy(update=update)


def resource_overrides(overrides: dict[str, DeploymentOverride]) -> dict[str, DeploymentOverride]:
    """The overrides the builder applies (CPUs, GPUs): changing them restarts replicas."""
    out = {}
    for name, o in overrides.items():
        if o.cpus is not None or o.gpus is not None:
            out[name] = o.model_copy(update=dict.fromkeys(_SCALING))
    return out


def scaling_overrides(
    overrides: dict[str, DeploymentOverride], idle_s: float | None = None
) -> list[dict[str, Any]]:
    """The overrides Serve applies in place, as the config's ``deployments`` entries.

    Replicas, autoscaling bounds and ``max_ongoing_requests`` are Serve's lightweight updates:
    put in the config (not in the builder's args) they change without restarting a replica.
    """
    out = []
    for name, o in sorted(overrides.items()):
        entry: dict[str, Any] = {"name": name}
        if o.min_replicas is not None or o.max_replicas is not None:
            bounds = {"min_replicas": o.min_replicas, "max_replicas": o.max_replicas}
            if o.replicas is not None:
                bounds["initial_replicas"] = o.replicas
            entry["autoscaling_config"] = {k: v for k, v in bounds.items() if v is not None}
            if o.min_replicas == 0 and idle_s is not None:  # scale to zero after idle_s
                entry["autoscaling_config"] |= {"downscale_delay_s": idle_s, "upscale_delay_s": 0}
        elif o.replicas is not None:
            entry["num_replicas"] = o.replicas
        if o.max_ongoing_requests is not None:
            entry["max_ongoing_requests"] = o.max_ongoing_requests
        if len(entry) > 1:
            out.append(entry)
    return out


def code_uri_for(env: EnvironmentConfig, graph: str, lock: GraphLock) -> str | None:
    """The zip a graph version's replicas fetch and check themselves (``code.mode: uri``).

    Its zip in ``code.store``, or the ``code.working_dir`` template at its commit. Never Ray's
    ``working_dir``: Ray would put the zip first on each worker's ``PYTHONPATH`` before any
    check (`graphops.runtime.code`). None for gcs (a working_dir) and image (in the image).
    """
    code = env.code
    if code.delivery != "uri":
        return None
    if code.store:
        return archive_uri(code.store, graph, lock.package)
    assert code.working_dir is not None  # CodeConfig: uri has a store or a template
    return code.working_dir.format(commit=lock.commit)


def serve_config(env: EnvironmentConfig, release: Release) -> dict[str, Any]:
    """The environment's Serve config (``ServeDeploySchema``): every version of every graph."""
    apps = []
    for graph, entry in sorted(release.graphs.items()):
        split = experiment_split(graph, entry)
        for version in versions(graph, entry):
            apps.append(application(version, env, split if version.role == "serving" else None))
    return {
        "proxy_location": "EveryNode",
        "http_options": {
            "host": env.http_host,
            "port": env.http_port,
            "request_timeout_s": REQUEST_TIMEOUT_S,  # no request hangs past it (408)
        },
        "applications": apps,
    }


@dataclass(frozen=True)
class Rendered:
    """The files of one environment, as they must be on disk, and what they were rendered from.

    Attributes:
        env: The environment's name.
        files: Path -> the text the file must hold.
        environment: Its ``environment.yaml``.
        release: Its ``release.yaml``.
        config: The Serve config ``serve.yaml`` holds (what `apply` deploys).
    """

    env: str
    files: dict[Path, str]
    environment: EnvironmentConfig
    release: Release
    config: dict[str, Any]

    def stale(self) -> dict[Path, str]:
        """File -> unified diff of what is committed against what it must be, for stale files."""
        out = {}
        for path, text in self.files.items():
            current = path.read_text() if path.is_file() else ""
            if current != text:
                out[path] = "".join(
                    difflib.unified_diff(
                        current.splitlines(keepends=True),
                        text.splitlines(keepends=True),
                        fromfile=f"{path.name} (committed)",
                        tofile=f"{path.name} (rendered)",
                    )
                )
        return out

    def write(self) -> list[Path]:
        """Write every stale file; returns those written."""
        written = []
        for path, text in self.files.items():
            if not path.is_file() or path.read_text() != text:
                path.write_text(text)
                written.append(path)
        return written


def render(repo: Path, env_name: str, *, ray_schema: bool = True) -> Rendered:
    """Render ``environments/<env_name>/`` (nothing is written; see `Rendered.write`).

    ``ray_schema=False`` skips the check of the Serve config with Ray's own schema, which
    imports Ray Serve (seconds): `render --check` uses it, since a committed file equal to the
    render was written by `render` or `promote`, which checked it, and `apply` checks again.
    """
    env = load_environment(repo, env_name)
    release = load_release(repo, env_name)
    folder = repo / ENVIRONMENTS_DIR / env_name
    check_traffic(env, release, release_path(repo, env_name))
    check_models(env, release, release_path(repo, env_name))
    config = serve_config(env, release)
    if ray_schema:
        check_serve_schema(config, folder / SERVE_FILE)
    delivery = env.code.delivery
    header = HEADER.format(env=env_name) + DELIVERY[delivery].format(
        image=env.cluster.image.reference
    )
    return Rendered(
        env=env_name,
        files={
            folder / SERVE_FILE: dump_yaml(config, header),
            folder / RAYSERVICE_FILE: dump_yaml(rayservice(env, config), header),
        },
        environment=env,
        release=release,
        config=config,
    )


def render_all(repo: Path, env: str | None = None, *, ray_schema: bool = True) -> list[Rendered]:
    """Render one environment or all of them (``ray_schema``: see `render`)."""
    names = [env] if env else environment_names(repo)
    return [render(repo, name, ray_schema=ray_schema) for name in names]
