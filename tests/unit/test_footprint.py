"""The footprint options of `serving:` (scale to zero, ingress CPUs): schema, render, builder."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from ray.serve.schema import ServeDeploySchema

from graphops.controller.render import application, versions
from graphops.environments import EnvironmentConfig, ReleaseEntry, load_environment
from graphops.errors import ConfigError
from graphops.runtime.schema import DeploymentOverride
from graphops.runtime.serving import ServingConfig
from tests.fixtures.locks import lock

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "environments", tmp_path / "environments")
    return tmp_path


def rendered(serving: dict[str, Any], **entry: Any) -> dict[str, Any]:
    env = EnvironmentConfig(name="dev", serving=serving)  # type: ignore[arg-type]
    release = ReleaseEntry(lock=lock(), promoted_at="2026-12-01T00:00:00Z", **entry)  # type: ignore[arg-type]
    return application(versions("valid", release)[0], env)


def ingress_entry(app: dict[str, Any]) -> dict[str, Any]:
    return next(d for d in app["deployments"] if d["name"] == "ingress")


def test_by_default_the_ingress_keeps_fixed_replicas_and_its_cpus() -> None:
    app = rendered({"ingress": "proxy"})
    assert ingress_entry(app) == {"name": "ingress", "user_config": {}}
    assert "ingress" not in app["args"].get("deployments", {})


def test_scale_to_zero_renders_autoscaling_from_zero_valid_for_ray() -> None:
    app = rendered({"ingress": "proxy", "scale_to_zero": True, "idle_s": 60})
    assert ingress_entry(app)["autoscaling_config"] == {
        "min_replicas": 0,
        "max_replicas": 1,
        "initial_replicas": 1,
        "downscale_delay_s": 60,
        "upscale_delay_s": 0,
    }
    ServeDeploySchema.model_validate({"applications": [app]})  # Ray's own schema accepts it


def test_a_release_override_of_the_ingress_scaling_wins_over_scale_to_zero() -> None:
    app = rendered(
        {"ingress": "proxy", "scale_to_zero": True},
        deployments={"ingress": DeploymentOverride(replicas=2)},
    )
    entry = ingress_entry(app)
    assert entry["num_replicas"] == 2 and "autoscaling_config" not in entry


def test_ingress_cpus_reach_the_builder_unless_the_release_sets_them() -> None:
    app = rendered({"ingress": "proxy", "ingress_cpus": 0.05})
    assert app["args"]["deployments"]["ingress"]["cpus"] == 0.05
    own = rendered(
        {"ingress": "proxy", "ingress_cpus": 0.05},
        deployments={"ingress": DeploymentOverride(cpus=0.5)},
    )
    assert own["args"]["deployments"]["ingress"]["cpus"] == 0.5


@pytest.mark.parametrize("ingress", ["direct", "haproxy"])
def test_scale_to_zero_is_refused_off_the_proxy_naming_file_and_field(
    repo: Path, ingress: str
) -> None:
    path = repo / "environments/dev/environment.yaml"
    path.write_text(
        path.read_text().split("serving:")[0]
        + f"serving:\n  ingress: {ingress}\n  scale_to_zero: true\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_environment(repo, "dev")
    text = str(caught.value)
    assert "serving" in text and "scale_to_zero needs ingress proxy" in text
    assert caught.value.file == str(path)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("serving:\n  ingress: proxy\n  scale_to_zero: maybe\n", "serving.scale_to_zero"),
        ("serving:\n  ingress: proxy\n  ingress_cpus: 0\n", "serving.ingress_cpus"),
        ("serving:\n  ingress: proxy\n  idle_s: 0\n", "serving.idle_s"),
        ("serving:\n  ingress: proxy\n  scale_to_0: true\n", "serving.scale_to_0"),
    ],
)
def test_a_bad_footprint_value_names_file_and_field(repo: Path, text: str, field: str) -> None:
    path = repo / "environments/dev/environment.yaml"
    path.write_text(path.read_text().split("serving:")[0] + text)
    with pytest.raises(ConfigError) as caught:
        load_environment(repo, "dev")
    assert field in str(caught.value) and caught.value.file == str(path)


def test_the_builder_takes_the_ingress_autoscaling() -> None:
    assert ServingConfig().ingress_autoscaling() is None
    bounds = ServingConfig(scale_to_zero=True, idle_s=5).ingress_autoscaling()
    assert bounds is not None and bounds["min_replicas"] == 0 and bounds["downscale_delay_s"] == 5


def test_a_local_store_is_copied_without_mlflow_and_checked_the_same(tmp_path: Path) -> None:
    import subprocess
    import sys

    from graphops.registry._integrity import Version
    from graphops.registry._pinned import _local_source, fetched

    assert _local_source("file:///a/b%20c") == Path("/a/b c")
    assert _local_source("/a/b") == Path("/a/b")
    assert _local_source("s3://bucket/a") is None
    assert _local_source("mlflow-artifacts:/1/a") is None
    source = tmp_path / "model"
    (source / "data").mkdir(parents=True)
    (source / "data" / "weights.bin").write_bytes(b"\x00\x01")
    found = Version("m", 1, source.as_uri(), "sha256:x")
    with fetched(found, None, {}) as path:
        assert path != source and (path / "data" / "weights.bin").read_bytes() == b"\x00\x01"
    assert not path.exists()  # a private copy, deleted afterwards
    script = (
        "import sys; from pathlib import Path; "
        "from graphops.registry._integrity import Version; "
        "from graphops.registry._pinned import fetched; "
        f"v = Version('m', 1, {source.as_uri()!r}, 'sha256:x'); "
        "ctx = fetched(v, None, {}); ctx.__enter__(); "
        "print('mlflow' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"
