"""The arguments of the generic Serve application builder: which graph, at which lock, how scaled.

They are plain data (JSON/YAML-able): a rendered Serve config file carries them under ``args`` of
``import_path: graphops.runtime.online:app``, so no graph ever needs Serve code of its own.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from graphops.features import FeaturesConfig
from graphops.registry import ResolvedModel
from graphops.runtime._deployments import DeploymentOverride
from graphops.runtime._http import MAX_BODY_BYTES


class AppArgs(BaseModel):
    """Arguments of ``graphops.runtime.online:app`` (validated; unknown keys are rejected)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

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
    models: Annotated[
        dict[str, ResolvedModel],
        Field(description="Exact model version and artifact digest per model node (the lock)."),
    ] = {}
    tracking_uri: Annotated[
        str | None, Field(description="MLflow tracking URI the models are loaded from.")
    ] = None
    work_dir: Annotated[
        str, Field(description="Local folder for MLflow's default sqlite store and downloads.")
    ] = ".graphops"
    fuse: Annotated[
        bool, Field(description="Fuse compatible nodes (False: one deployment per node).")
    ] = True
    cpu_only: Annotated[
        bool, Field(description="The cluster has no GPUs: GPU requests become 0.")
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
    max_body_bytes: Annotated[
        int, Field(gt=0, description="Payload limit per request; larger bodies get a 413.")
    ] = MAX_BODY_BYTES
    features: Annotated[
        FeaturesConfig,
        Field(description="The feature store lookup nodes read (the environment's `features:`)."),
    ] = FeaturesConfig()
    example: Annotated[
        dict[str, Any] | None,
        Field(description="One request object, shown in the OpenAPI document."),
    ] = None
