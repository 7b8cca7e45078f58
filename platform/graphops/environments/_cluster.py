"""The cluster an environment runs on: its addresses, token, image and Ray pods."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from graphops._models import FrozenModel

QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?")
"""A Kubernetes memory quantity, e.g. 8Gi."""
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class Image(FrozenModel):
    """A container image, pinned by digest once CI has built it."""

    repository: Annotated[
        str, Field(description="Image repository, e.g. ghcr.io/acme/graphops.")
    ] = "rayproject/ray"
    tag: Annotated[str, Field(description="Image tag, e.g. 0.1.0.")] = "2.60.0-py311"
    digest: Annotated[
        str | None,
        Field(
            description="sha256:<64 hex> of the built image, written by CI's image job through "
            "a promotion commit; None: not built yet (the tag alone is rendered)."
        ),
    ] = None

    @field_validator("digest")
    @classmethod
    def _sha256(cls, value: str | None) -> str | None:
        if value is not None and not DIGEST.fullmatch(value):
            raise ValueError("an image digest is sha256: followed by 64 lowercase hex digits")
        return value

    @property
    def reference(self) -> str:
        """``repository:tag@digest`` (or ``repository:tag`` before CI pinned the digest)."""
        ref = f"{self.repository}:{self.tag}"
        return f"{ref}@{self.digest}" if self.digest else ref


class PodGroup(FrozenModel):
    """The resources of one Ray pod (its container's requests, equal to its limits)."""

    cpus: Annotated[float, Field(gt=0, description="CPUs of each pod (request = limit).")] = 2
    memory: Annotated[
        str, Field(description="Memory of each pod, a Kubernetes quantity (request = limit).")
    ] = "8Gi"
    gpus: Annotated[int, Field(ge=0, description="nvidia.com/gpu of each pod (0: a CPU pod).")] = 0

    @field_validator("memory")
    @classmethod
    def _quantity(cls, value: str) -> str:
        if not QUANTITY.fullmatch(value):
            raise ValueError("memory is a Kubernetes quantity such as 8Gi or 512Mi")
        return value


class WorkerGroup(PodGroup):
    """A worker group of the RayService: its pods and how many of them."""

    min_replicas: Annotated[int, Field(ge=0, description="Fewest pods (autoscaling floor).")] = 1
    max_replicas: Annotated[int, Field(ge=1, description="Most pods (autoscaling ceiling).")] = 4
    replicas: Annotated[
        int | None, Field(ge=0, description="Pods at creation; None: min_replicas.")
    ] = None

    @model_validator(mode="after")
    def _bounds(self) -> WorkerGroup:
        start = self.min_replicas if self.replicas is None else self.replicas
        if not self.min_replicas <= start <= self.max_replicas:
            raise ValueError(
                f"min_replicas {self.min_replicas} <= replicas {start} <= max_replicas "
                f"{self.max_replicas} must hold"
            )
        return self


class ClusterConfig(FrozenModel):
    """Where the environment's Ray cluster is and how to reach it."""

    dashboard: Annotated[
        str | None,
        Field(description="Ray dashboard URL (Serve REST API), e.g. http://127.0.0.1:8265."),
    ] = None
    dashboard_env: Annotated[
        str | None,
        Field(description="Name of the environment variable holding the dashboard URL instead."),
    ] = None
    serve_url: Annotated[
        str | None,
        Field(
            description="Base URL of the cluster's Serve HTTP proxy, for smoke tests and status."
        ),
    ] = None
    serve_url_env: Annotated[
        str | None,
        Field(description="Name of the environment variable holding the Serve URL instead."),
    ] = None
    token_env: Annotated[
        str | None,
        Field(
            description="Name of the environment variable holding the cluster's token; None: "
            "Ray's own lookup (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token)."
        ),
    ] = None
    gpus: Annotated[
        bool, Field(description="Whether the cluster has GPUs; without, GPU requests become 0.")
    ] = False
    app_cpu_budget: Annotated[
        float | None,
        Field(
            gt=0,
            description="Scale each application's CPU requests down to at most this many CPUs "
            "(a small cluster must fit two versions side by side during a rollout); None: as "
            "the graph declares.",
        ),
    ] = None
    image: Annotated[
        Image,
        Field(
            description="The container image every Ray pod runs (graphops and its dependencies "
            "installed; with code.mode image, the graphs too)."
        ),
    ] = Image()
    head: Annotated[PodGroup, Field(description="The head pod of the rendered RayService.")] = (
        PodGroup()
    )
    worker_groups: Annotated[
        dict[str, WorkerGroup],
        Field(
            description="Worker groups of the rendered RayService, by name: a CPU group, and a "
            "GPU group (gpus > 0) where cluster.gpus is true."
        ),
    ] = {}
    autoscaling: Annotated[
        bool,
        Field(
            description="KubeRay's in-tree autoscaler: workers scale between their min and max "
            "replicas with Serve's demand."
        ),
    ] = True
    token_secret: Annotated[
        str | None,
        Field(
            description="Kubernetes Secret (key auth_token) holding the Ray token KubeRay and "
            "the pods share (authOptions.secretName); None: KubeRay generates one per cluster."
        ),
    ] = None
    mlflow_secret: Annotated[
        str | None,
        Field(
            description="Kubernetes Secret whose keys become the Ray containers' environment "
            "(MLFLOW_TRACKING_URI, MLFLOW_TRACKING_TOKEN, ...); None: none."
        ),
    ] = None

    @model_validator(mode="after")
    def _gpu_groups(self) -> ClusterConfig:
        gpu = [n for n, g in self.worker_groups.items() if g.gpus]
        if self.worker_groups and self.gpus and not gpu:
            raise ValueError(
                "cluster.gpus is true but no worker group has gpus > 0: add a GPU group to "
                "cluster.worker_groups (or set gpus: false)"
            )
        if gpu and not self.gpus:
            raise ValueError(
                f"worker group(s) {', '.join(gpu)} have GPUs but cluster.gpus is false: set "
                "gpus: true (or remove their gpus)"
            )
        return self
