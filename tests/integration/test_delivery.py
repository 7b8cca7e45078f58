"""Code delivery `uri` as a new user meets it: promote digits to dev, then Ray's OWN `serve deploy`
of the committed serve.yaml on a fresh cluster (`ray start --head`, token auth, loopback; nothing
uploaded by graphops) reaches RUNNING for every application and answers over HTTP.
"""

from __future__ import annotations

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
from tests.integration._clusters import fresh_cluster, serve_cli, serve_url, settled
from tests.integration._repos import dev_repo

pytestmark = pytest.mark.usefixtures("ray_cluster", "champion")


@pytest.fixture(scope="module")
def fresh(
    registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[services.Service]:
    """A fresh `ray start --head` cluster; replicas load models from the test registry."""
    with fresh_cluster("ray-delivery", tmp_path_factory.mktemp("ray"), registry.tracking_uri) as s:
        yield s


@pytest.fixture(scope="module")
def repo(
    repo_copy: Path, fresh: services.Service, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A git repository of graphs/ and environments/, dev (mode uri) on the fresh cluster."""
    root = tmp_path_factory.mktemp("delivery") / "repo"

    def on_fresh(data: dict) -> None:
        assert data["code"]["mode"] == "uri"  # the committed dev delivers code as a zip
        data["code"]["store"] = f"file://{root.parent / 'packages'}"
        data["cluster"] |= {"dashboard": fresh.url, "serve_url": serve_url(fresh)}
        data["http_port"] = fresh.ports["serve"]

    return dev_repo(repo_copy, root, on_fresh)


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
    deployed = serve_cli(fresh, "deploy", str(repo / "environments/dev/serve.yaml"))
    assert deployed.returncode == 0, deployed.stderr
    statuses = {name: app["status"] for name, app in settled(fresh, timeout_s=300).items()}
    assert statuses == {a["name"]: "RUNNING" for a in config["applications"]}, statuses
    answer = requests.post(f"{serve_url(fresh)}/digits", json=lock.example, timeout=60)
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
