"""Checks a release must pass before it is rendered: its experiments, and Ray's own Serve schema.

Both raise `ConfigError` naming the file, the graph, the field and the fix; `render` calls them
on every environment, so `graphops render --check` (CI, on every pull request) refuses a bad
release before anything reaches a cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from graphops.environments import EnvironmentConfig, Release
from graphops.errors import ConfigError, did_you_mean


def check_traffic(env: EnvironmentConfig, release: Release, where: Path) -> None:
    """Refuse an invalid experiment: weights, versions, validation, request fields, sticky key.

    The control version's ingress splits ``/<graph>`` and validates every request with its own
    schema before an arm answers it, so every arm and the shadow must take the same request
    fields as the control.

    Raises:
        ConfigError: Naming the graph, the field and the fix.
    """
    for graph, entry in sorted(release.graphs.items()):
        traffic = entry.traffic
        if traffic is None:
            continue
        field = f"graphs.{graph}.traffic"

        def refuse(what: str, fix: str, field: str = field) -> None:
            raise ConfigError(f"{field}: {what}", fix=fix, file=where)

        control = entry.lock.version
        if not traffic.arms and traffic.shadow is None:
            refuse("declares neither arms nor a shadow.", "Remove traffic: or add an arm.")
        weights = {control: traffic.weight} | {v: a.weight for v, a in traffic.arms.items()}
        total = sum(weights.values())
        if abs(total - 100) > 1e-6:
            shares = ", ".join(f"{v} {w:g}" for v, w in weights.items())
            refuse(
                f"the weights add up to {total:g} ({shares}; {control} is the lock's "
                "traffic.weight); they must add up to 100.",
                "Change the weights so they add up to 100.",
            )
        for version, arm in traffic.arms.items():
            if version == control:
                refuse(
                    f"arm {version} is the version of the lock itself.",
                    "Name each arm once: the lock is the control arm (traffic.weight).",
                    f"{field}.arms.{version}",
                )
            if arm.lock.version != version:
                refuse(
                    f"arm {version} holds a lock of version {arm.lock.version}.",
                    "Key each arm by the version of its lock (`graphops experiment start`).",
                    f"{field}.arms.{version}",
                )
        pinned = [("lock", entry.lock), *((f"arms.{v}", a.lock) for v, a in traffic.arms.items())]
        if traffic.shadow is not None:
            shadow_version = traffic.shadow.lock.version
            if shadow_version in weights:
                refuse(
                    f"the shadow {shadow_version} is also an arm.",
                    "A version either answers (an arm) or is shadowed, not both.",
                    f"{field}.shadow",
                )
            pinned.append(("shadow", traffic.shadow.lock))
        if env.policy.require_validation:
            for name, lock in pinned:
                if not lock.validation_run:
                    refuse(
                        f"{name} ({lock.version}) names no validation run, and {env.name} "
                        "requires validation.",
                        "Add versions with `graphops experiment start`, which locks a "
                        "validated version.",
                        f"{field}.{name}" if name != "lock" else f"graphs.{graph}.lock",
                    )
        fields = entry.lock.request_fields
        for name, lock in pinned[1:]:
            if fields and lock.request_fields and set(lock.request_fields) != set(fields):
                refuse(
                    f"{name} ({lock.version}) takes the request fields "
                    f"{', '.join(lock.request_fields)}; the control {control} takes "
                    f"{', '.join(fields)}, and its ingress validates every request of /{graph}.",
                    "Experiment only between versions with the same request schema (a new "
                    "field needs a release of its own first).",
                    f"{field}.{name}",
                )
        key = traffic.sticky_key
        if key is not None:
            for name, lock in pinned:
                if not lock.request_fields:
                    refuse(
                        f"the lock of {name} ({lock.version}) does not record its request "
                        "fields, so the sticky key cannot be checked.",
                        "Re-lock that version with `graphops experiment start` or promote.",
                        f"{field}.sticky_key",
                    )
                if key not in lock.request_fields:
                    refuse(
                        f'sticky_key "{key}" is no field of the request of {graph} '
                        f"{lock.version}.{did_you_mean(key, lock.request_fields)}",
                        f"Use one of: {', '.join(lock.request_fields)} (or none: random).",
                        f"{field}.sticky_key",
                    )


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


def check_models(env: EnvironmentConfig, release: Release, where: Path) -> None:
    """Refuse a lock whose model sources the environment's nodes cannot read.

    A source is reachable when it starts with one of ``models.artifact_stores``: a ``file://``
    path of the machine that trained the model is readable only where every node shares its
    filesystem (a local cluster), never from a pod.

    Raises:
        ConfigError: Naming the graph, the model node, its registered version and its URI.
    """
    stores = env.models.artifact_stores
    for graph, entry in sorted(release.graphs.items()):
        pinned = [("lock", entry.lock)]
        if entry.traffic is not None:
            pinned += [(f"traffic.arms.{v}.lock", a.lock) for v, a in entry.traffic.arms.items()]
            if entry.traffic.shadow is not None:
                pinned.append(("traffic.shadow.lock", entry.traffic.shadow.lock))
        for name, lock in pinned:
            for node, model in sorted(lock.models.items()):
                source = (
                    model.source
                    if "://" in model.source or ":" in model.source[:20]
                    else ("file://" + model.source)
                )
                if source.startswith(stores):
                    continue
                raise ConfigError(
                    f"graphs.{graph}.{name}.models.{node}.source: model {model.uri} "
                    f"({graph} {lock.version}, node {node}) is stored at {model.source}, which "
                    f"the nodes of {env.name} cannot read (its models.artifact_stores: "
                    f"{', '.join(stores) or 'none'}).",
                    fix="Register the model on a tracking server whose artifact store the "
                    "cluster reads (mlflow server --serve-artifacts: mlflow-artifacts:/...; or "
                    "s3://, gs://) and promote again; add file:// to models.artifact_stores only "
                    "when every node shares this machine's filesystem.",
                    file=where,
                )
