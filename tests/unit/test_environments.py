"""Environment files: strict loading (duplicate and unknown keys), overlays, deterministic render."""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path

import pytest

from graphops.controller.render import app_name, render
from graphops.environments import (
    Release,
    ReleaseEntry,
    load_environment,
    load_release,
    write_release,
)
from graphops.errors import ConfigError
from tests.fixtures.locks import lock

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "environments", tmp_path / "environments")
    return tmp_path


def test_overlay_on_base_and_policy(repo: Path) -> None:
    dev, prod = load_environment(repo, "dev"), load_environment(repo, "prod")
    assert dev.cluster.dashboard == "http://127.0.0.1:8265" and dev.http_host == "127.0.0.1"
    assert dev.policy.require_validation  # from base
    assert (prod.policy.upstream, prod.policy.soak_minutes, prod.cluster.gpus) == (
        "staging",
        120,
        True,
    )


def test_unknown_key_names_file_field_and_suggestion(repo: Path) -> None:
    path = repo / "environments/dev/environment.yaml"
    path.write_text("cluster:\n  dashbord: http://x\n")
    with pytest.raises(ConfigError, match=r'cluster\.dashbord.*Did you mean "dashboard"') as caught:
        load_environment(repo, "dev")
    assert caught.value.file == str(path)


def test_unknown_key_under_a_graph_of_the_release_lists_the_known_keys(repo: Path) -> None:
    entry = ReleaseEntry(
        lock=lock(), promoted_at=datetime.datetime(2026, 11, 28, tzinfo=datetime.UTC)
    )
    write_release(repo, "dev", Release(graphs={"digits": entry}))
    path = repo / "environments/dev/release.yaml"
    path.write_text(path.read_text().replace("    lock:\n", "    traffik: {}\n    lock:\n", 1))
    with pytest.raises(ConfigError, match=r'graphs\.digits\.traffik.*Did you mean "traffic"'):
        load_release(repo, "dev")


def test_duplicate_keys_are_an_error(repo: Path) -> None:
    (repo / "environments/dev/environment.yaml").write_text("http_port: 1\nhttp_port: 2\n")
    with pytest.raises(ConfigError, match=r'Key "http_port" appears twice \(lines 1 and 2\)'):
        load_environment(repo, "dev")


def test_unknown_environment_and_upstream(repo: Path) -> None:
    with pytest.raises(ConfigError, match='Did you mean "staging"'):
        load_environment(repo, "stagin")
    (repo / "environments/prod/environment.yaml").write_text("policy: {upstream: stage}\n")
    with pytest.raises(ConfigError, match=r'policy\.upstream is "stage"'):
        load_environment(repo, "prod")


def test_render_is_deterministic_and_valid_for_ray(repo: Path) -> None:
    entry = ReleaseEntry(
        lock=lock(), promoted_at=datetime.datetime(2026, 11, 28, tzinfo=datetime.UTC)
    )
    write_release(repo, "dev", Release(graphs={"digits": entry}))
    assert load_release(repo, "dev").graphs["digits"] == entry
    first = render(repo, "dev")
    first.write()
    again = render(repo, "dev")
    assert first.files == again.files and not again.stale()
    serve_yaml = (repo / "environments/dev/serve.yaml").read_text()
    assert f"name: {app_name('digits', entry.lock)}" in serve_yaml
    # dev ships code as a zip in its file:// store, named by the lock's package hash
    zipped = "code_uri: file:///var/tmp/graphops/packages/digits-0123456789abcdef.zip"
    assert zipped in serve_yaml and "Self-contained" in serve_yaml
    assert "cpu_budget: 0.9" in serve_yaml and "cpu_only: true" in serve_yaml
    assert "serveConfigV2: |" in (repo / "environments/dev/rayservice.yaml").read_text()


def test_lock_id_changes_with_models_not_with_scaling() -> None:
    at = datetime.datetime(2026, 11, 28, tzinfo=datetime.UTC)
    base = ReleaseEntry(lock=lock(), promoted_at=at)
    scaled = base.model_copy(update={"deployments": {"logits": {"replicas": 3}}})
    other_model = ReleaseEntry(lock=lock(digest="b"), promoted_at=at)
    assert app_name("digits", base.lock) == app_name("digits", scaled.lock)
    assert app_name("digits", base.lock) != app_name("digits", other_model.lock)
    assert app_name("digits", base.lock).startswith("digits-1.0.0-")


def test_scaling_overrides_go_to_serve_resources_to_the_builder(repo: Path) -> None:
    import yaml

    from graphops.runtime.schema import DeploymentOverride

    overrides = {
        "logits": DeploymentOverride(replicas=2, max_ongoing_requests=16),
        "ingress": DeploymentOverride(min_replicas=1, max_replicas=4, cpus=0.2),
    }
    entry = ReleaseEntry(
        lock=lock(),
        promoted_at=datetime.datetime(2026, 11, 28, tzinfo=datetime.UTC),
        deployments=overrides,
    )
    write_release(repo, "dev", Release(graphs={"digits": entry}))
    [app] = yaml.safe_load(render(repo, "dev").files[repo / "environments/dev/serve.yaml"])[
        "applications"
    ]
    # Serve applies these in place (lightweight updates): no replica restarts.
    assert app["deployments"] == [
        {
            "name": "ingress",
            "autoscaling_config": {"min_replicas": 1, "max_replicas": 4},
            "user_config": {},
        },
        {"name": "logits", "num_replicas": 2, "max_ongoing_requests": 16},
    ]
    # Resources change the replicas themselves: they stay with the builder.
    assert app["args"]["deployments"] == {"ingress": {"cpus": 0.2}}


def test_a_new_commit_or_validation_run_alone_keeps_the_live_lock() -> None:
    from graphops.controller.lock import same_lock

    live = ReleaseEntry(lock=lock(), promoted_at=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))
    later = lock().model_copy(update={"commit": "e" * 40, "validation_run": "run2"})
    assert same_lock(live, later) is live.lock  # re-validated or another graph changed
    changed = lock(digest="b").model_copy(update={"commit": "e" * 40})
    assert same_lock(live, changed) is changed  # new model digest: a new lock
    assert same_lock(None, later) is later
