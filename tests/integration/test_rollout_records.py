"""Rollout records in git and MLflow on real parts (a git repo, MLflow on sqlite; no Ray).

A rollout as a canary leaves it (its steps' figures) is recorded: one MLflow run with its tags,
one metric series per step and the record's YAML, named by the committed record; with MLflow
down the record is committed anyway, the warning says how to record it again, and doing so
makes the run once (idempotent). test_canary checks the same records after real canaries.
"""

from __future__ import annotations

from pathlib import Path

import git
import pytest
import yaml

from graphops.controller.rollout import RolloutRecord, StepRecord, load_records
from graphops.controller.rollout.recording import record_again, record_rollout, recording_commit
from graphops.environments import CanaryConfig
from graphops.registry import ROLLOUT_EXPERIMENT, Registry
from graphops.runtime.split import ArmFigures
from tests.integration.test_cli import graphops, plain
from tests.integration.test_gitops import _identity

ENV = "records"  # an experiment of its own in the session's store


def arm(requests: int, errors: int, p50: float, p99: float) -> ArmFigures:
    return ArmFigures(
        requests=requests, errors=errors, error_rate=errors / requests, p50_ms=p50, p99_ms=p99
    )


def rollout(candidate: str, started: str) -> RolloutRecord:
    """A promoted rollout of digits: two judged steps, both arms' figures."""
    steps = [
        StepRecord(
            share=share,
            started=started,
            ended=started,
            seconds=4.0,
            decision="advance",
            reason=f"at {share}%: fine",
            stable=arm(40, 0, 20.0, 60.0),
            candidate=arm(8 * (i + 1), 0, 22.0, 70.0 + i),
        )
        for i, share in enumerate((10, 50))
    ]
    return RolloutRecord(
        graph="digits",
        env=ENV,
        stable="1.0.0",
        candidate=candidate,
        policy=CanaryConfig(steps=(10, 50, 100)).model_dump(mode="json"),
        by="test@host",
        started=started,
        ended=started,
        outcome="promoted",
        reason="passed 2 steps; takes /digits alone",
        steps=steps,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "environments" / ENV).mkdir(parents=True)
    (root / "environments" / ENV / "environment.yaml").write_text("# placeholder\n")
    with git.Repo.init(root, initial_branch="main") as r:
        _identity(r, "test")
        r.git.add(A=True)
        r.index.commit("environments")
    return root


def test_a_rollout_is_one_mlflow_run_named_by_its_git_record(
    repo: Path, registry: Registry
) -> None:
    logs: list[str] = []
    done = rollout("1.0.1", "2026-12-06T07:00:00+00:00")
    commit = record_rollout(
        repo, done, revert_to=None, push=None, log=logs.append, tracking_uri=registry.tracking_uri
    )
    with git.Repo(repo) as r:
        assert r.head.commit.hexsha == commit and not r.is_dirty()
    [record] = load_records(repo, ENV)["digits"]
    run_id = record.mlflow_run
    assert run_id and any(run_id in line for line in logs), logs
    run = registry.client.get_run(run_id)
    assert run.info.status == "FINISHED"
    experiment = registry.client.get_experiment(run.info.experiment_id)
    assert experiment.name == ROLLOUT_EXPERIMENT.format(env=ENV)
    tags = run.data.tags
    assert {k: tags[f"graphops.{k}"] for k in ("graph", "env", "stable", "candidate")} == {
        "graph": "digits",
        "env": ENV,
        "stable": "1.0.0",
        "candidate": "1.0.1",
    }
    assert (tags["graphops.outcome"], tags["graphops.by"], tags["graphops.commit"]) == (
        "promoted",
        "test@host",
        commit,
    )
    assert tags["graphops.steps"] == "10% advance -> 50% advance"
    assert run.data.params["policy.max_p99_ratio"] == "1.5"

    def series(name: str) -> list[tuple[int, float]]:
        return [(m.step, m.value) for m in registry.client.get_metric_history(run_id, name)]

    assert series("share") == [(0, 10.0), (1, 50.0)]
    assert series("candidate.requests") == [(0, 8.0), (1, 16.0)]
    assert series("candidate.p99_ms") == [(0, 70.0), (1, 71.0)]
    assert series("stable.p50_ms") == [(0, 20.0), (1, 20.0)]
    assert series("stable.rps") == [(0, 10.0), (1, 10.0)]
    text = registry.client.download_artifacts(run_id, "rollout.yaml")
    shown = yaml.safe_load(Path(text).read_text())
    assert (shown["version"], shown["outcome"], len(shown["steps"])) == ("1.0.1", "promoted", 2)


def test_with_mlflow_down_git_records_it_and_it_can_be_recorded_again(
    repo: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    logs: list[str] = []
    done = rollout("1.0.2", "2026-12-06T07:10:00+00:00")
    down = "http://127.0.0.1:9"  # discard port: nothing listens there
    commit = record_rollout(
        repo, done, revert_to=None, push=None, log=logs.append, tracking_uri=down
    )
    [warning] = logs
    assert "MLflow did not record the rollout of digits 1.0.2" in warning
    assert f"`graphops rollouts --env {ENV} --record`" in warning
    [record] = load_records(repo, ENV)["digits"]
    assert record.mlflow_run == "" and record.candidate == "1.0.2"
    with git.Repo(repo) as r:
        assert r.head.commit.hexsha == commit and not r.is_dirty()  # git is whole
    assert recording_commit(repo, record) == commit

    [again_record] = record_again(repo, ENV, tracking_uri=registry.tracking_uri)
    assert (again_record.graph, again_record.candidate) == ("digits", "1.0.2")
    run_id = again_record.mlflow_run
    run = registry.client.get_run(run_id)
    assert (run.info.status, run.data.tags["graphops.commit"]) == ("FINISHED", commit)
    again = graphops(  # the command the warning names: the same run, not a second one
        repo,
        "rollouts",
        "--env",
        ENV,
        "--record",
        tracking=Path(registry.tracking_uri.removeprefix("sqlite:///")),
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{ENV}: digits 1.0.2: MLflow run {run_id}" in plain(again.stdout)
    runs = [r for r in registry.rollout_runs(ENV) if r["tags"]["graphops.candidate"] == "1.0.2"]
    assert [r["run_id"] for r in runs] == [run_id]
