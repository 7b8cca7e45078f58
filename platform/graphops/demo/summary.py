"""What the main job prints: each rollout's steps as it ends, and the summary at the end.

The summary says what is live where, the validation runs, the rollouts dev walked, where to
look (dashboards, MLflow, the sandbox) and how long each step took.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.rule import Rule
from rich.table import Table

from graphops._views import console
from graphops.demo.job import DemoJob
from graphops.demo.rollout_history import RolloutRun, agreement
from graphops.demo.sandbox import token_exports

if TYPE_CHECKING:
    from graphops.validation import ValidationReport


def summary(job: DemoJob, names: list[str], report: ValidationReport) -> None:
    """What is live where, the validation runs, the URLs and how long each step took."""
    from graphops.controller.render import app_name
    from graphops.environments import load_release

    console.print(Rule("[bold]Summary[/]", align="left"))
    live = Table(title="Live", title_justify="left")
    for column in ("env", "graph", "version", "application", "stable route", "validation run"):
        live.add_column(column)
    for env, name, _, url in job.answers:
        # What runs now: the pinned lock (a rollout after the first answer moved dev's version).
        lock = load_release(job.sandbox, env).graphs[name].lock
        live.add_row(env, name, lock.version, app_name(name, lock), url, lock.validation_run or "-")
    console.print(live)
    validated = Table(title="Validation (Ray Data)", title_justify="left")
    for column in ("graph", "status", "MLflow run"):
        validated.add_column(column)
    for g in report.graphs:
        colour = "green" if g.status == "passed" else "red"
        validated.add_row(g.graph, f"[{colour}]{g.status}[/]", g.run_id or "-")
    console.print(validated)
    if job.rollouts:
        console.print(_rollouts(job))
    urls = Table(title="Where to look", title_justify="left")
    urls.add_column("what")
    urls.add_column("URL or path")
    for name, service in job.state.services.items():
        if service.head:  # a worker node: its head's dashboard is listed
            continue
        what = (
            "MLflow UI" if name == "mlflow-ui" else f"Ray dashboard ({name.removeprefix('ray-')})"
        )
        urls.add_row(what, service.url)
    urls.add_row("MLflow store", job.registry.tracking_uri)
    urls.add_row("validation report", str(job.registry.work_dir / "reports" / "validation.md"))
    urls.add_row("GitOps sandbox", f"{job.sandbox} (git log shows every promotion)")
    console.print(urls)
    steps = Table(title="Steps", title_justify="left")
    steps.add_column("step")
    steps.add_column("seconds", justify="right")
    for title, seconds in job.timings.items():
        steps.add_row(title, f"{seconds:.1f}")
    steps.add_row("[bold]total[/]", f"[bold]{sum(job.timings.values()):.1f}[/]")
    console.print(steps)
    token_exports(job)
    for problem in job.problems:
        console.print(f"[red]problem:[/] {problem}")
    console.print(
        "The clusters and the MLflow UI keep running. Stop them: [bold]graphops demo --down[/] "
        "(or `nox -s demo -- --down`)."
    )


def _rollouts(job: DemoJob) -> Table:
    """The rollouts of dev: versions, steps, outcome, the load's failures, the MLflow run."""
    table = Table(title="Rollouts (dev, under load)", title_justify="left")
    for column in (
        "graph",
        "strategy",
        "from → to",
        "steps",
        "outcome",
        "load failed/total",
        "MLflow run",
    ):
        table.add_column(column)
    for run in job.rollouts:
        record = run.record
        steps = " → ".join(f"{_label(s)} {s['decision']}" for s in record.get("steps") or [])
        colour = "green" if not run.problems() else "red"
        table.add_row(
            run.graph,
            str(record.get("strategy", "-")),
            f"{record.get('from', '?')} → {run.version}",
            steps or "-",
            f"[{colour}]{run.outcome}[/] (expected {run.expected})",
            "-" if run.total is None else f"{run.failed}/{run.total}",
            record.get("mlflow_run") or "-",
        )
    return table


