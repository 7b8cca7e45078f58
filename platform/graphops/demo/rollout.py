"""The main job's rollouts: a new version stepped through its shares under load, bad ones aborted.

In the GitOps sandbox, after dev's first apply: dev's ``environment.yaml`` gets a canary policy
(`POLICY`: short steps, 10 -> 50 -> 100 %), then versions of the graph are committed, promoted
and applied (``apply --env dev --push main``, as CD runs it) while a counted load from a process
of its own (`graphops.demo.load`) asks the stable route:

1. a version bump (the same behaviour): each step's share and both arms' figures, then promoted;
2. a version that fails one request in five that comes alone (after its smoke test; offline
   validation sends batches and passes): aborted at the first step, git naming the stable
   version again; the bad commit is then reverted (the team's fix);
3. shadow, then canary (`SHADOW_POLICY`: half the live requests copied to the candidate, its
   answers compared with the stable's and discarded): a version that answers another digit to a
   request that comes alone (offline validation sends batches: its accuracy is unchanged, it
   passes) is aborted at its mirrored step, before it answers any client (its arm's requests 0,
   its agreement below ``min_agreement``), no client request failing; reverted as the second.

Each version is validated offline (`graphops validate --no-parity`, what CI runs after a merge)
before `graphops promote`: the lock of a version needs a passed validation of its code.

Each rollout's record is read back from ``rollouts.yaml`` (and names its MLflow run). A good
version not promoted, or a bad one not aborted as expected (`RolloutRun.problems`), is a
problem: the demo exits 1.

A re-run makes no new version (`graphops.demo.rollout_history`): a finished round is shown again
in one line, an unfinished one goes on from where it stopped; ``again`` (``--canary-again``)
makes three new versions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import git
import yaml

from graphops._views import console
from graphops.demo.job import DemoJob
from graphops.demo.load import Load
from graphops.demo.rollout_history import (
    ALONE,
    BODY,
    FAILING,
    LABEL,
    SHIFTED,
    Kind,
    RolloutRun,
    Round,
    bumped,
    commit_message,
    free_version,
    history,
    latest_records,
)
from graphops.demo.sandbox import graphops_command, pull_sandbox
from graphops.demo.summary import show_rollout

POLICY: dict[str, Any] = {
    "strategy": "canary",
    "canary": {
        "steps": [10, 50, 100],
        "min_seconds": 3,
        "min_requests": 5,
        "max_seconds": 90,
        "max_error_rate": 0.05,
        # A p99 over a handful of requests on a busy laptop is noise: the demo judges errors
        # (tests/integration/test_canary.py shows a 3x-slower version aborted on latency).
        "max_p99_ratio": 50,
        "poll_seconds": 0.5,
    },
}
SHADOW_POLICY: dict[str, Any] = {
    "strategy": "shadow_canary",
    "shadow": {  # windows as short as the canary's; half the live requests copied
        "percent": 50,
        "min_seconds": 3,
        "min_requests": 10,
        "max_seconds": 90,
        "max_error_rate": 0.05,
        "max_p99_ratio": 50,
        "min_agreement": 0.9,
    },
    "canary": dict(POLICY["canary"]),
}
STEP_TITLES: dict[Kind, str] = {
    "good": "{graph}: a new version, stepped through its shares under load",
    "broken": "{graph}: a version failing one request in five, aborted",
    "disagrees": "{graph}: a version disagreeing with the stable, aborted while mirrored",
}


def rollout_demo(job: DemoJob, graph: str, again: bool = False) -> list[RolloutRun]:
    """Dev's canary policy, a good and a broken version, then shadow (module docstring).

    A round an earlier run finished is shown again, not repeated, unless ``again``.
    """
    made = Round() if again else _made(job, graph)
    records = _records(job, graph)
    if made.finished(records):
        runs = _ran_before(job, graph, made, records)
    else:
        runs = [*_canaries(job, graph, made, records), _shadow(job, graph, made, records)]
    job.rollouts.extend(runs)
    return runs


def _canaries(
    job: DemoJob, graph: str, made: Round, records: Mapping[str, Mapping[str, Any]]
) -> list[RolloutRun]:
    """The canary policy, the good version promoted, the broken one aborted and reverted."""
    if made.canaries_finished(records):
        return _ran_before(job, graph, made, records)
    with job.step(f"dev rolls out by canary: {_shares()}, judged on live figures", False):
        _policy(job, POLICY, "demo: dev rolls out by canary (10 -> 50 -> 100 %)")
    with job.step(STEP_TITLES["good"].format(graph=graph), False):
        good = _stage(job, graph, made.good, records, "good", stop=bool(made.broken))
    with job.step(STEP_TITLES["broken"].format(graph=graph), False):
        bad = _stage(job, graph, made.broken, records, "broken", stop=made.reverted)
        if not made.reverted:
            _revert(job, graph, bad.version, "broken")
    return [good, bad]


def _shadow(
    job: DemoJob, graph: str, made: Round, records: Mapping[str, Mapping[str, Any]]
) -> RolloutRun:
    """Dev's shadow-then-canary policy, then a disagreeing version aborted while mirrored."""
    shadow = SHADOW_POLICY["shadow"]
    title = (
        f"dev rolls out by shadow, then canary: {shadow['percent']} % mirrored, agreement "
        f"≥ {shadow['min_agreement']:.0%}"
    )
    with job.step(title, False):
        _policy(job, SHADOW_POLICY, "demo: dev rolls out by shadow, then canary")
    with job.step(STEP_TITLES["disagrees"].format(graph=graph), False):
        run = _stage(job, graph, made.disagrees, records, "disagrees", stop=made.disagrees_reverted)
        if not made.disagrees_reverted:
            _revert(job, graph, run.version, "disagrees")
    return run


