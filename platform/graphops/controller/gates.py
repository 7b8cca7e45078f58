"""Gates: whether a lock may run in an environment, decided in one place.

A gate is a named verdict with a detail line. `verify_lock` is the one eligibility check of a
lock: a passed validation of exactly that lock (when the environment's policy requires one) and
model digests unchanged in the registry, with the gates of where the lock has run upstream
(upstream pin, `Soak`, health) listed between them. Promotion, carrying an experiment downstream
and starting an experiment all call it; so should any new way of placing a lock. The gates of a
promotion (`promotion_gates`: upstream pin, soak, healthy upstream through `health_probe`, then
`verify_lock`) are built here too, so `promote` and the CLI only ask.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from graphops._git import in_history
from graphops.controller.lock import record_mismatches
from graphops.environments import EnvironmentConfig, GraphLock, load_release
from graphops.errors import GraphOpsError
from graphops.registry import Registry, ValidationRecord


@dataclass(frozen=True)
class Gate:
    """One gate and its verdict."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Soak:
    """How long a lock has run upstream (since ``since``, measured to ``now``) against the policy."""

    since: datetime.datetime
    now: datetime.datetime
    minutes: float

    @property
    def passed(self) -> bool:
        """The lock has run upstream for at least the required minutes."""
        return self.now - self.since >= datetime.timedelta(minutes=self.minutes)

    @property
    def progress(self) -> str:
        """E.g. ``2.7 min of the 30 min required``."""
        soaked = (self.now - self.since).total_seconds() / 60
        return f"{soaked:.1f} min of the {self.minutes:g} min required"

    def gate(self, upstream: str) -> Gate:
        """The ``soak`` gate, for a lock that runs in the environment ``upstream``."""
        detail = f"live in {upstream} since {self.since.isoformat()} ({self.progress})"
        return Gate("soak", self.passed, detail)


def utcnow() -> datetime.datetime:
    """Now, in UTC, to the second (what release.yaml records, and what soaks are measured to)."""
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


@dataclass(frozen=True)
class RecordTrust:
    """Which validation records promotion trusts (the CI trust boundary, docs/security.md).

    Attributes:
        on_branch: Whether a commit is on the branch being promoted from (``in_history``): a
            record of a pull request's own commit (never merged as such) is not trusted.
        branch: That branch, for messages.
        require_trusted: Also require the trusted job's mark (``graphops.trusted``).
    """

    on_branch: Callable[[str], bool]
    branch: str = "HEAD"
    require_trusted: bool = False


def record_trust(repo: Path, env: EnvironmentConfig) -> RecordTrust:
    """The records promotion into ``env`` trusts: of commits in ``repo``'s history (HEAD)."""
    return RecordTrust(
        on_branch=lambda commit: in_history(repo, commit),
        branch="this checkout's branch",
        require_trusted=env.policy.require_trusted_record,
    )


Health = Callable[[str, str, GraphLock], str | None]
"""``health(env, graph, lock)``: None when ``lock`` runs healthy in ``env``, else why not."""


def health_probe(repo: Path) -> Health:
    """The ``healthy upstream`` gate's probe: what `graphops status` says of the graph there.

    An environment whose cluster cannot be read (no address, no token, unreachable) counts as
    healthy: the soak then decides (e.g. CI without access to the upstream cluster).
    """
    from graphops.controller.status import UNREADABLE, status  # status reads the clusters

    def health(env: str, graph: str, lock: GraphLock) -> str | None:
        rows = [s for s in status(repo, env) if s.graph == graph]
        if not rows:
            return f"{graph} is not released in {env}"
        row = rows[0]
        if row.live in UNREADABLE:
            return None
        return None if row.live == "RUNNING" else f"{graph} is {row.live} in {env}"

    return health


