"""Rendering an environment: `release.yaml` + `environment.yaml` -> `serve.yaml` + `rayservice.yaml`.

Pure and deterministic: the same inputs give byte-identical files, so CI can refuse stale or
hand-edited ones (`graphops render --check`). `serve.yaml` is validated with Ray's own
`ServeDeploySchema`; `rayservice.yaml` carries the same config as KubeRay's `serveConfigV2`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphops.environments import (
    ENVIRONMENTS_DIR,
    EnvironmentConfig,
    Release,
    ReleaseEntry,
    dump_yaml,
    environment_names,
    load_environment,
    load_release,
)
from graphops.errors import ConfigError
from graphops.runtime._args import AppArgs
from graphops.runtime.online import IMPORT_PATH

SERVE_FILE = "serve.yaml"
RAYSERVICE_FILE = "rayservice.yaml"
HEADER = (
    "# Rendered by `graphops render --env {env}` from environments/{env}/release.yaml and\n"
    "# environment.yaml. Do not edit: CI runs `graphops render --check` and refuses changes.\n"
)


def app_name(graph: str, entry: ReleaseEntry) -> str:
    """The Serve application of a graph version: ``<graph>-<version>-<lock id>``.

    The lock id changes with anything that needs new replicas (code, models, code source), so
    such a change starts a new application beside the old one; scaling overrides do not.
    """
    lock = entry.lock
    identity = json.dumps(
        {
            "content_hash": lock.content_hash,
            "models": {k: v.model_dump(mode="json") for k, v in sorted(lock.models.items())},
            "package": lock.package,
        },
        sort_keys=True,
    )
    return f"{graph}-{lock.version}-{hashlib.sha256(identity.encode()).hexdigest()[:8]}"


def application(
    graph: str, entry: ReleaseEntry, env: EnvironmentConfig, working_dir: str | None
) -> dict[str, Any]:
    """One application of the Serve config for ``graph`` as pinned by ``entry``."""
    lock = entry.lock
    args = AppArgs(
        graph=graph,
        repo=".",
        content_hash=lock.content_hash,
        models=lock.models,
        tracking_uri=env.code.tracking_uri,
        cpu_only=not env.cluster.gpus,
        cpu_budget=env.cluster.app_cpu_budget,
        deployments=entry.deployments,
        route=f"/{graph}",
        example=lock.example,
        features=env.features,
    )
    runtime_env: dict[str, Any] = {}
    if working_dir:
        runtime_env["working_dir"] = working_dir
    if env.code.pip:
        runtime_env["pip"] = list(env.code.pip)
    out: dict[str, Any] = {
        "name": app_name(graph, entry),
        "route_prefix": f"/{graph}",
        "import_path": IMPORT_PATH,
        "args": args.model_dump(mode="json", exclude_defaults=True),
    }
    if runtime_env:
        out["runtime_env"] = runtime_env
    return out


def working_dir_for(env: EnvironmentConfig, entry: ReleaseEntry) -> str | None:
    """The code source of a graph version: the URI template at its commit, or its package URI."""
    if env.code.working_dir:
        return env.code.working_dir.format(commit=entry.lock.commit)
    return entry.lock.package


def serve_config(env: EnvironmentConfig, release: Release) -> dict[str, Any]:
    """The environment's Serve config (``ServeDeploySchema``), one application per graph."""
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": env.http_host, "port": env.http_port},
        "applications": [
            application(graph, entry, env, working_dir_for(env, entry))
            for graph, entry in sorted(release.graphs.items())
        ],
    }


def check_serve_schema(config: dict[str, Any], where: Path) -> None:
    """Validate ``config`` with Ray's own ``ServeDeploySchema``; raise `ConfigError` naming why."""
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    try:
        ServeDeploySchema.model_validate(config)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = ".".join(map(str, err["loc"]))
        raise ConfigError(
            f"The rendered Serve config is invalid for Ray at {field}: {err['msg']}.",
            fix="Fix environment.yaml (code.working_dir must be a remote URI) and re-render.",
            file=where,
        ) from exc


def rayservice(env: EnvironmentConfig, config: dict[str, Any]) -> dict[str, Any]:
    """A KubeRay ``RayService`` serving ``config`` (its ``serveConfigV2``)."""
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": f"graphops-{env.name}", "labels": {"graphops/environment": env.name}},
        "spec": {
            "serveConfigV2": dump_yaml(config),
            "rayClusterConfig": {
                "rayVersion": "2.60.0",
                "headGroupSpec": {
                    "rayStartParams": {"dashboard-host": "0.0.0.0"},
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "ray-head",
                                    "image": "rayproject/ray:2.60.0-py311",
                                    "env": [{"name": "RAY_AUTH_MODE", "value": "token"}],
                                    "ports": [
                                        {"containerPort": 8265, "name": "dashboard"},
                                        {"containerPort": env.http_port, "name": "serve"},
                                    ],
                                }
                            ]
                        }
                    },
                },
            },
        },
    }


@dataclass(frozen=True)
class Rendered:
    """The files of one environment, as they must be on disk."""

    env: str
    files: dict[Path, str]

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


def render(repo: Path, env_name: str) -> Rendered:
    """Render ``environments/<env_name>/`` (nothing is written; see `Rendered.write`)."""
    env = load_environment(repo, env_name)
    release = load_release(repo, env_name)
    folder = repo / ENVIRONMENTS_DIR / env_name
    config = serve_config(env, release)
    check_serve_schema(config, folder / SERVE_FILE)
    header = HEADER.format(env=env_name)
    return Rendered(
        env=env_name,
        files={
            folder / SERVE_FILE: dump_yaml(config, header),
            folder / RAYSERVICE_FILE: dump_yaml(rayservice(env, config), header),
        },
    )


def render_all(repo: Path, env: str | None = None) -> list[Rendered]:
    """Render one environment or all of them."""
    return [render(repo, name) for name in ([env] if env else environment_names(repo))]