def _made(job: DemoJob, graph: str) -> Round:
    """The canary's latest round in the sandbox's main (`rollout_history.history`)."""
    with git.Repo(job.sandbox) as clone:
        return history((_summary(c) for c in clone.iter_commits("main")), graph)


def _records(job: DemoJob, graph: str) -> Mapping[str, Mapping[str, Any]]:
    from graphops.controller.rollout import load_records

    records = load_records(job.sandbox, "dev").get(graph) or []
    return latest_records([r.git_form() for r in records])


def _ran_before(
    job: DemoJob, graph: str, made: Round, records: Mapping[str, Mapping[str, Any]]
) -> list[RolloutRun]:
    """An earlier run's finished rounds, in one line (the summary shows their records).

    With the shadow round not finished yet, only the canaries' (the shadow round follows).
    """
    assert made.good and made.broken
    runs = [
        RolloutRun(graph, made.good, "good", records[made.good], None, None),
        RolloutRun(graph, made.broken, "broken", records[made.broken], None, None),
    ]
    said = (
        f"dev's canaries already ran in this sandbox: {graph} {made.good} {runs[0].outcome}, "
        f"{made.broken} {runs[1].outcome} and reverted"
    )
    if made.finished(records):
        assert made.disagrees
        runs.append(
            RolloutRun(graph, made.disagrees, "disagrees", records[made.disagrees], None, None)
        )
        said += (
            f"; shadow, then canary: {made.disagrees} {runs[2].outcome} while mirrored and reverted"
        )
    with job.step(f"{graph}: rollouts in dev", False):
        console.print(
            f"{said} (environments/dev/rollouts.yaml); `graphops demo --canary-again` rolls out "
            "three new versions.",
            highlight=False,
        )
    for run in runs:
        _judge(job, run)
    return runs


def _stage(
    job: DemoJob,
    graph: str,
    version: str | None,
    records: Mapping[str, Mapping[str, Any]],
    kind: Kind,
    *,
    stop: bool,
) -> RolloutRun:
    """One version: committed (unless an earlier run did), validated, promoted, rolled out.

    An earlier run's version is rolled out again only while it is still main's code (not
    ``stop``: a later commit followed it); once it has a record, that record is shown.
    """
    if version is not None and (version in records or stop):
        console.print(f"{graph} {version} was rolled out by an earlier run: its record is shown")
        run = RolloutRun(graph, version, kind, records.get(version) or {}, None, None)
        show_rollout(run, str(run.record.get("from", "?")))
        _judge(job, run)
        return run
    if version is None:
        version = _commit_version(job, graph, kind)
    else:
        console.print(f"{graph} {version} was committed by an earlier run: it goes on from there")
    _promote(job, graph)
    return _roll_out(job, graph, version, kind)


def _shares() -> str:
    return " → ".join(f"{s} %" for s in POLICY["canary"]["steps"])


def _policy(job: DemoJob, policy: dict[str, Any], message: str) -> None:
    """Commit ``policy`` as dev's ``rollout:`` in the sandbox (unless it is already) and push."""
    path = job.sandbox / "environments" / "dev" / "environment.yaml"
    text = path.read_text()
    data = yaml.safe_load(text) or {}
    what = policy["strategy"].replace("_canary", ", then canary")
    if data.get("rollout") == policy:
        console.print(f"dev's {what} policy is already committed in the sandbox")
        return
    data["rollout"] = policy
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    path.write_text(header + yaml.safe_dump(data, sort_keys=False))
    graphops_command(job, "render", "--env", "dev", quiet=True)
    _commit_and_push(job, message)
    sections = [f"rollout.strategy {policy['strategy']}"]
    for name in ("shadow", "canary"):
        if name in policy:
            fields = ", ".join(f"{k} {v}" for k, v in policy[name].items() if k != "poll_seconds")
            sections.append(f"{name}: {fields}")
    console.print(f"dev's environment.yaml: {'; '.join(sections)}", highlight=False)


