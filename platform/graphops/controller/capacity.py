"""The peak of a rollout against the cluster's room: what `graphops diff` warns about.

A merge's *end state* may cost nothing (a version swap), while its rollout does not: `apply`
starts every new version beside the running one (blue/green: until the switch; a canary: for all
its steps) and removes the old one only after, so the cluster needs, for a while, the live
replicas **plus** every new application. A deployment whose replicas restart in place (Serve's
rolling update) needs at most the larger of its old and new sizes. KubeRay users meet this as
upgrades that stall for want of a second set of GPUs; `diff` shows it before the merge.

The cluster's room is read live: the totals of its ALIVE nodes (Ray's state API) less what the
running Serve replicas reserve. Other work on the cluster (a Ray Data job) is not counted. On a
cluster with GPU nodes, CPU-only work may run only on the labelled CPU nodes
(`graphops.controller.placement`): its CPUs are checked against those nodes' room as well.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import Field

from graphops._models import FrozenModel

EPSILON = 1e-6
"""Sums of fractional CPUs below this are zero (0.3 - 0.1 - 0.2 is -5.55e-17, not a delta)."""
GIB = 1024**3


class Amount(FrozenModel):
    """CPUs, GPUs and memory: a reservation, a delta or a capacity."""

    cpus: Annotated[float, Field(description="CPUs (Ray's logical CPUs).")] = 0.0
    gpus: Annotated[float, Field(description="GPUs (Ray's logical GPUs).")] = 0.0
    memory: Annotated[float, Field(description="Memory in bytes (Ray's `memory` resource).")] = 0.0

    def __add__(self, other: Amount) -> Amount:
        return Amount(
            cpus=self.cpus + other.cpus,
            gpus=self.gpus + other.gpus,
            memory=self.memory + other.memory,
        )

    def __sub__(self, other: Amount) -> Amount:
        return self + Amount(cpus=-other.cpus, gpus=-other.gpus, memory=-other.memory)

    def rounded(self) -> Amount:
        """The same amount with float noise (|x| < 1e-6) removed."""
        return Amount(cpus=_clean(self.cpus), gpus=_clean(self.gpus), memory=round(self.memory))

    @classmethod
    def total(cls, amounts: Iterable[Amount]) -> Amount:
        """The sum of ``amounts``, rounded."""
        out = cls()
        for amount in amounts:
            out = out + amount
        return out.rounded()

    def describe(self, signed: bool = False) -> str:
        """E.g. ``+0.9 CPUs, +0 GPUs, +2 GiB memory``."""
        sign = "+" if signed else ""
        return (
            f"{_clean(self.cpus):{sign}g} CPUs, {_clean(self.gpus):{sign}g} GPUs, "
            f"{self.memory / GIB:{sign}.3g} GiB memory"
        )


def _clean(value: float) -> float:
    return 0.0 if abs(value) < EPSILON else round(value, 6)


class Peak(FrozenModel):
    """What a rollout holds at its peak, and whether the live cluster has room for it."""

    after: Annotated[Amount, Field(description="Delta once the rollout is over (old removed).")]
    extra: Annotated[
        Amount, Field(description="Added at the peak, while old and new versions run side by side.")
    ]
    in_use: Annotated[
        Amount | None, Field(description="Reserved by the live Serve replicas now (None: unread).")
    ] = None
    capacity: Annotated[
        Amount | None, Field(description="Totals of the cluster's ALIVE nodes (None: unread).")
    ] = None
    cpu_only_extra: Annotated[
        float, Field(description="CPUs of CPU-only deployments added at the peak.")
    ] = 0.0
    cpu_node_free: Annotated[
        float | None,
        Field(
            description="Free CPUs of the labelled CPU nodes, where CPU-only work must run "
            "(None: no such rule on this cluster, or unread)."
        ),
    ] = None

    @property
    def free(self) -> Amount | None:
        """The room left now: capacity less what Serve holds."""
        if self.capacity is None or self.in_use is None:
            return None
        return (self.capacity - self.in_use).rounded()

    @property
    def short(self) -> list[str]:
        """Each resource the peak lacks, e.g. ``1 GPU short (needs 2, 1 free)``; empty: fits."""
        free = self.free
        if free is None:
            return []
        out = []
        for what, need, room in (
            ("CPUs", self.extra.cpus, free.cpus),
            ("GPUs", self.extra.gpus, free.gpus),
        ):
            if need > room + EPSILON:
                out.append(f"{what}: needs {need:g} more, {max(room, 0):g} free")
        if self.cpu_node_free is not None and self.cpu_only_extra > self.cpu_node_free + EPSILON:
            out.append(
                f"CPUs on CPU nodes (CPU-only work runs only there): needs "
                f"{self.cpu_only_extra:g} more, {max(self.cpu_node_free, 0):g} free"
            )
        if self.extra.memory > free.memory + 1 and self.capacity and self.capacity.memory:
            out.append(
                f"memory: needs {self.extra.memory / GIB:.3g} GiB more, "
                f"{max(free.memory, 0) / GIB:.3g} GiB free"
            )
        return out


def change_peak(change: str, delta: Amount) -> Amount:
    """What one deployment change adds at a rollout's peak.

    New deployments start beside the running ones; removed ones go only after the switch; a
    rolling restart or an in-place resize holds the larger of its old and new sizes.
    """
    if change == "new":
        return delta
    if change in ("replica restart", "in place"):
        return Amount(
            cpus=max(delta.cpus, 0.0), gpus=max(delta.gpus, 0.0), memory=max(delta.memory, 0.0)
        )
    return Amount()


def reserved(details: dict[str, Any]) -> dict[str, Amount]:
    """Deployment -> what its replicas reserve, from Serve's live details of one application."""
    out = {}
    for name, d in (details.get("deployments") or {}).items():
        config = d.get("deployment_config") or {}
        actor = config.get("ray_actor_options") or {}
        replicas = len(d.get("replicas") or []) or config.get("num_replicas") or 1
        out[name] = Amount(
            cpus=float(actor.get("num_cpus") or 0) * replicas,
            gpus=float(actor.get("num_gpus") or 0) * replicas,
            memory=float(actor.get("memory") or 0) * replicas,
        )
    return out


def node_totals(nodes: list[dict[str, Any]]) -> Amount:
    """The resources of the ALIVE nodes among Ray's node records (state API)."""
    alive = [n for n in nodes if n.get("state") == "ALIVE"]
    return Amount.total(
        Amount(
            cpus=float((n.get("resources_total") or {}).get("CPU", 0)),
            gpus=float((n.get("resources_total") or {}).get("GPU", 0)),
            memory=float((n.get("resources_total") or {}).get("memory", 0)),
        )
        for n in alive
    )


def peak(
    changes: Iterable[tuple[str, Amount, bool]],
    *,
    in_use: Amount | None = None,
    capacity: Amount | None = None,
    cpu_node_free: float | None = None,
) -> Peak:
    """The peak of a rollout made of ``changes``: (change, delta, CPU-only) per deployment."""
    changes = list(changes)
    return Peak(
        after=Amount.total(delta for _, delta, _ in changes),
        extra=Amount.total(change_peak(change, delta) for change, delta, _ in changes),
        in_use=in_use,
        capacity=capacity,
        cpu_only_extra=Amount.total(
            change_peak(change, delta) for change, delta, cpu_only in changes if cpu_only
        ).cpus,
        cpu_node_free=cpu_node_free,
    )
