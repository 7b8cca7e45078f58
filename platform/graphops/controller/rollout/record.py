"""The record of a rollout, typed end to end, and its two forms: git's YAML and an MLflow run.

`RolloutRecord` holds who, when, the strategy and its policy, the outcome and one `StepRecord`
per judged step (share, mirror, decision, reason, the figures of every arm as `ArmFigures`).
Its **git form** is its entry in ``environments/<env>/rollouts.yaml`` (`load_records`,
`write_record`; files written before strategies had names still load: ``strategy`` defaults to
``canary``, ``path`` and the mirror fields are optional). Its **MLflow form** is
`RolloutRecord.mlflow_form`: the tags, params and one metric series per figure
(`graphops.registry.RolloutRunForm`), which the registry writes as one run.
"""

from __future__ import annotations

import datetime
import getpass
import os
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from graphops._models import FrozenModel, StrictModel
from graphops.controller.rollout.strategy import Step
from graphops.environments import ENVIRONMENTS_DIR, dump_yaml, read_yaml
from graphops.errors import ConfigError
from graphops.registry import RolloutRunForm
from graphops.runtime.split import ArmFigures

ROLLOUTS_FILE = "rollouts.yaml"
KEPT = 10
"""Rollouts kept per graph in rollouts.yaml (older ones stay in git history)."""
ARMS = ("stable", "candidate", "mirrored")
"""The arms a step records, as they are named in YAML and in MLflow metrics (``<arm>.<figure>``)."""
FIGURES = ("requests", "errors", "error_rate", "p50_ms", "p99_ms", "compared", "agreed")
"""The `ArmFigures` logged as MLflow metrics (``rps`` and ``agreement`` are derived from them)."""
HEADER = (
    "# Written by `graphops apply`: every rollout, its steps and decisions "
    "(docs/promote-and-rollback.md).\n"
)

Outcome = Literal["running", "promoted", "aborted"]


class StepRecord(FrozenModel):
    """One judged step of a rollout: what was asked, what was seen, what was decided."""

    share: Annotated[float, Field(description="Percent of live requests the candidate answered.")]
    mirror: Annotated[
        float, Field(description="Percent of live requests copied to the candidate (discarded).")
    ] = 0.0
    started: Annotated[str, Field(description="When the step's split was set (UTC, ISO 8601).")]
    ended: Annotated[str, Field(description="When it was decided.")]
    seconds: Annotated[float, Field(description="Seconds between its first and last reading.")]
    decision: Annotated[Literal["advance", "abort"], Field(description="What the judge said.")]
    reason: Annotated[str, Field(description="Why, in one sentence.")]
    path: Annotated[
        str,
        Field(description="How the candidate was asked: no hop (same code) or via its ingress."),
    ] = ""
    stable: Annotated[ArmFigures, Field(description="The stable version's answers in the step.")]
    candidate: Annotated[ArmFigures, Field(description="The candidate's answers (its share).")]
    mirrored: Annotated[
        ArmFigures | None,
        Field(
            description="The candidate's answers to mirrored copies, compared with the stable's."
        ),
    ] = None

    @property
    def label(self) -> str:
        """``5%``, ``mirror 20%``, or both (`Step.label`)."""
        return Step(self.share, self.mirror).label

    def metrics(self) -> dict[str, float]:
        """The step as MLflow metrics: share, mirror, seconds, advanced, each arm's figures."""
        out = {
            "share": self.share,
            "mirror": self.mirror,
            "seconds": self.seconds,
            "advanced": 1.0 if self.decision == "advance" else 0.0,
        }
        for arm in ARMS:
            figures: ArmFigures | None = getattr(self, arm)
            if figures is None:
                continue
            for name in FIGURES:
                value = getattr(figures, name)
                if value is not None:
                    out[f"{arm}.{name}"] = float(value)
            if self.seconds > 0:
                out[f"{arm}.rps"] = round(figures.requests / self.seconds, 2)
            if figures.agreement is not None:
                out[f"{arm}.agreement"] = figures.agreement
        return out


