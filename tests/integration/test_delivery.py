"""Code delivery `uri` as a new user meets it: promote digits to dev, then Ray's OWN `serve deploy`
of the committed serve.yaml on a fresh cluster (`ray start --head`, token auth, loopback; nothing
uploaded by graphops) reaches RUNNING for every application and answers over HTTP.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import git
import pytest
import requests
import yaml

from graphops.controller.apply import check_archives
from graphops.controller.promote import promote
from graphops.controller.render import render
from graphops.demo import services
from graphops.environments import load_environment, load_release
from graphops.errors import ApplyError
from graphops.registry import Registry
from graphops.validation import validate_graph
from tests.integration._repos import dev_repo

pytestmark = pytest.mark.usefixtures("ray_cluster", "champion")

SERVE = str(Path(sys.executable).with_name("serve"))


@pytest.fixture(scope="module")
def fresh(
    registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[services.Service]:
    """A fresh `ray start --head` cluster (graphops.demo.services); stopped by its pid."""
    service = services.start_ray(
        "ray-delivery",
        tmp_path_factory.mktemp("ray"),
        dashboard_port=None,
        serve_port=None,
        tracking_uri=registry.tracking_uri,  # where replicas load models (models.tracking_uri: null)
        num_cpus=2,
        taken=set(),
    )
    try:
        services.wait_ready(service)
        yield service
    finally:
        services.stop(service)


@pytest.fixture(scope="module")
def repo(
    repo_copy: Path, fresh: services.Service, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A git repository of graphs/ and environments/, dev (mode uri) on the fresh cluster."""
    root = tmp_path_factory.mktemp("delivery") / "repo"

    def on_fresh(data: dict) -> None:
        assert data["code"]["mode"] == "uri"  # the committed dev delivers code as a zip
        data["code"]["store"] = f"file://{root.parent / 'packages'}"
        data["cluster"] |= {"dashboard": fresh.url, "serve_url": _serve_url(fresh)}
        data["http_port"] = fresh.ports["serve"]

    return dev_repo(repo_copy, root, on_fresh)


def _serve_url(service: services.Service) -> str:
    return f"http://127.0.0.1:{service.ports['serve']}"


def _statuses(fresh: services.Service, env: dict[str, str]) -> dict[str, str]:
    shown = subprocess.run(
        [SERVE, "status", "--address", fresh.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    apps = (yaml.safe_load(shown.stdout) or {}).get("applications") or {}
    return {name: app["status"] for name, app in apps.items()}


def test_rays_own_serve_deploy_of_the_committed_file_answers(
    repo: Path, fresh: services.Service, registry: Registry
) -> None:
    commit = git.Repo(repo).head.commit.hexsha
    result = validate_graph(repo, "digits", registry, commit=commit, parity=False)
    assert result.status == "passed", result.problems
    promoted = promote(repo, "digits", "dev", registry)
    with git.Repo(repo) as r:
        r.git.merge(promoted.branch)  # the reviewed promotion, merged
    assert not render(repo, "dev").stale()
    lock = load_release(repo, "dev").graphs["digits"].lock
    serve_yaml = (repo / "environments/dev/serve.yaml").read_text()
    assert "DEPLOYABLE ONLY" not in serve_yaml and "gcs://" not in serve_yaml
    config = yaml.safe_load(serve_yaml)
    [app] = config["applications"]
    zipped = app["args"]["code_uri"]  # fetched and checked by the replicas, not a working_dir
    assert "working_dir" not in app.get("runtime_env", {})
    store = repo.parent / "packages"
    assert zipped == f"file://{store}/digits-{lock.package[15:-4]}.zip"
    assert (store / zipped.rsplit("/", 1)[1]).is_file()  # published by promote

    # Ray's own CLI, the committed file as it is, on a cluster graphops never talked to.
    env = os.environ | {"RAY_AUTH_TOKEN": fresh.token or "", "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
    deployed = subprocess.run(
        [SERVE, "deploy", str(repo / "environments/dev/serve.yaml"), "--address", fresh.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert deployed.returncode == 0, deployed.stderr
    deadline, statuses = time.monotonic() + 300, {}
    while time.monotonic() < deadline:
        statuses = _statuses(fresh, env)
        if statuses and all(s in ("RUNNING", "DEPLOY_FAILED") for s in statuses.values()):
            break
        time.sleep(3)
    assert statuses == {a["name"]: "RUNNING" for a in config["applications"]}, statuses
    answer = requests.post(f"{_serve_url(fresh)}/digits", json=lock.example, timeout=60)
    assert answer.status_code == 200 and answer.json()["label"] == 7, answer.text

    # apply's check of the zip (whatever the scheme): the published one holds the locked code...
    env_config = load_environment(repo, "dev")
    check_archives(repo, env_config, {app["name"]: app}, {app["name"]: lock})
    # ...and one overwritten after publication is refused, naming graph and URI.
    path = store / zipped.rsplit("/", 1)[1]
    original = path.read_bytes()
    try:
        path.write_bytes(original.replace(b"graph", b"grapH", 1))
        with pytest.raises(ApplyError, match="digits") as caught:
            check_archives(repo, env_config, {app["name"]: app}, {app["name"]: lock})
        assert zipped in str(caught.value)
    finally:
        path.write_bytes(original)
