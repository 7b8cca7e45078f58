"""The rollout walker with a fake edge, the record's git form (old files too) and the pin path.

No Ray, no cluster: `FakeEdge` answers the walker's calls from scripted counters and notes what
it was asked, so the order of moves (start, splits, abort, revert) is checked exactly.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from graphops.controller.rollout import RolloutAborted, Step, walk
from graphops.controller.rollout.canary import Canary
from graphops.controller.rollout.record import (
    RolloutRecord,
    StepRecord,
    load_records,
    rollouts_path,
    write_record,
)
from graphops.controller.rollout.walk import Tally
from graphops.environments import CanaryConfig
from graphops.runtime.figures import ArmCounters
from graphops.runtime.split import ArmFigures

POLICY = CanaryConfig(steps=(10, 50), min_seconds=1, min_requests=5, max_error_rate=0.05)


def counters(requests: int, errors: int = 0, ms: float = 10.0) -> dict[str, Any]:
    """Raw totals of an arm that answered ``requests`` (the first ``errors`` of them failed)."""
    stats = ArmCounters()
    for i in range(requests):
        stats.record(ms, 500 if i < errors else 200, 1, [])
    return stats.state()


@dataclass
class FakeEdge:
    """Scripted totals per step: each ``read`` returns the next (stable, candidate) pair."""

    script: dict[str, list[tuple[dict[str, Any], dict[str, Any] | None]]]
    events: list[str] = field(default_factory=list)
    reverted: list[RolloutRecord] = field(default_factory=list)
    clock: float = 0.0
    fail_start: bool = False

    def start(self) -> None:
        self.events.append("start")
        if self.fail_start:
            from graphops.errors import ApplyError

            raise ApplyError("smoke failed", fix="-")

    def put(self, step: Step) -> None:
        self.events.append(f"put {step.label}")

    def read(self, step: Step) -> Tally:
        stable, candidate = self.script[step.label].pop(0)
        return Tally(at=self.clock, stable=stable, candidate=candidate, mirror=None, path="p")

    def abort(self) -> None:
        self.events.append("abort")

    def revert(self, record: RolloutRecord) -> str:
        self.events.append(f"revert {record.outcome}")
        self.reverted.append(record)
        return "git names 1.0.0 again"

    def sleep(self, seconds: float) -> None:
        self.clock += seconds

    def now(self) -> str:
        return f"t{self.clock:g}"

    def log(self, message: str) -> None:
        self.events.append(f"log {message}")


def record() -> RolloutRecord:
    return RolloutRecord(graph="digits", env="dev", stable="1.0.0", candidate="1.0.1", by="me")


def test_a_good_candidate_walks_every_step_and_is_promoted() -> None:
    edge = FakeEdge(
        {
            "10%": [(counters(0), counters(0)), (counters(50), counters(6))],
            "50%": [(counters(50), counters(6)), (counters(60), counters(16))],
        }
    )
    done = walk(Canary(POLICY), edge, record())
    assert done.outcome == "promoted" and done.strategy == "canary"
    assert [e for e in edge.events if not e.startswith("log")] == ["start", "put 10%", "put 50%"]
    assert [(s.share, s.decision) for s in done.steps] == [(10, "advance"), (50, "advance")]
    first, second = done.steps
    assert (first.candidate.requests, first.stable.requests) == (6, 50)  # deltas of the step
    assert (second.candidate.requests, second.stable.requests) == (10, 10)
    assert first.mirrored is None and first.path == "p"
    assert done.policy["steps"] == [10, 50] and done.reason.startswith("passed 2 steps")


def test_a_failing_candidate_is_aborted_then_reverted_and_the_error_says_so() -> None:
    edge = FakeEdge({"10%": [(counters(0), counters(0)), (counters(40), counters(5, errors=2))]})
    with pytest.raises(RolloutAborted, match="aborted at 10%") as caught:
        walk(Canary(POLICY), edge, record())
    assert "1.0.0 serves /digits alone again and git names 1.0.0 again" in str(caught.value)
    moves = [e for e in edge.events if not e.startswith("log")]
    assert moves == ["start", "put 10%", "abort", "revert aborted"]  # zero, drop, then git


def test_a_step_waits_until_the_judge_decides() -> None:
    edge = FakeEdge(
        {
            "10%": [
                (counters(0), counters(0)),
                (counters(10), counters(2)),  # too few requests: wait
                (counters(40), counters(6)),  # enough, after 2 polls of 1 s: advance
            ],
            "50%": [(counters(0), counters(0)), (counters(9), counters(9))],
        }
    )
    done = walk(Canary(POLICY), edge, record())
    assert done.steps[0].seconds == 2.0 and done.steps[0].candidate.requests == 6


def test_a_candidate_failing_its_start_records_nothing() -> None:
    edge = FakeEdge({}, fail_start=True)
    with pytest.raises(Exception, match="smoke failed"):
        walk(Canary(POLICY), edge, record())
    assert edge.events == ["start"]


# -- the record's git form ----------------------------------------------------------------

OLD = """\
# Written by `graphops apply`: every canary rollout, its steps and decisions (docs/promote-and-rollback.md).
graphs:
  digits:
  - by: root@vm
    ended: '2026-12-06T07:49:47+00:00'
    from: 1.0.1
    mlflow_run: 9031ec2e8d794d6681f9a8380b8386d0
    outcome: aborted
    policy:
      max_error_rate: 0.05
      steps: [10, 50, 100]
    reason: 'at 10%: the candidate failed 1 of 6 requests (16.7%).'
    started: '2026-12-06T07:49:40+00:00'
    steps:
    - candidate: {error_rate: 0.16666666666666666, errors: 1, p50_ms: 21.891, p99_ms: 33.294, requests: 6}
      decision: abort
      ended: '2026-12-06T07:49:47+00:00'
      path: via its ingress
      reason: 'at 10%: the candidate failed 1 of 6 requests (16.7%).'
      seconds: 0.5
      share: 10
      stable: {error_rate: 0.0, errors: 0, p50_ms: 14.394, p99_ms: 25.175, requests: 55}
      started: '2026-12-06T07:49:41+00:00'
    strategy: canary
    version: 1.0.2
  - by: root@vm
    ended: '2026-12-05T10:00:00+00:00'
    from: 1.0.0
    outcome: promoted
    policy: {}
    reason: passed 1 steps; takes /digits alone
    started: '2026-12-05T09:59:00+00:00'
    steps:
    - candidate: {error_rate: 0.0, errors: 0, p50_ms: 12.5, p99_ms: 33.3, requests: 8}
      decision: advance
      ended: '2026-12-05T10:00:00+00:00'
      reason: fine
      seconds: 5.8
      share: 5
      stable: {error_rate: 0.0, errors: 0, p50_ms: 12.5, p99_ms: 38.3, requests: 250}
      started: '2026-12-05T09:59:01+00:00'
    strategy: canary
    version: 1.0.1
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "environments" / "dev").mkdir(parents=True)
    return tmp_path


