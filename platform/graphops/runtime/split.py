"""The traffic splitter's contract: how a graph's stable ingress shares its route, and its report.

One splitter serves canaries, shadows and A/B experiments: the ingress of the version that owns
``/<graph>`` (the *stable* version) reads a `TrafficSplit` from its ``user_config`` (an in-place
update, no replica restarts). It keeps ``100 - sum(arm weights)`` percent of the requests,
answers each arm's share with that arm's stage deployments when the arm runs the same code (same
content hash and fusion: no hop) or through the arm's ingress otherwise (one hop), copies
``mirror.percent`` percent of the requests to a mirror (its answers discarded, compared with the
answer given), and counts every arm per replica, merged across replicas under ``name``. The
counts are read at ``GET /<graph>/split`` as a `SplitReport`.

Plain data (pydantic), no Ray: the controller builds a `TrafficSplit` and reads a `SplitReport`;
the ingress (`graphops.runtime._serve`) does the rest.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import Field, model_validator

from graphops._models import FrozenModel

SPLIT_ROUTE = "/split"
"""Sub-route of a graph's stable route that answers its `SplitReport` while it is split."""

Purpose = Literal["rollout", "experiment"]


class SplitTarget(FrozenModel):
    """Another version of the graph the stable ingress sends requests to."""

    app: Annotated[str, Field(description="Serve application of that version.")]
    version: Annotated[str, Field(description="Its graph version (named in x-graphops-arm).")]
    content_hash: Annotated[
        str | None,
        Field(
            description="Its graph content hash: equal to the stable's (with the same fuse), "
            "its stage deployments are called directly, with no hop; None: always through its "
            "ingress."
        ),
    ] = None
    fuse: Annotated[bool, Field(description="Whether its plan is fused.")] = True


class SplitArm(SplitTarget):
    """A version that answers a share of the route's requests."""

    weight: Annotated[float, Field(ge=0, le=100, description="Percent of requests it answers.")]


class Mirror(SplitTarget):
    """A version that gets a copy of some requests; its answers are compared, never returned."""

    percent: Annotated[
        float,
        Field(gt=0, le=100, description="Percent of requests copied to it, after the answer."),
    ]


class TrafficSplit(FrozenModel):
    """A stable ingress's ``user_config``: the share of its route other versions answer or see."""

    name: Annotated[
        str,
        Field(
            description="Names the per-arm figures merged across replicas and salts the sticky "
            "hash: a new name starts new figures and reassigns sticky keys."
        ),
    ]
    purpose: Annotated[
        Purpose,
        Field(description="rollout (a canary or shadow of apply) or experiment (release.yaml)."),
    ]
    own_version: Annotated[
        str | None,
        Field(description="The stable version's name (default: the graph's own version)."),
    ] = None
    arms: Annotated[
        tuple[SplitArm, ...],
        Field(description="Other versions and their shares; the stable keeps the rest."),
    ] = ()
    sticky_key: Annotated[
        str | None,
        Field(description="Request field whose value picks the arm; None: each request at random."),
    ] = None
    mirror: Annotated[Mirror | None, Field(description="A version that sees copies.")] = None
    output: Annotated[
        str | None,
        Field(
            description="Response field compared and counted per arm (default: the response's "
            "first field)."
        ),
    ] = None

    @model_validator(mode="after")
    def _shares(self) -> Self:
        total = sum(a.weight for a in self.arms)
        if total > 100:
            raise ValueError(f"the arms' weights sum to {total:g}, above 100")
        apps = [a.app for a in self.arms]
        if len(set(apps)) != len(apps):
            raise ValueError("an application is named by two arms")
        return self

    @property
    def own_weight(self) -> float:
        """Percent of requests the stable version answers itself."""
        return 100.0 - sum(a.weight for a in self.arms)


Role = Literal["stable", "arm", "mirror"]


class ArmFigures(FrozenModel):
    """What one arm did over a period: the figures a rollout step is judged on."""

    requests: Annotated[int, Field(ge=0, description="Requests it answered (or was copied).")]
    errors: Annotated[int, Field(ge=0, description="5xx answers (and failed calls).")]
    error_rate: Annotated[float, Field(ge=0, le=1, description="errors / requests (0 if none).")]
    p50_ms: Annotated[float | None, Field(description="Median latency (ms); None: no requests.")]
    p99_ms: Annotated[float | None, Field(description="99th percentile latency (ms).")]
    compared: Annotated[
        int, Field(ge=0, description="Mirror: rows compared with the answer given.")
    ] = 0
    agreed: Annotated[int, Field(ge=0, description="Mirror: rows whose main output agreed.")] = 0

    @property
    def agreement(self) -> float | None:
        """Share of compared rows that agreed (None when nothing was compared)."""
        return self.agreed / self.compared if self.compared else None


class ArmReport(FrozenModel):
    """One arm of a split: who, its share, its raw totals across replicas since the split began."""

    role: Annotated[Role, Field(description="stable (owns the route), arm or mirror.")]
    version: Annotated[str, Field(description="Graph version.")]
    app: Annotated[str, Field(description="Serve application.")]
    weight: Annotated[float, Field(description="Percent answered (mirror: percent copied).")]
    raw: Annotated[
        dict[str, Any],
        Field(description="Mergeable raw counters (requests, errors, latency histogram, ...)."),
    ]
    figures: Annotated[dict[str, Any], Field(description="Readable figures of `raw`.")] = {}


class SplitReport(FrozenModel):
    """``GET /<graph>/split``: every arm's totals, merged across the stable ingress's replicas."""

    graph: Annotated[str, Field(description="Graph name.")]
    name: Annotated[str, Field(description="The split's name (`TrafficSplit.name`).")]
    purpose: Annotated[Purpose, Field(description="rollout or experiment.")]
    same_code: Annotated[
        dict[str, bool], Field(description="Arm or mirror app -> answered with no extra hop.")
    ] = {}
    since: Annotated[float, Field(description="When counting began (epoch seconds).")]
    now: Annotated[float, Field(description="When this was read (epoch seconds).")]
    arms: Annotated[tuple[ArmReport, ...], Field(description="Stable first, then arms, mirror.")]
    sticky_key: str | None = None
    output: str | None = None

    def arm(self, app: str) -> ArmReport | None:
        """The arm (or mirror) served by ``app``."""
        return next((a for a in self.arms if a.app == app), None)


__all__ = [
    "SPLIT_ROUTE",
    "ArmFigures",
    "ArmReport",
    "Mirror",
    "SplitArm",
    "SplitReport",
    "SplitTarget",
    "TrafficSplit",
]
