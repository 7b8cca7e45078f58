"""The main job (`graphops demo`) as a new user runs it, in a reduced form: one graph, same steps.

A git checkout of the repository's graphs and environments in a temp dir; the demo starts two real
Ray clusters (`ray start`, token auth) and the MLflow UI, promotes and applies for real, answers on
the stable routes; `--down` stops exactly what it started.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import git
import pytest
import requests

from graphops.demo.services import Service
from tests.integration.test_cli import GRAPHOPS, graphops

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def checkout(tmp_path: Path, repo_copy: Path) -> Path:
    """A fresh git checkout holding graphs/ and environments/, as a clone would."""
    root = tmp_path / "repo"
    shutil.copytree(repo_copy, root)
    shutil.copytree(REPO / "environments", root / "environments")
    with git.Repo.init(root, initial_branch="main") as r:
        with r.config_writer() as config:
            config.set_value("user", "name", "test")
            config.set_value("user", "email", "test@example.invalid")
        r.git.add(A=True)
        r.index.commit("graphs and environments")
    return root


def test_main_job_end_to_end_then_down(checkout: Path) -> None:
    state_file = checkout / ".graphops" / "demo" / "state.json"
    sandbox = checkout / ".graphops" / "demo" / "gitops"
    services: dict[str, dict[str, object]] = {}
    try:
        first = graphops(  # the A/A experiment is left out here: test_gitops splits routes
            checkout, "demo", "--graph", "digits", "--no-experiment", timeout=1500
        )
        out = first.stdout
        assert first.returncode == 0, out[-6000:] + first.stderr[-3000:]
        assert "registered models:/digits/1 as @champion" in out
        assert "360 rows equal" in out  # validation: Serve answers equal the offline ones
        # digits' torch model exported to ONNX, proved on the validation rows, then aliased.
        assert "digits.logits: models:/digits/1 -> models:/digits/2" in out  # the proof's table
        assert "models:/digits@champion-onnx -> models:/digits/2" in out
        assert re.search(r"360 rows in [\d.]+ s .*digits\.parquet", out)  # the batch job
        assert "Pushed to origin/main." in out  # promote --auto --to dev --push main
        # diff before staging's apply: digits new there, its peak against the live room.
        peak = out[out.index("What applying staging changes") :]
        assert re.search(r"Peak during the rollout[\s\S]{0,80}?\+[\d.]+ CPUs", peak), peak[:1500]
        assert re.search(r"free\s+now:", peak[:2000]) and not re.search(r"not\s+fit", peak[:2000])
        assert "merged promote/staging/digits-1.0.1 into main" in out  # dev's, after its canaries
        for env in ("dev", "staging"):  # real requests on the stable routes, answered
            assert re.search(
                rf"{env} POST http://127\.0\.0\.1:\d+/digits one object -> 200 \{{", out
            )
            assert re.search(rf"{env} POST \S+/digits a list of 3 -> 200 \[\{{", out)
        # Dev's latency check on its serving path (HAProxy where installed): no request failed,
        # the ingress's Server-Timing phases shown.
        latency = out[out.index("where a request's time goes") :]
        assert re.search(r"path: (haproxy|direct)", latency), latency[:800]
        assert re.search(r"│ digits\s+│ [\d.]+\s+│ [\d.]+\s+│ 0\s+│ read", latency), latency[:800]
        # The canaries in dev, under a counted load: 1.0.1 stepped through 10 -> 50 -> 100 % and
        # promoted with no failed request; 1.0.2 (fails one in five) aborted at its first step,
        # its failures at most its share; each record names its MLflow run.
        canary = out[out.index("Canary digits 1.0.0 → 1.0.1 (dev)") :]
        assert re.search(r"10 %.*stable 1\.0\.0", canary) and "candidate 1.0.1" in canary
        assert re.search(r"50 %.*stable 1\.0\.0", canary)
        assert re.search(r"outcome: promoted \(passed 2 steps", canary)
        assert re.search(r"load on the stable route: 0 failed of [1-9]\d* requests", canary)
        aborted = canary[canary.index("Canary digits 1.0.1 → 1.0.2 (dev)") :]
        assert re.search(r"outcome: aborted \(at 10%: the candidate failed", aborted)
        failed, total = map(int, re.search(r"(\d+) failed of (\d+) requests", aborted).groups())
        assert 1 <= failed <= 0.10 * total + 2, (failed, total)
        assert "rollout: digits 1.0.2 aborted in dev, back to 1.0.1" in aborted
        assert "release.yaml names 1.0.1" in aborted
        # Shadow, then canary: 1.0.3 answers another digit to a request that comes alone (offline
        # validation sends batches and passes it); aborted at its mirrored step, before it
        # answered any client, its agreement below min_agreement, no client request failing.
        shadow = aborted[aborted.index("Shadow, then canary digits 1.0.1 → 1.0.3 (dev)") :]
        assert "dev's environment.yaml: rollout.strategy shadow_canary" in out
        assert re.search(r"│ digits\s+│ 1\.0\.3\s+│ passed", out)  # its offline validation
        assert re.search(r"mirror 50 %.*stable 1\.0\.1", shadow) and "mirrored 1.0.3" in shadow
        assert re.search(
            r"outcome: aborted \(at mirror 50%: the candidate disagreed with the stable", shadow
        )
        compared, agreed = map(
            int, re.search(r"(\d+) compared, (\d+) agreed \(agreement", shadow).groups()
        )
        assert compared >= 2 and agreed <= 0.1 * compared, (compared, agreed)
        assert "min_agreement 90%); the candidate answered 0 client requests" in shadow
        assert re.search(r"load on the stable route: 0 failed of [1-9]\d* requests", shadow)
        assert "rollout: digits 1.0.3 aborted in dev, back to 1.0.1" in shadow
        assert "release.yaml names 1.0.1" in shadow
        assert "problem:" not in shadow[: shadow.index("Summary")]
        runs = re.findall(r"MLflow run ([0-9a-f]{32}) in graphops-rollouts/dev", canary)
        assert len(runs) == 3, canary[:3000]
        flat = " ".join(out.split())  # graphops status: the last rollout, and its MLflow run
        assert re.search(
            r"dev: digits shadow_canary 1\.0\.1 → 1\.0\.3 aborted .{0,400}MLflow run [0-9a-f]{32}\.",
            flat,
        )
        summary = out[out.index("Summary") :]
        print(summary[summary.index("Steps") :])  # shown with -rP: where the time goes
        assert re.search(r"│ dev\s+│ digits\s+│ 1\.0\.1\s+│ digits-1\.0\.1-", summary)
        rollouts = summary[summary.index("Rollouts (dev, under load)") :]
        assert re.search(r"1\.0\.0 → 1\.0\.1\s+│ 10% advance → 50% advance\s+│ promoted", rollouts)
        assert re.search(r"1\.0\.1 → 1\.0\.2\s+│ 10% abort\s+│ aborted", rollouts)
        assert re.search(r"1\.0\.1 → 1\.0\.3\s+│ mirror 50% abort\s+│ aborted", rollouts)
        assert re.search(r"│ staging\s+│ digits\s+│ 1\.0\.1\s+│ digits-1\.0\.1-", summary)
        assert "Ray dashboard (staging)" in summary and "│ total" in summary

        state = json.loads(state_file.read_text())
        services = state["services"]
        assert set(services) == {"ray-dev", "ray-staging", "mlflow-ui"}
        assert requests.get(services["mlflow-ui"]["url"] + "/health", timeout=10).ok
        dev = services["ray-dev"]
        token = Path(dev["token_file"]).read_text().strip()
        url = dev["url"] + "/api/serve/applications/"
        assert requests.get(url, timeout=10).status_code in (401, 403)  # token auth is on
        apps = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
        assert [a["route_prefix"] for a in apps["applications"].values()] == ["/digits"]

        # Running the same command again changes nothing: no commit, no version, no validation;
        # the canaries are said to have run, with the option that runs them again.
        with git.Repo(sandbox) as clone:
            commits = len(list(clone.iter_commits("main")))
        second = graphops(checkout, "demo", "--graph", "digits", "--no-experiment", timeout=900)
        again = " ".join(second.stdout.split())
        assert second.returncode == 0, second.stdout[-6000:] + second.stderr[-3000:]
        with git.Repo(sandbox) as clone:
            assert len(list(clone.iter_commits("main"))) == commits
        assert "digits 1.0.1 is already pinned in dev: nothing to do." in again
        assert "dev: the cluster already runs what git says; nothing changed." in again
        assert "digits 1.0.1 is already pinned in staging: nothing to do." in again
        assert re.search(
            r"digits: a passed validation of this code, these models and this data exists "
            r"\(MLflow run [0-9a-f]{32}\); reused\. --revalidate validates again\.",
            again,
        )
        assert (
            "dev's canaries already ran in this sandbox: digits 1.0.1 promoted, 1.0.2 aborted "
            "and reverted; shadow, then canary: 1.0.3 aborted while mirrored and reverted "
            "(environments/dev/rollouts.yaml); `graphops demo --canary-again` rolls out three "
            "new versions." in again
        )
        assert re.search(r"1\.0\.1 → 1\.0\.2\s+│ 10% abort\s+│ aborted", second.stdout)
        assert re.search(r"1\.0\.1 → 1\.0\.3\s+│ mirror 50% abort\s+│ aborted", second.stdout)

        # `graphops status` where a user runs it, in the checkout: the demo's environments,
        # said so with the command; without the token, which variable to export.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAPHOPS_", "RAY_"))}
        env = env | {"MLFLOW_TRACKING_URI": f"sqlite:///{checkout / '.graphops' / 'mlflow.db'}"}
        status = subprocess.run(
            [GRAPHOPS, "status", "--env", "dev"],
            capture_output=True,
            text=True,
            env=env,
            cwd=checkout,
            timeout=300,
        )
        shown = " ".join(status.stdout.split())
        assert status.returncode == 1, shown  # the cluster could not be read: no token
        assert (
            "Nothing is released in environments/dev of this checkout; the demo's environments "
            "are in its sandbox .graphops/demo/gitops, shown below: `graphops --repo "
            ".graphops/demo/gitops status --env dev`" in shown
        )
        assert re.search(r"│ dev\s+│ digits\s+│ 1\.0\.1\s+│", status.stdout)
        assert "export GRAPHOPS_DEV_TOKEN=$(cat .graphops/demo/ray-dev.token)" in shown
    finally:
        down = graphops(checkout, "demo", "--down", timeout=300)
    print(down.stdout)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "ray-dev: stopped (pid" in down.stdout and "mlflow-ui: stopped (pid" in down.stdout
    # No service waits out stop_group's 10 s timeout before its SIGKILL (a drain waiting on a
    # stopped GCS did); how fast each stops below that depends on the machine's load.
    for name, seconds in re.findall(r"(\S+): stopped \(pid \d+, ([\d.]+) s\)", down.stdout):
        assert float(seconds) < 10, (name, seconds)
    for service in services.values():
        assert not Service.model_validate(service).alive(), service
        if service.get("temp_dir"):
            assert not Path(service["temp_dir"]).exists()
    assert not state_file.exists() and not sandbox.exists()