def promotion_gates(
    repo: Path,
    registry: Registry,
    env: EnvironmentConfig,
    graph: str,
    lock: GraphLock,
    now: datetime.datetime,
    live: Health | None = None,
) -> list[Gate]:
    """Every gate of ``env``'s policy for ``lock``; nothing is written.

    Args:
        repo: Repository root.
        registry: The MLflow registry (validation records, model digests).
        env: The target environment.
        graph: Graph name.
        lock: The lock to promote.
        now: The time the soak is measured to.
        live: ``live(env, graph, lock)`` -> None when the lock runs healthy in ``env``, else why
            not (`health_probe`); None skips the health gate.
    """
    policy = env.policy
    placed: list[Gate] = []
    if policy.upstream:
        upstream = load_release(repo, policy.upstream).graphs.get(graph)
        if upstream is None or upstream.lock != lock:
            placed.append(
                Gate(
                    "upstream",
                    False,
                    f"{graph} {lock.version} ({lock.content_hash[:19]}) is not what "
                    f"{policy.upstream} runs; promote it there first.",
                )
            )
        else:
            placed.append(
                Soak(upstream.promoted_at, now, policy.soak_minutes).gate(policy.upstream)
            )
            if live is not None:
                problem = live(policy.upstream, graph, lock)
                placed.append(
                    Gate(
                        "healthy upstream",
                        problem is None,
                        problem or f"running and healthy in {policy.upstream}",
                    )
                )
    return verify_lock(
        registry,
        lock,
        require_validation=policy.require_validation,
        upstream=placed,
        trust=record_trust(repo, env),
    )


def verify_lock(
    registry: Registry,
    lock: GraphLock,
    *,
    require_validation: bool,
    upstream: Sequence[Gate] = (),
    trust: RecordTrust | None = None,
) -> list[Gate]:
    """Every gate of ``lock``, in order: validation, the ``upstream`` gates, model digests.

    Args:
        registry: The MLflow registry (validation records, model digests).
        lock: The lock to place.
        require_validation: The environment's policy requires a passed validation of the lock.
        upstream: Gates already decided about where the lock runs upstream (upstream pin,
            ``Soak.gate``, health), listed between validation and digests.
        trust: Which records are trusted (None: any passed record of the lock).

    Returns:
        The gates; the lock is eligible when every one passed.
    """
    gates = [_validation(registry, lock, trust)] if require_validation else []
    return [*gates, *upstream, _digests(registry, lock)]


def _validation(registry: Registry, lock: GraphLock, trust: RecordTrust | None = None) -> Gate:
    """The lock's validation run passed, at its content hash and model digests."""
    if not lock.validation_run:
        return Gate("validation", False, "the lock names no validation run")
    try:
        record = registry.validation(lock.validation_run)
    except GraphOpsError as exc:
        return Gate("validation", False, str(exc))
    if record.status != "passed" or record.content_hash != lock.content_hash:
        return Gate(
            "validation",
            False,
            f"run {record.run_id} is {record.status} at {record.content_hash[:19]}, not a pass "
            f"of {lock.content_hash[:19]}",
        )
    differ = [f for f, _, _ in record_mismatches(record, lock)]
    if differ and all(f.startswith("models.") for f in differ):
        return Gate("validation", False, f"run {record.run_id} validated other model artifacts")
    if differ:
        return Gate(
            "validation", False, f"run {record.run_id} validated another {', '.join(differ)}"
        )
    if trust is not None:
        untrusted = _untrusted(record, trust)
        if untrusted:
            return Gate("validation", False, untrusted)
    return Gate("validation", True, f"passed in run {record.run_id}")


def _untrusted(record: ValidationRecord, trust: RecordTrust) -> str | None:
    """Why promotion must not trust ``record``, or None."""
    fix = (
        "promotion trusts only records of commits on the branch, written by the trusted job "
        "that validates merged commits (promote.yml; docs/security.md): merge, let it validate, "
        "then promote."
    )
    if record.commit is None:
        return f"run {record.run_id} names no commit; {fix}"
    if not trust.on_branch(record.commit):
        return (
            f"run {record.run_id} validated commit {record.commit[:12]}, which is not on "
            f"{trust.branch} (a pull request's own commit?); {fix}"
        )
    if trust.require_trusted and not record.trusted:
        return f"run {record.run_id} was not written by the trusted job; {fix}"
    return None


def _digests(registry: Registry, lock: GraphLock) -> Gate:
    """Every pinned model version still resolves to its locked digest."""
    changed = []
    for node, pin in lock.models.items():
        try:
            now = registry.resolve(pin.uri, where={"node": node})
        except GraphOpsError as exc:  # missing, or artifacts that no longer match the registration
            changed.append(f"{node}: {exc.what} {exc.fix}".rstrip())
            continue
        if now.digest != pin.digest:
            changed.append(f"{node}: {pin.uri} is {now.digest[:19]} now, {pin.digest[:19]} locked")
    if changed:
        return Gate("model digests", False, "; ".join(changed))
    return Gate("model digests", True, "every pinned model still matches the registry")
