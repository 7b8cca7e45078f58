"""An environment's serving path: `serving:` in environment.yaml, rendered where Ray reads it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from graphops.controller.rayservice import IMAGE_HAPROXY, rayservice
from graphops.demo.services import HAPROXY_PORTS, haproxy_dir, serving_env
from graphops.environments import load_environment
from graphops.errors import ConfigError
from graphops.runtime.serving import (
    HAPROXY_DIR_MAX,
    ServingConfig,
    cluster_env,
    loopback_haproxy,
    stop_haproxy,
    usable,
)

REPO = Path(__file__).resolve().parents[2]
SERVE_CONFIG = {"http_options": {"host": "127.0.0.1", "port": 8000}, "applications": []}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "environments", tmp_path / "environments")
    return tmp_path


def containers(manifest: dict) -> list[dict]:
    cluster = manifest["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]
    return [c for pod in pods for c in pod["template"]["spec"]["containers"]]


def env_of(container: dict) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


def test_every_environment_declares_haproxy_and_no_grpc(repo: Path) -> None:
    for name in ("dev", "staging", "prod"):
        serving = load_environment(repo, name).serving
        assert (serving.ingress, serving.grpc) == ("haproxy", False), name


def test_serving_merges_over_base_key_by_key(repo: Path) -> None:
    base = repo / "environments/base/environment.yaml"
    base.write_text(base.read_text() + "serving:\n  grpc: true\n  drain_s: 2\n")
    dev = load_environment(repo, "dev").serving
    assert (dev.ingress, dev.grpc, dev.drain_s) == ("haproxy", True, 2)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("serving:\n  ingress: nginx\n", "serving.ingress"),
        ("serving:\n  direct_ports: [31000, 30000]\n", "serving.direct_ports"),
        ("serving:\n  ingres: haproxy\n", "serving.ingres"),
    ],
)
def test_a_bad_serving_value_names_file_and_field(repo: Path, text: str, field: str) -> None:
    path = repo / "environments/staging/environment.yaml"
    path.write_text(path.read_text().split("serving:")[0] + text)
    with pytest.raises(ConfigError) as caught:
        load_environment(repo, "staging")
    assert field in str(caught.value) and caught.value.file == str(path)


def test_rayservice_gives_every_container_the_serving_path(repo: Path) -> None:
    manifest = rayservice(load_environment(repo, "prod"), SERVE_CONFIG)
    found = containers(manifest)
    assert len(found) == 3  # head, cpu, gpu
    for container in found:
        env = env_of(container)
        assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
        assert env["RAY_SERVE_HAPROXY_BINARY_PATH"] == IMAGE_HAPROXY  # the image's, not this box's
        assert env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
        assert env["RAY_SERVE_USE_GRPC_BY_DEFAULT"] == "0"
        assert env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "5"
        assert not any(name.startswith("RAY_SERVE_HAPROXY_CONFIG") for name in env)  # pod's /tmp


def test_rayservice_on_the_proxy_sets_no_fast_path(repo: Path) -> None:
    env = load_environment(repo, "prod").model_copy(update={"serving": ServingConfig()})
    for container in containers(rayservice(env, SERVE_CONFIG)):
        assert env_of(container) == {"RAY_SERVE_USE_GRPC_BY_DEFAULT": "0"}


def test_committed_rayservices_carry_the_path() -> None:
    for name in ("dev", "staging", "prod"):
        manifest = yaml.safe_load((REPO / f"environments/{name}/rayservice.yaml").read_text())
        for container in containers(manifest):
            assert env_of(container)["RAY_SERVE_ENABLE_HA_PROXY"] == "1", name


def test_cluster_env_of_each_path() -> None:
    assert cluster_env(ServingConfig()) == {"RAY_SERVE_USE_GRPC_BY_DEFAULT": "0"}
    direct = cluster_env(ServingConfig(ingress="direct", drain_s=0.5))
    assert direct["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "0.5"
    assert "RAY_SERVE_ENABLE_HA_PROXY" not in direct
    with pytest.raises(ValueError, match="longer than"):
        cluster_env(ServingConfig(ingress="haproxy"), state_dir=Path("/tmp") / ("x" * 30))


def test_without_the_binary_haproxy_falls_back_to_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    chosen, why = usable(ServingConfig(ingress="haproxy"))
    assert chosen.ingress == "direct" and why and "apt-get install haproxy" in why
    assert usable(ServingConfig(ingress="proxy")) == (ServingConfig(ingress="proxy"), None)


def test_local_nodes_keep_haproxy_files_and_ports_apart(tmp_path: Path) -> None:
    serving = ServingConfig(ingress="haproxy", haproxy_binary="/bin/true")
    temp = "/tmp/graphops-0123abcd-ray-dev"
    ports = dict(zip(HAPROXY_PORTS, (41001, 41002, 41003, 41004), strict=True))
    env = serving_env(serving, temp, ports)
    assert (env["RAY_SERVE_HAPROXY_STATS_PORT"], env["RAY_SERVE_HAPROXY_METRICS_PORT"]) == (
        "41001",
        "41002",
    )
    assert (
        env["RAY_SERVE_FALLBACK_PROXY_HTTP_PORT"],
        env["RAY_SERVE_FALLBACK_PROXY_GRPC_PORT"],
    ) == (
        "41003",
        "41004",
    )
    folder = haproxy_dir(temp)
    try:
        assert len(str(folder)) <= HAPROXY_DIR_MAX
        assert env["RAY_SERVE_HAPROXY_SOCKET_PATH"] == str(folder / "admin.sock")
        assert env["RAY_SERVE_HAPROXY_BINARY_PATH"] == str(folder / "haproxy-loopback")
        assert haproxy_dir(temp + "-cpu") != folder  # a worker node's own
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert serving_env(ServingConfig(), temp, {}) == {"RAY_SERVE_USE_GRPC_BY_DEFAULT": "0"}


def test_the_loopback_wrapper_binds_stats_and_metrics_on_loopback(tmp_path: Path) -> None:
    wrapped = loopback_haproxy(
        ServingConfig(ingress="haproxy", haproxy_binary="/bin/true"), tmp_path
    )
    assert wrapped.haproxy_binary is not None
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        "frontend prometheus\n    bind :9101\nfrontend http_frontend\n    bind 127.0.0.1:8000\n"
        "listen stats\n  bind *:8404\n"
    )
    ran = subprocess.run(
        [wrapped.haproxy_binary, "-db", "-f", str(config), "-sf", "1"], env=os.environ, check=False
    )
    assert ran.returncode == 0  # the real binary (here /bin/true) ran with the same arguments
    binds = [line.split()[1] for line in config.read_text().splitlines() if "bind" in line]
    assert binds == ["127.0.0.1:9101", "127.0.0.1:8000", "127.0.0.1:8404"]
    assert loopback_haproxy(ServingConfig(), tmp_path) == ServingConfig()  # no HAProxy: as is


def test_a_clusters_haproxy_is_stopped_by_its_folder(tmp_path: Path) -> None:
    """What `stop_haproxy` finds: processes named haproxy with an argument under the folder."""
    fake = tmp_path / "bin" / "haproxy"
    fake.parent.mkdir()
    fake.symlink_to(sys.executable)  # a process named haproxy that only waits
    folder = tmp_path / "gh"
    wait = "import time; time.sleep(60)"
    ours = subprocess.Popen([str(fake), "-c", wait, "-f", str(folder / "node" / "haproxy.cfg")])
    other = subprocess.Popen([str(fake), "-c", wait, "-f", str(tmp_path / "ghz" / "haproxy.cfg")])
    try:
        assert stop_haproxy(folder, timeout_s=10) == [ours.pid]
        assert ours.wait(timeout=10) is not None and other.poll() is None
    finally:
        for process in (ours, other):
            process.kill()
            process.wait()