class RolloutRecord(StrictModel):
    """One rollout of a graph in an environment; an entry of ``rollouts.yaml`` (`ROLLOUTS_FILE`)."""

    model_config = ConfigDict(
        extra="forbid", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    graph: Annotated[str, Field(exclude=True, description="Graph (its key in the file).")]
    env: Annotated[str, Field(exclude=True, description="Environment (the file's folder).")]
    candidate: Annotated[str, Field(alias="version", description="The version rolled out.")]
    stable: Annotated[str, Field(alias="from", description="The version that served before.")]
    strategy: Annotated[str, Field(description="Its `rollout.strategy`.")] = "canary"
    outcome: Annotated[Outcome, Field(description="promoted or aborted.")] = "running"
    reason: Annotated[str, Field(description="Why it ended so.")] = ""
    by: Annotated[str, Field(description="Who applied: the CI actor and run, else user@host.")] = ""
    started: Annotated[str, Field(description="When it began (UTC, ISO 8601).")] = ""
    ended: Annotated[str, Field(description="When it ended.")] = ""
    policy: Annotated[
        dict[str, Any], Field(description="The strategy's settings it was judged by.")
    ] = {}
    steps: Annotated[list[StepRecord], Field(description="Its judged steps, in order.")] = []
    mlflow_run: Annotated[str, Field(description="The MLflow run holding a copy ('' if none).")] = (
        ""
    )

    @property
    def key(self) -> str:
        """Its identity: environment, graph, version, start (the MLflow run's tag)."""
        return f"{self.env}/{self.graph}/{self.candidate}/{self.started}"

    @property
    def steps_line(self) -> str:
        """``10% advance -> 50% advance``."""
        return " -> ".join(f"{s.label} {s.decision}" for s in self.steps)

    def git_form(self) -> dict[str, Any]:
        """Its entry of ``rollouts.yaml`` (a step without a mirror has no ``mirrored`` key)."""
        data = self.model_dump(mode="json")
        for step in data["steps"]:
            if step["mirrored"] is None:
                del step["mirrored"]
        return data

    @classmethod
    def from_git(cls, env: str, graph: str, entry: dict[str, Any]) -> RolloutRecord:
        """The record of one ``rollouts.yaml`` entry of ``graph`` (any format written so far)."""
        return cls.model_validate({**entry, "graph": graph, "env": env})

    def mlflow_form(self) -> RolloutRunForm:
        """Its MLflow run: ``graphops.*`` tags, ``policy.*`` params, one metric per figure."""
        tags = {
            "graphops.graph": self.graph,
            "graphops.env": self.env,
            "graphops.stable": self.stable,
            "graphops.candidate": self.candidate,
            "graphops.strategy": self.strategy,
            "graphops.outcome": self.outcome,
            "graphops.reason": self.reason[:4000],
            "graphops.by": self.by,
            "graphops.started": self.started,
            "graphops.ended": self.ended,
            "graphops.steps": self.steps_line,
        }
        shown = {k: v for k, v in self.git_form().items() if k != "mlflow_run"}  # not yet known
        return RolloutRunForm(
            env=self.env,
            key=self.key,
            run_name=f"{self.graph} {self.stable} -> {self.candidate}",
            tags=tags,
            params={f"policy.{k}": str(v) for k, v in self.policy.items()},
            steps=tuple(s.metrics() for s in self.steps),
            texts={
                "rollout.yaml": dump_yaml(
                    shown, f"# {self.graph} in {self.env}: rollouts.yaml's entry\n"
                )
            },
        )


def who() -> str:
    """Who applies: the CI actor when there is one, else user@host."""
    actor = os.environ.get("GITHUB_ACTOR")
    if actor:
        return f"{actor} (GitHub Actions run {os.environ.get('GITHUB_RUN_ID', '?')})"
    return f"{getpass.getuser()}@{socket.gethostname()}"


def utc_now() -> str:
    """Now, UTC, to the second, as records write it."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def rollouts_path(repo: Path, env: str) -> Path:
    """Where an environment's rollout records live."""
    return repo / ENVIRONMENTS_DIR / env / ROLLOUTS_FILE


def load_records(repo: Path, env: str) -> dict[str, list[RolloutRecord]]:
    """Graph -> its recorded rollouts, newest first (empty when none was recorded).

    Raises:
        ConfigError: An entry is not a rollout record (the file, graph and entry are named).
    """
    path = rollouts_path(repo, env)
    out: dict[str, list[RolloutRecord]] = {}
    for graph, entries in (read_yaml(path).get("graphs") or {}).items():
        records = out.setdefault(str(graph), [])
        for i, entry in enumerate(entries or []):
            try:
                records.append(RolloutRecord.from_git(env, str(graph), dict(entry)))
            except (ValueError, TypeError) as exc:
                raise ConfigError(
                    f"graphs.{graph}[{i}] is not a rollout record: {exc}",
                    fix="rollouts.yaml is written by `graphops apply`; restore it from git.",
                    file=path,
                ) from exc
    return out


def write_record(repo: Path, record: RolloutRecord) -> Path:
    """Put ``record`` first in its graph's records (keeping `KEPT`); the file."""
    records = {
        graph: [r.git_form() for r in rs] for graph, rs in load_records(repo, record.env).items()
    }
    records[record.graph] = [record.git_form(), *records.get(record.graph, [])][:KEPT]
    path = rollouts_path(repo, record.env)
    path.write_text(dump_yaml({"graphs": dict(sorted(records.items()))}, HEADER))
    return path


__all__ = [
    "ARMS",
    "FIGURES",
    "KEPT",
    "ROLLOUTS_FILE",
    "Outcome",
    "RolloutRecord",
    "StepRecord",
    "load_records",
    "rollouts_path",
    "utc_now",
    "who",
    "write_record",
]
