"""What the main job's steps share: the local clusters it runs, its state, its step timer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.rule import Rule

import graphops.demo.services as services
from graphops._views import console
from graphops.demo.rollout_history import RolloutRun

if TYPE_CHECKING:
    from graphops.registry import Registry

# Each environment's local cluster: preferred ports (any free ones when taken) and logical CPUs
# (dev runs every graph, and two versions of one side by side during a rollout).
CLUSTERS = {
    "dev": {"dashboard": 8265, "serve": 8000, "cpus": 4},
    "staging": {"dashboard": 8266, "serve": 8001, "cpus": 2},
}
"""Each cluster's ports and its CPUs (dev gets more when more graphs run there: `DEV_APP_CPUS`)."""
DEV_APP_CPUS = 0.9
"""The CPUs each application of the local clusters is scaled to (`cluster.app_cpu_budget`)."""
MLFLOW_UI_PORT = 5000


@dataclass
class DemoJob:
    """What the steps share: where things are, what happened, how long each step took."""

    root: Path
    registry: Registry
    work: Path
    timings: dict[str, float] = field(default_factory=dict)
    state: services.LocalState = field(default_factory=services.LocalState)
    problems: list[str] = field(default_factory=list)
    answers: list[tuple[str, str, str, str]] = field(default_factory=list)
    rollouts: list[RolloutRun] = field(default_factory=list)
    """The rollouts dev walked (`graphops.demo.rollout`), for the summary."""
    multinode: bool = False  # worker nodes beside dev's head, dev with `gpus: true`

    @property
    def state_file(self) -> Path:
        """The JSON file recording the services started, so a re-run reuses them."""
        return self.work / "state.json"

    @property
    def sandbox(self) -> Path:
        """The GitOps sandbox: a clone of the repository whose environments point here."""
        return self.work / "gitops"

    @contextmanager
    def step(self, title: str, spinner: bool = True) -> Iterator[None]:
        """A titled step: a rule, a spinner (unless subprocesses print), its time when done."""
        console.print(Rule(f"[bold]{title}[/]", align="left"))
        started = time.perf_counter()
        if spinner:
            with console.status(f"{title} ..."):
                yield
        else:
            yield
        self.timings[title] = time.perf_counter() - started
        console.print(f"[green]✓[/] {title} [dim]({self.timings[title]:.1f} s)[/]")