def _label(step: Mapping[str, Any]) -> str:
    """``10%``, ``mirror 50%`` or ``10% + mirror 50%``, as `Step.label` names a step."""
    share, mirror = float(step.get("share") or 0), float(step.get("mirror") or 0)
    parts = [f"{share:g}%"] if share or not mirror else []
    return " + ".join([*parts, *([f"mirror {mirror:g}%"] if mirror else [])])


def show_rollout(run: RolloutRun, stable: str) -> None:
    """Each step's share and every arm's figures, the outcome, and what the load saw.

    A mirrored step adds the mirror's row (copies, never returned) and its agreement.
    """
    record = run.record
    if not record:
        console.print(f"[red]no rollout record of {run.graph} {run.version}[/]")
        return
    shadow = any(step.get("mirrored") for step in record["steps"])
    name = "Shadow, then canary" if record.get("strategy") == "shadow_canary" else "Canary"
    table = Table(
        title=f"{name} {run.graph} {record['from']} → {run.version} (dev)", title_justify="left"
    )
    columns = ["step", "s", "arm", "requests", "rps", "errors", "p50 ms", "p99 ms"]
    for column in [*columns, *(["agreed"] if shadow else []), "decision"]:
        table.add_column(column, justify="right" if column not in ("arm", "decision") else "left")
    for step in record["steps"]:
        seconds = float(step["seconds"]) or 1.0
        arms = (
            ("stable", "candidate", "mirrored") if step.get("mirrored") else ("stable", "candidate")
        )
        for arm in arms:
            f = step[arm]
            seen = agreement(f) if arm == "mirrored" else None
            agreed = f"{f['agreed']}/{f['compared']} ({seen:.0%})" if seen is not None else "-"
            table.add_row(
                f"{_label(step).replace('%', ' %')}" if arm == "stable" else "",
                f"{step['seconds']:g}" if arm == "stable" else "",
                f"{arm} {record['from'] if arm == 'stable' else run.version}",
                str(f["requests"]),
                f"{f['requests'] / seconds:.1f}",
                f"{f['errors']} ({f['error_rate']:.1%})",
                f"≤{f['p50_ms']:g}" if f.get("p50_ms") is not None else "-",
                f"≤{f['p99_ms']:g}" if f.get("p99_ms") is not None else "-",
                *([agreed if arm == "mirrored" else ""] if shadow else []),
                step["decision"] if arm == arms[-1] else "",
            )
    console.print(table)
    colour = "green" if not run.problems() else "red"
    console.print(
        f"outcome: [{colour}]{run.outcome}[/] ({record['reason']}) by {record['by']}",
        highlight=False,
    )
    if shadow:
        _show_shadow(run)
    stable_errors = sum(int(step["stable"]["errors"]) for step in record["steps"])
    if run.total is not None:
        console.print(
            f"load on the stable route: {run.failed} failed of {run.total} requests; the split "
            f"counted {stable_errors} errors of the stable arm {record['from']} in the steps",
            highlight=False,
        )
    for problem in run.problems():
        console.print(f"[red]problem:[/] {problem}", highlight=False)
    console.print(
        f"record: environments/dev/rollouts.yaml; MLflow run {record.get('mlflow_run') or '-'} "
        f"in graphops-rollouts/dev",
        highlight=False,
    )


def _show_shadow(run: RolloutRun) -> None:
    """What the mirror saw against the policy: its agreement, and the clients it answered."""
    least = run.record.get("policy", {}).get("shadow", {}).get("min_agreement")
    for step in run.record["steps"]:
        mirrored = step.get("mirrored")
        if not mirrored:
            continue
        seen = agreement(mirrored)
        console.print(
            f"mirrored {step['mirror']:g} %: {mirrored['requests']} copies, "
            f"{mirrored['compared']} compared, {mirrored['agreed']} agreed "
            f"(agreement {'-' if seen is None else f'{seen:.1%}'}, min_agreement "
            f"{'-' if least is None else f'{least:.0%}'}); the candidate answered "
            f"{step['candidate']['requests']} client requests in this step",
            highlight=False,
        )