def test_an_old_rollouts_file_loads_typed_and_is_written_back_with_its_fields(repo: Path) -> None:
    rollouts_path(repo, "dev").write_text(OLD)
    aborted, promoted = load_records(repo, "dev")["digits"]
    assert (aborted.stable, aborted.candidate, aborted.outcome) == ("1.0.1", "1.0.2", "aborted")
    assert (aborted.graph, aborted.env, aborted.strategy) == ("digits", "dev", "canary")
    [step] = aborted.steps
    assert step.candidate.errors == 1 and step.stable.requests == 55 and step.mirror == 0
    assert promoted.mlflow_run == "" and promoted.steps[0].path == ""  # before those fields
    new = record().model_copy(update={"outcome": "promoted", "started": "t1", "strategy": "x"})
    write_record(repo, new)
    again = load_records(repo, "dev")["digits"]
    assert [r.candidate for r in again] == ["1.0.1", "1.0.2", "1.0.1"]  # newest first
    assert again[1] == aborted and again[2] == promoted  # old entries kept, field for field
    text = rollouts_path(repo, "dev").read_text()
    assert "from: 1.0.1" in text and "version: 1.0.2" in text and "graph:" not in text


def test_a_record_round_trips_through_yaml_with_its_mirror(repo: Path) -> None:
    figures = ArmFigures(requests=9, errors=0, error_rate=0, p50_ms=1.0, p99_ms=2.0)
    mirrored = figures.model_copy(update={"compared": 9, "agreed": 6})
    step = StepRecord(
        share=0,
        mirror=20,
        started="a",
        ended="b",
        seconds=3.0,
        decision="abort",
        reason="disagrees",
        stable=figures,
        candidate=figures.model_copy(update={"requests": 0, "p50_ms": None, "p99_ms": None}),
        mirrored=mirrored,
    )
    done = record().model_copy(update={"steps": [step], "strategy": "shadow_canary"})
    write_record(repo, done)
    [back] = load_records(repo, "dev")["digits"]
    assert back == done and back.steps[0].label == "mirror 20%"
    metrics = back.steps[0].metrics()
    assert metrics["mirror"] == 20 and metrics["mirrored.agreement"] == pytest.approx(6 / 9)
    assert metrics["candidate.requests"] == 0 and "candidate.p99_ms" not in metrics
    run = back.mlflow_form()
    assert run.tags["graphops.steps"] == "mirror 20% abort"
    assert run.tags["graphops.strategy"] == "shadow_canary" and run.key == "dev/digits/1.0.1/"


def test_a_rollouts_entry_that_is_no_record_names_the_file_and_the_entry(repo: Path) -> None:
    from graphops.errors import ConfigError

    rollouts_path(repo, "dev").write_text("graphs:\n  digits:\n  - version: 1.0.1\n    x: 1\n")
    with pytest.raises(ConfigError, match=r"graphs.digits\[0\] is not a rollout record"):
        load_records(repo, "dev")


# -- pin and re-render ---------------------------------------------------------------------


def test_pin_writes_one_entry_and_renders_the_environment(tmp_path: Path) -> None:
    import shutil

    from graphops.controller.pin import pin
    from graphops.controller.render import render
    from graphops.environments import Release, ReleaseEntry, load_release, write_release
    from tests.fixtures.locks import lock

    root = Path(__file__).resolve().parents[2]
    repo = tmp_path / "repo"
    (repo / "environments").mkdir(parents=True)
    for env in ("base", "dev"):
        shutil.copytree(root / "environments" / env, repo / "environments" / env)
    locked = lock()
    now = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
    write_release(repo, "dev", Release(graphs={}))
    written = pin(repo, "dev", "digits", ReleaseEntry(lock=locked, promoted_at=now))
    assert load_release(repo, "dev").graphs["digits"].lock == locked
    assert {p.name for p in written} >= {"serve.yaml"}
    assert not render(repo, "dev").stale()
    other = ReleaseEntry(lock=locked.model_copy(update={"version": "0.9.0"}), promoted_at=now)
    pin(repo, "dev", "digits", other)  # a revert: the older entry back, rendered again
    assert load_release(repo, "dev").graphs["digits"].lock.version == "0.9.0"
    assert not render(repo, "dev").stale()
