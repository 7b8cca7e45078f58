"""The CI trust boundary as the workflows declare it (docs/security.md, "CI trust boundary")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

WORKFLOWS = Path(__file__).resolve().parents[2] / ".github" / "workflows"


def workflow(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return loaded


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps") or [])


def test_pull_request_code_gets_no_write_secret_and_writes_no_record() -> None:
    text = (WORKFLOWS / "pull-request.yml").read_text()
    validate = workflow("pull-request.yml")["jobs"]["validate"]
    [run] = [s for s in steps(validate) if "nox -s validate" in str(s.get("run", ""))]

    assert "secrets.MLFLOW_TRACKING_URI" not in text
    assert "--no-record" in run["run"]
    assert "GRAPHOPS_TRUSTED_RECORD" not in text
    assert "environment" not in validate  # the write credential's environment is main-only


def test_the_trusted_record_is_written_on_the_merged_commit_before_promotion() -> None:
    jobs = workflow("promote.yml")["jobs"]
    trusted = jobs["validate-merged"]
    [run] = [s for s in steps(trusted) if "nox -s validate" in str(s.get("run", ""))]

    assert run["env"]["GRAPHOPS_TRUSTED_RECORD"] == "1"
    assert "--no-record" not in run["run"]
    assert trusted["environment"] == "registry-write"
    assert trusted["permissions"] == {"contents": "read"}
    assert jobs["promote-dev"]["needs"] == "validate-merged"


@pytest.mark.parametrize("name", sorted(p.name for p in WORKFLOWS.glob("*.yml")))
def test_checkout_keeps_no_credentials_unless_the_job_pushes(name: str) -> None:
    for job_name, job in workflow(name)["jobs"].items():
        pushes = (job.get("permissions") or {}).get("contents") == "write"
        for step in steps(job):
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                keeps = (step.get("with") or {}).get("persist-credentials")
                assert keeps is pushes, f"{name}: {job_name}"


def test_the_image_job_pushes_the_repository_the_environments_name() -> None:
    image = workflow("image.yml")
    base = yaml.safe_load((WORKFLOWS.parents[1] / "environments/base/environment.yaml").read_text())
    assert image["env"]["IMAGE"] == base["cluster"]["image"]["repository"]
    assert image["env"]["TAG"] == base["cluster"]["image"]["tag"]
    assert image["permissions"] == {}
    assert image["jobs"]["build"]["permissions"] == {"contents": "read", "packages": "write"}
    [pin] = [s for s in steps(image["jobs"]["pin"]) if "pin-image" in str(s.get("run", ""))]
    assert "nox -s pin-image" in pin["run"] and "${{" not in pin["run"]