def _commit_and_push(job: DemoJob, message: str) -> str:
    with git.Repo(job.sandbox) as clone:
        clone.git.add("-A", "graphs", "environments")
        commit = clone.index.commit(message)
        clone.git.push("origin", "main")
        return commit.hexsha


def _commit_version(job: DemoJob, graph: str, kind: Kind) -> str:
    """Bump the graph's patch version (and add ``kind``'s bug); commit and push.

    The version is the next one no validation recorded at other files: a version an earlier
    round made (then reverted, or in a sandbox made again) is never reused for other code.
    """
    from graphops.graph import content_hash

    code = job.sandbox / "graphs" / graph / "__init__.py"
    text = code.read_text()
    if kind == "broken":
        assert BODY in text, f"{code} changed: the demo's bug has nowhere to go"
        text = text.replace(BODY, "    _one_in_five(pixels)\n" + BODY) + FAILING
    elif kind == "disagrees":
        assert LABEL in text, f"{code} changed: the demo's bug has nowhere to go"
        text = text.replace(LABEL, SHIFTED) + ALONE

    def taken(version: str, candidate: str) -> bool:
        code.write_text(candidate)
        files = content_hash(code.parent)
        return any(
            past.status == "passed" and past.content_hash != files
            for past in job.registry.validations(graph, version)
        )

    version = free_version(text, taken)
    code.write_text(bumped(text, version))
    message = commit_message(graph, version, kind)
    _commit_and_push(job, message)
    console.print(f"committed and pushed {message}")
    return version


def _promote(job: DemoJob, graph: str) -> None:
    """Validate main's code of ``graph`` (CI after the merge), promote it to dev, pull."""
    # Promotion needs a passed validation of exactly this code (CI's job after the merge). Parity
    # with Serve is left out to keep the demo short: the validation step above showed it, and
    # the broken version's bug is in the one-request path that parity would catch and the
    # canary catches here. A passed validation of the same code is reused (`validate`'s rule).
    graphops_command(job, "validate", graph, "--no-parity")
    graphops_command(job, "promote", graph, "--to", "dev", "--push", "main")
    pull_sandbox(job)


def _roll_out(job: DemoJob, graph: str, version: str, kind: Kind) -> RolloutRun:
    """`graphops apply --env dev --push main` under load; the record shown; checked."""
    from graphops.controller.rollout import load_records
    from graphops.environments import load_release

    stable = load_release(job.sandbox, "dev").graphs[graph].lock  # promote changed release only
    serve = job.state.services["ray-dev"].ports["serve"]
    url = f"http://127.0.0.1:{serve}/{graph}"
    before = _example(job, graph)
    with Load(url, before, job.work / "load-stop") as load:
        console.print(f"load: one request after the other on {url}, from its own process")
        graphops_command(job, "apply", "--env", "dev", "--push", "main", check=False)
    pull_sandbox(job)
    records = load_records(job.sandbox, "dev").get(graph) or []
    record = next((r.git_form() for r in records if r.candidate == version), {})
    run = RolloutRun(graph, version, kind, record, load.failed, load.total)
    show_rollout(run, stable.version)
    _judge(job, run)
    return run


def _judge(job: DemoJob, run: RolloutRun) -> None:
    """What went otherwise than expected is a problem (exit 1): `RolloutRun.problems`."""
    job.problems.extend(f"dev: {problem}" for problem in run.problems())


def _example(job: DemoJob, graph: str) -> Any:
    from graphops.environments import load_release

    return load_release(job.sandbox, "dev").graphs[graph].lock.example


def _revert(job: DemoJob, graph: str, version: str, kind: Kind) -> None:
    """After the abort: git log shows it; the bad commit is reverted (the team's fix)."""
    from graphops.environments import load_release

    with git.Repo(job.sandbox) as clone:
        release = load_release(job.sandbox, "dev").graphs[graph].lock.version
        console.print(f"git log -1: {_summary(clone.head.commit)}; release.yaml names {release}")
        bad = next(
            c
            for c in clone.iter_commits("main", max_count=50)
            if _summary(c) == commit_message(graph, version, kind)
        )
        clone.git.revert("--no-edit", bad.hexsha)
        clone.git.push("origin", "main")
        console.print(
            f"reverted {bad.hexsha[:12]} ({_summary(bad)}) and pushed: main's code is good again"
        )


def _summary(commit: git.Commit) -> str:
    """A commit's first line (gitpython types it as str or bytes)."""
    return str(commit.message).split("\n", 1)[0]
