"""The schema of `release.yaml`: the pinned graphs, their locks, experiments and overrides."""

from __future__ import annotations

import datetime
import re
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from graphops._models import FrozenModel
from graphops.graph import manifest_hash
from graphops.registry import ResolvedModel
from graphops.runtime.schema import DeploymentOverride

PACKAGE_URI = re.compile(r"gcs://_ray_pkg_[0-9a-f]{16,64}\.zip")
"""The only code package a lock may name: Ray's content-addressed package, uploaded by apply."""


class GraphLock(FrozenModel):
    """Exactly what was validated and is promoted: the same lock is what is served."""

    version: Annotated[str, Field(description="Graph version.")]
    content_hash: Annotated[str, Field(description="Content hash of the graph package.")]
    manifest: Annotated[
        dict[str, str] | None,
        Field(
            description="Each file of graphs/<graph>/ -> its sha256: what every worker compares "
            "its code with, file by file, before importing any of it (hashes to content_hash). "
            "Unset only in locks made before graphops 0.2, which must be locked again."
        ),
    ] = None
    commit: Annotated[str, Field(description="Git commit the lock was taken at.")]
    models: Annotated[
        dict[str, ResolvedModel],
        Field(description="Model node -> exact registry version and artifact digest."),
    ] = {}
    validation_run: Annotated[
        str | None, Field(description="MLflow run of the passed validation of this lock.")
    ] = None
    package: Annotated[
        str,
        Field(
            description="Ray package URI of the graphs/ folder at the commit "
            "(gcs://_ray_pkg_<content hash>.zip): what replicas run when the environment ships "
            "code as a package."
        ),
    ]
    example: Annotated[
        dict[str, Any] | None,
        Field(description="One request object: the OpenAPI example and the smoke test of apply."),
    ] = None

    @model_validator(mode="after")
    def _manifest_matches(self) -> GraphLock:
        if self.manifest is not None and manifest_hash(self.manifest) != self.content_hash:
            raise ValueError(
                f"the manifest hashes to {manifest_hash(self.manifest)[:19]}, not to the "
                f"content_hash {self.content_hash[:19]}: a lock is written by `graphops "
                "promote`, never by hand"
            )
        return self

    @field_validator("package")
    @classmethod
    def _content_addressed(cls, value: str) -> str:
        if not PACKAGE_URI.fullmatch(value):
            raise ValueError(
                "a lock's code package must be Ray's content-addressed gcs://_ray_pkg_<hex>.zip, "
                "which apply rebuilds from the locked commit and verifies before upload; any "
                "other code source is declared in environment.yaml (code.working_dir)"
            )
        return value

    platform_version: Annotated[str, Field(description="graphops version that locked it.")]
    request_fields: Annotated[
        tuple[str, ...],
        Field(description="Top-level fields of the request schema (what a sticky key may name)."),
    ] = ()


class Arm(FrozenModel):
    """Another pinned version of the graph that takes a share of the stable route's traffic."""

    lock: GraphLock
    weight: Annotated[float, Field(ge=0, le=100, description="Percent of requests it answers.")]
    promoted_at: Annotated[
        datetime.datetime, Field(description="When the arm was added (UTC); its soak starts here.")
    ]
    deployments: Annotated[
        dict[str, DeploymentOverride],
        Field(description="The arm's own per-deployment scaling/resource overrides."),
    ] = {}


class Shadow(FrozenModel):
    """A pinned version that gets a copy of some requests; its answers are recorded, never returned."""

    lock: GraphLock
    percent: Annotated[
        float, Field(gt=0, le=100, description="Percent of requests copied to it, asynchronously.")
    ]
    promoted_at: Annotated[datetime.datetime, Field(description="When it was added (UTC).")]
    deployments: Annotated[
        dict[str, DeploymentOverride],
        Field(description="Its own per-deployment scaling/resource overrides."),
    ] = {}


class Traffic(FrozenModel):
    """An experiment on the graph's stable route: weighted arms, stickiness, shadow traffic.

    The entry's own lock is the control arm with ``weight``; ``arms`` are the other versions, by
    version. Weights must sum to 100. Changing weights is an in-place update (no replica restarts).
    """

    weight: Annotated[
        float, Field(ge=0, le=100, description="Percent of requests the entry's own lock answers.")
    ] = 100
    sticky_key: Annotated[
        str | None,
        Field(
            description="Request field whose value picks the arm (same value, same arm); "
            "None: each request is assigned at random."
        ),
    ] = None
    arms: Annotated[
        dict[str, Arm], Field(description="Version -> the other arms of the experiment.")
    ] = {}
    shadow: Annotated[Shadow | None, Field(description="Shadow traffic to a candidate.")] = None
    output: Annotated[
        str | None,
        Field(
            description="Response field whose distribution is measured per arm (default: the "
            "first field of the response)."
        ),
    ] = None


class ReleaseEntry(FrozenModel):
    """One graph in an environment: its lock, when it was promoted, per-environment overrides."""

    lock: GraphLock
    promoted_at: Annotated[
        datetime.datetime, Field(description="When the promotion was committed (UTC).")
    ]
    deployments: Annotated[
        dict[str, DeploymentOverride],
        Field(description="Per-deployment scaling/resource overrides in this environment."),
    ] = {}
    traffic: Annotated[
        Traffic | None,
        Field(description="An A/B experiment and/or shadow traffic (None: the lock takes all)."),
    ] = None

    @property
    def validation_run(self) -> str | None:
        """The validation run of the lock."""
        return self.lock.validation_run


class Release(FrozenModel):
    """`environments/<env>/release.yaml`: the pinned graphs (written by `graphops promote`)."""

    graphs: Annotated[
        dict[str, ReleaseEntry], Field(description="Graph name -> its release in this environment.")
    ] = {}
