"""Gates: one eligibility check of a lock (validation, upstream gates, digests) and the soak."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import cast

import git

from graphops._git import in_history
from graphops.controller.gates import Gate, RecordTrust, Soak, verify_lock
from graphops.environments import GraphLock
from graphops.errors import RegistryError, Where
from graphops.registry import Registry, ResolvedModel, ValidationRecord
from tests.fixtures.locks import lock

T0 = datetime.datetime(2026, 11, 28, 17, 49, 19, tzinfo=datetime.UTC)


class _Registry:
    """Just what the gates read: validation records by run id and model digests by URI."""

    def __init__(self, locked: GraphLock, *, status: str = "passed", digest: str = "a") -> None:
        self.record = ValidationRecord(
            run_id="run1",
            graph="digits",
            version=locked.version,
            content_hash=locked.content_hash,
            status=status,
            models={n: p.uri for n, p in locked.models.items()},
            digests={n: p.digest for n, p in locked.models.items()},
        )
        self.digest = f"sha256:{digest * 64}"
        self.refusal: str | None = None

    def validation(self, run_id: str) -> ValidationRecord:
        if run_id != self.record.run_id:
            raise RegistryError(f"No validation run {run_id}.", fix="Validate first.")
        return self.record

    def resolve(self, uri: str, *, where: Where | None = None) -> ResolvedModel:
        if self.refusal is not None:
            raise RegistryError(self.refusal, fix="Re-register the model.", **(where or {}))
        return ResolvedModel(name="digits", version=1, digest=self.digest, source="file:///m")


def _registry(locked: GraphLock, *, status: str = "passed", digest: str = "a") -> Registry:
    """A stand-in registry (the gates need no MLflow to be tested)."""
    return cast(Registry, _Registry(locked, status=status, digest=digest))


def test_verify_lock_orders_validation_upstream_gates_then_digests() -> None:
    locked = lock()
    soak = Soak(T0, T0 + datetime.timedelta(minutes=31), 30).gate("dev")
    gates = verify_lock(_registry(locked), locked, require_validation=True, upstream=[soak])
    assert [(g.name, g.passed) for g in gates] == [
        ("validation", True),
        ("soak", True),
        ("model digests", True),
    ]
    assert gates[0].detail == "passed in run run1"


def test_verify_lock_without_required_validation_checks_digests_only() -> None:
    locked = lock()
    [gate] = verify_lock(_registry(locked, digest="b"), locked, require_validation=False)
    assert gate.name == "model digests" and not gate.passed
    assert "logits: models:/digits/1 is sha256:bbbb" in gate.detail


def test_a_model_the_registry_refuses_fails_the_digest_gate_with_its_fix() -> None:
    locked = lock()
    registry = _Registry(locked)
    registry.refusal = "The artifacts of models:/digits/1 were changed in the store."
    [gate] = verify_lock(cast(Registry, registry), locked, require_validation=False)
    assert not gate.passed
    assert gate.detail == (
        "logits: The artifacts of models:/digits/1 were changed in the store. "
        "Re-register the model."
    )


def test_verify_lock_refuses_a_failed_or_missing_validation() -> None:
    locked = lock()
    failed = verify_lock(_registry(locked, status="failed"), locked, require_validation=True)
    assert failed[0] == Gate(
        "validation",
        False,
        f"run run1 is failed at {locked.content_hash[:19]}, not a pass of "
        f"{locked.content_hash[:19]}",
    )
    unknown = locked.model_copy(update={"validation_run": "run2"})
    [gate, _] = verify_lock(_registry(locked), unknown, require_validation=True)
    assert not gate.passed and "No validation run run2" in gate.detail
    none = locked.model_copy(update={"validation_run": None})
    [gate, _] = verify_lock(_registry(locked), none, require_validation=True)
    assert gate == Gate("validation", False, "the lock names no validation run")


def test_soak_measures_the_time_since_the_upstream_pin() -> None:
    early = Soak(T0, T0 + datetime.timedelta(minutes=2.7), 30)
    assert not early.passed and early.progress == "2.7 min of the 30 min required"
    assert early.gate("dev") == Gate(
        "soak",
        False,
        "live in dev since 2026-11-28T17:49:19+00:00 (2.7 min of the 30 min required)",
    )
    assert Soak(T0, T0 + datetime.timedelta(minutes=30), 30).passed
    assert Soak(T0, T0, 0).passed


def _repo_with_a_side_branch(root: Path) -> tuple[Path, str, str]:
    """A git repo: main with one commit, and a `pr` branch one commit ahead of it (not merged)."""
    repo = git.Repo.init(root, initial_branch="main")
    (root / "a.txt").write_text("a")
    repo.index.add(["a.txt"])
    on_main = repo.index.commit("main").hexsha
    repo.git.checkout("-b", "pr")
    (root / "b.txt").write_text("b")
    repo.index.add(["b.txt"])
    on_pr = repo.index.commit("pr").hexsha
    repo.git.checkout("main")
    repo.close()
    return root, on_main, on_pr


def _record_of(locked: GraphLock, commit: str | None, trusted: bool = False) -> Registry:
    registry = _Registry(locked)
    registry.record = registry.record.model_copy(update={"commit": commit, "trusted": trusted})
    return cast(Registry, registry)


def test_a_record_of_a_commit_not_on_the_branch_is_refused(tmp_path: Path) -> None:
    root, on_main, on_pr = _repo_with_a_side_branch(tmp_path)
    locked = lock()
    trust = RecordTrust(on_branch=lambda c: in_history(root, c), branch="main")

    ok = verify_lock(_record_of(locked, on_main), locked, require_validation=True, trust=trust)
    [gate, _] = verify_lock(_record_of(locked, on_pr), locked, require_validation=True, trust=trust)
    [none, _] = verify_lock(_record_of(locked, None), locked, require_validation=True, trust=trust)

    assert ok[0].passed
    assert not gate.passed
    assert f"run run1 validated commit {on_pr[:12]}, which is not on main" in gate.detail
    assert "trusted job that validates merged commits" in gate.detail
    assert not none.passed and "names no commit" in none.detail


def test_an_environment_can_require_the_trusted_jobs_mark(tmp_path: Path) -> None:
    root, on_main, _ = _repo_with_a_side_branch(tmp_path)
    locked = lock()
    trust = RecordTrust(on_branch=lambda c: in_history(root, c), require_trusted=True)

    [unmarked, _] = verify_lock(
        _record_of(locked, on_main), locked, require_validation=True, trust=trust
    )
    [marked, _] = verify_lock(
        _record_of(locked, on_main, trusted=True), locked, require_validation=True, trust=trust
    )

    assert not unmarked.passed and "was not written by the trusted job" in unmarked.detail
    assert marked.passed


def test_in_history_is_false_for_unknown_commits(tmp_path: Path) -> None:
    root, on_main, on_pr = _repo_with_a_side_branch(tmp_path)

    assert in_history(root, on_main)
    assert not in_history(root, on_pr)
    assert not in_history(root, "0" * 40)
    assert not in_history(root, "f" * 40 + "+dirty")
    assert in_history(root, on_main + "+dirty")
    assert not in_history(tmp_path / "nowhere", on_main)
