"""Code delivery per environment (gcs, uri, image), reachable models, and the rendered RayService."""

from __future__ import annotations

import datetime
import shutil
import zipfile
from pathlib import Path
from typing import Any

import git
import pytest
import yaml

from graphops.controller.packaging import (
    archive_uri,
    build_archive,
    package_uri,
    publish_archive,
    verify_archive,
)
from graphops.controller.render import render
from graphops.environments import (
    GraphLock,
    Release,
    ReleaseEntry,
    load_environment,
    write_release,
)
from graphops.errors import ApplyError, ConfigError
from graphops.graph import content_hash, manifest_of, read_package
from graphops.registry import ResolvedModel
from tests.fixtures.locks import lock

REPO = Path(__file__).resolve().parents[2]
WHEN = datetime.datetime(2026, 11, 28, tzinfo=datetime.UTC)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "environments", tmp_path / "environments")
    return tmp_path


def _env_file(repo: Path, env: str, text: str) -> Path:
    path = repo / "environments" / env / "environment.yaml"
    path.write_text(text)
    return path


def _release(repo: Path, env: str, source: str = "mlflow-artifacts:/1/abc/artifacts/model") -> None:
    base = lock()
    model = base.models["logits"].model_copy(update={"source": source})
    pinned = base.model_copy(update={"models": {"logits": model}})
    write_release(
        repo, env, Release(graphs={"digits": ReleaseEntry(lock=pinned, promoted_at=WHEN)})
    )


def _app(repo: Path, env: str) -> tuple[dict[str, Any], str]:
    rendered = render(repo, env)
    text = rendered.files[repo / "environments" / env / "serve.yaml"]
    return rendered.config["applications"][0], text


def test_gcs_mode_is_marked_deployable_only_through_apply(repo: Path) -> None:
    _env_file(repo, "dev", "cluster: {dashboard: http://127.0.0.1:8265}\n")
    _release(repo, "dev")
    app, text = _app(repo, "dev")
    assert app["runtime_env"]["working_dir"] == "gcs://_ray_pkg_0123456789abcdef.zip"
    assert "DEPLOYABLE ONLY THROUGH `graphops apply`" in text


def test_uri_mode_names_the_content_addressed_zip_of_the_store(repo: Path) -> None:
    _release(repo, "staging")
    app, text = _app(repo, "staging")
    # Replicas fetch and check the zip themselves: a working_dir would put it first on
    # PYTHONPATH, where any module in it runs before a check could.
    assert app["args"]["code_uri"] == (
        "s3://acme-graphops-code/packages/digits-0123456789abcdef.zip"
    )
    assert "working_dir" not in app.get("runtime_env", {})
    assert "code_repository" not in app["args"] and app["args"]["manifest"]
    assert "Self-contained" in text and "DEPLOYABLE ONLY" not in text


def test_uri_mode_with_a_commit_template(repo: Path) -> None:
    _env_file(repo, "dev", "code: {working_dir: 'https://x.test/a/{commit}.zip'}\n")
    _release(repo, "dev")
    app, _ = _app(repo, "dev")
    assert app["args"]["code_uri"] == f"https://x.test/a/{'f' * 40}.zip"
    assert app["args"]["code_repository"] is True
    assert "working_dir" not in app.get("runtime_env", {})


def test_image_mode_has_no_working_dir_and_reads_graphs_from_the_image(repo: Path) -> None:
    _release(repo, "prod")
    app, text = _app(repo, "prod")
    assert "runtime_env" not in app and app["args"]["repo"] == "/opt/graphops"
    assert "mode image" in text and "ghcr.io/acme/graphops:main" in text


@pytest.mark.parametrize(
    ("code", "says"),
    [
        ("{mode: uri}", "exactly one of code.store"),
        ("{mode: image, store: 'file:///x'}", "mode image ships no zip"),
        ("{store: 'file://relative/x'}", "absolute path"),
        ("{store: 'ftp://x/y'}", "a code store is a folder URI"),
        ("{mode: tarball}", "code.mode"),
    ],
)
def test_incoherent_code_is_a_config_error_with_file_and_line(
    repo: Path, code: str, says: str
) -> None:
    path = _env_file(repo, "dev", f"cluster: {{gpus: false}}\ncode: {code}\n")
    with pytest.raises(ConfigError) as caught:
        load_environment(repo, "dev")
    message = str(caught.value)
    assert caught.value.file == str(path) and caught.value.line == 2
    assert ("code" in message) and (says in message or "mode" in message)


def test_a_model_the_nodes_cannot_read_is_refused_naming_model_and_uri(repo: Path) -> None:
    _release(repo, "staging", source="file:///home/me/mlruns/1/abc/artifacts/model")
    with pytest.raises(ConfigError) as caught:
        render(repo, "staging")
    message = str(caught.value)
    assert "models:/digits/1" in message and "file:///home/me/mlruns/1/abc" in message
    assert "graphs.digits.lock.models.logits.source" in message
    assert "mlflow-artifacts" in caught.value.fix
    assert caught.value.file and caught.value.file.endswith("staging/release.yaml")


def test_dev_on_one_machine_reads_local_model_files(repo: Path) -> None:
    _release(repo, "dev", source="file:///home/me/mlruns/1/abc/artifacts/model")
    render(repo, "dev")  # no error: every node of a local cluster shares this filesystem


def test_resolved_model_source_without_scheme_counts_as_a_local_file(repo: Path) -> None:
    _release(repo, "prod", source="/home/me/mlruns/1/model")
    with pytest.raises(ConfigError, match="cannot read"):
        render(repo, "prod")
    assert ResolvedModel  # the lock's model type is the registry's


# --- archives -------------------------------------------------------------------------------


@pytest.fixture
def graph_repo(tmp_path: Path) -> tuple[Path, str, str]:
    """A git repository holding graphs/toy at one commit; its lock's package URI."""
    root = tmp_path / "repo"
    (root / "graphs" / "toy").mkdir(parents=True)
    (root / "graphs" / "toy" / "__init__.py").write_text("graph = None\n")
    (root / "graphs" / "toy" / "data.txt").write_text("x\n")
    with git.Repo.init(root) as r:
        r.git.add(A=True)
        r.index.commit("toy")
        commit = r.head.commit.hexsha
    return root, commit, package_uri(root, "toy", commit)


def test_archive_is_deterministic_and_verified_through_rays_downloader(
    graph_repo: tuple[Path, str, str], tmp_path: Path
) -> None:
    root, commit, package = graph_repo
    one = build_archive(root, "toy", commit, package, tmp_path / "a.zip").read_bytes()
    two = build_archive(root, "toy", commit, package, tmp_path / "b.zip").read_bytes()
    assert one == two
    store = f"file://{tmp_path / 'store'}"
    written = publish_archive(root, "toy", commit, package, store)
    uri = archive_uri(store, "toy", package)
    assert written == tmp_path / "store" / uri.rsplit("/", 1)[1]
    names = zipfile.ZipFile(written).namelist()
    assert all(n.startswith(f"toy-{package[15:-4]}/graphs/toy/") for n in names)
    verify_archive(uri, "toy", _lock_of(root, package), whole_repository=False)


def test_a_tampered_or_missing_archive_is_refused(
    graph_repo: tuple[Path, str, str], tmp_path: Path
) -> None:
    root, commit, package = graph_repo
    store = f"file://{tmp_path / 'store'}"
    uri = archive_uri(store, "toy", package)
    lock = _lock_of(root, package)
    with pytest.raises(ApplyError, match="cannot be downloaded here"):
        verify_archive(uri, "toy", lock, whole_repository=False)
    written = publish_archive(root, "toy", commit, package, store)
    with zipfile.ZipFile(written, "a") as archive:
        archive.writestr(f"toy-{package[15:-4]}/graphs/toy/evil.py", "import os\n")
        archive.writestr(f"toy-{package[15:-4]}/sitecustomize.py", "import os\n")
    with pytest.raises(ApplyError) as caught:
        verify_archive(uri, "toy", lock, whole_repository=False)
    message = str(caught.value)
    assert "is not the locked code" in message and uri in message
    assert "graphs/toy/evil.py was added" in message and "sitecustomize.py was added" in message


def _lock_of(root: Path, package: str) -> GraphLock:
    """The lock of the toy graph as it is in ``root`` (content hash and manifest)."""
    folder = root / "graphs" / "toy"
    manifest = manifest_of(read_package(folder))
    return lock().model_copy(
        update={"content_hash": content_hash(folder), "manifest": manifest, "package": package}
    )


def test_object_store_archives_wait_in_the_outbox(graph_repo: tuple[Path, str, str]) -> None:
    root, commit, package = graph_repo
    written = publish_archive(root, "toy", commit, package, "s3://bucket/packages")
    assert written.parent == root / ".graphops" / "outbox" and written.is_file()


# --- RayService -----------------------------------------------------------------------------

# Paths of the RayService CRD (ray.io/v1, ray-project/kuberay
# ray-operator/config/crd/bases/ray.io_rayservices.yaml at feeaf72f, 2026-08-19) that the render
# uses, "[]" for list items; checked there when written. A rendered key outside this set must be
# checked against the CRD and added here.
_RC = "spec.rayClusterConfig"
_POD = ".template.spec"
_C = _POD + ".containers[]"
_CONTAINER = [
    _POD,
    _POD + ".containers",
    _C + ".name",
    _C + ".image",
    _C + ".envFrom",
    _C + ".envFrom[].secretRef",
    _C + ".envFrom[].secretRef.name",
    _C + ".env",
    _C + ".env[].name",
    _C + ".env[].value",
    _C + ".ports",
    _C + ".ports[].containerPort",
    _C + ".ports[].name",
    _C + ".resources",
    _C + ".resources.limits",
    _C + ".resources.requests",
    _POD + ".tolerations",
    _POD + ".tolerations[].key",
    _POD + ".tolerations[].operator",
    _POD + ".tolerations[].effect",
    ".template",
    ".rayStartParams",
]
CRD_PATHS = {
    "apiVersion",
    "kind",
    "metadata",
    "spec",
    "spec.serveConfigV2",
    "spec.upgradeStrategy",
    "spec.upgradeStrategy.type",
    _RC,
    _RC + ".rayVersion",
    _RC + ".enableInTreeAutoscaling",
    _RC + ".authOptions",
    _RC + ".authOptions.mode",
    _RC + ".authOptions.secretName",
    _RC + ".headGroupSpec",
    _RC + ".workerGroupSpecs",
    *(
        _RC + ".workerGroupSpecs[]." + k
        for k in ("groupName", "replicas", "minReplicas", "maxReplicas")
    ),
    *(_RC + ".headGroupSpec" + p for p in _CONTAINER),
    *(_RC + ".workerGroupSpecs[]" + p for p in _CONTAINER),
}
FREE_FORM = ("metadata.", ".rayStartParams.", ".resources.limits.", ".resources.requests.")
"""Maps whose keys are free-form (ObjectMeta labels, string maps, resource names)."""
REQUIRED = {  # the CRD's `required` lists on what the render writes
    "spec": ["rayClusterConfig"],
    _RC + ".headGroupSpec": ["template"],
    _RC + ".workerGroupSpecs[]": ["groupName", "maxReplicas", "minReplicas", "template"],
}


def _paths(value: Any, prefix: str = "") -> set[str]:
    out: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            out.add(path)
            if not any(f in path + "." for f in FREE_FORM) or path.endswith(FREE_FORM):
                out |= _paths(item, path)
    elif isinstance(value, list):
        for item in value:
            out |= _paths(item, prefix + "[]")
    return out


def _at(manifest: dict[str, Any], path: str) -> list[dict[str, Any]]:
    nodes: list[Any] = [manifest]
    for part in path.split("."):
        many = part.endswith("[]")
        nodes = [n[part.removesuffix("[]")] for n in nodes]
        if many:
            nodes = [item for n in nodes for item in n]
    return nodes


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_rendered_rayservice_keys_are_in_the_crd(env: str) -> None:
    manifest = yaml.safe_load((REPO / "environments" / env / "rayservice.yaml").read_text())
    unknown = {p for p in _paths(manifest) if not any(f in p + "." for f in FREE_FORM[1:])}
    unknown = {p for p in unknown if not p.startswith("metadata.")} - CRD_PATHS
    assert not unknown, f"not in the RayService CRD paths checked: {sorted(unknown)}"
    for path, keys in REQUIRED.items():
        for node in _at(manifest, path):
            assert set(keys) <= set(node), (path, keys)


def test_prod_rayservice_is_complete() -> None:
    manifest = yaml.safe_load((REPO / "environments/prod/rayservice.yaml").read_text())
    spec = manifest["spec"]
    cluster = spec["rayClusterConfig"]
    assert cluster["authOptions"] == {"mode": "token", "secretName": "graphops-prod-ray-token"}
    assert cluster["enableInTreeAutoscaling"] is True
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    gpu = groups["gpu"]["template"]["spec"]["containers"][0]
    cpu = groups["cpu"]["template"]["spec"]["containers"][0]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in cpu["resources"]["limits"]
    assert (groups["gpu"]["minReplicas"], groups["gpu"]["maxReplicas"]) == (2, 4)
    for container in (gpu, cpu, cluster["headGroupSpec"]["template"]["spec"]["containers"][0]):
        assert container["image"].startswith("ghcr.io/acme/graphops:")
        assert container["envFrom"] == [{"secretRef": {"name": "graphops-prod-mlflow"}}]
        assert container["resources"]["requests"]["cpu"] == container["resources"]["limits"]["cpu"]
        assert "RAY_AUTH_MODE" not in str(container.get("env"))  # authOptions, not a bare env var
    assert spec["upgradeStrategy"] == {"type": "NewCluster"}


def test_serve_binds_every_interface_in_pods_whatever_http_host_says() -> None:
    manifest = yaml.safe_load((REPO / "environments/dev/rayservice.yaml").read_text())
    serve = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    assert serve["http_options"]["host"] == "0.0.0.0"
    local = yaml.safe_load((REPO / "environments/dev/serve.yaml").read_text())
    assert local["http_options"]["host"] == "127.0.0.1"


def test_image_digest_is_pinned_in_the_rendered_image(repo: Path) -> None:
    digest = "sha256:" + "ab" * 32
    base = repo / "environments/base/environment.yaml"
    base.write_text(base.read_text().replace("digest: null", f"digest: {digest}"))
    text = render(repo, "prod").files[repo / "environments/prod/rayservice.yaml"]
    assert f"image: ghcr.io/acme/graphops:main@{digest}" in text


@pytest.mark.parametrize(
    ("text", "says", "line"),
    [
        ("cluster:\n  gpus: true\n  worker_groups:\n    cpu: {cpus: 1}\n", "no worker group", 1),
        ("cluster:\n  worker_groups:\n    g: {gpus: 1}\n", "cluster.gpus is false", 1),
        ("cluster:\n  worker_groups:\n    cpu: {cpu: 1}\n", 'Did you mean "cpus"', 3),
        ("cluster:\n  head: {memory: lots}\n", "Kubernetes quantity", 2),
        ("cluster:\n  worker_groups:\n    cpu: {min_replicas: 5, max_replicas: 2}\n", "<=", 3),
        ("cluster:\n  token_secret: a\n  token_secret: b\n", "appears twice", 3),
    ],
)
def test_cluster_errors_name_file_line_and_key_path(
    repo: Path, text: str, says: str, line: int
) -> None:
    path = _env_file(repo, "staging", text)
    with pytest.raises(ConfigError, match=says) as caught:
        load_environment(repo, "staging")
    assert caught.value.file == str(path) and caught.value.line == line


def test_pin_image_writes_the_digest_line_and_re_renders(repo: Path) -> None:
    from graphops.controller.image import pin_image

    digest = "sha256:" + "cd" * 32
    base = repo / "environments/base/environment.yaml"
    before = base.read_text()
    written = pin_image(repo, digest)
    assert written[0] == base and repo / "environments/prod/rayservice.yaml" in written
    after = base.read_text()
    assert f"    digest: {digest}\n" in after
    assert after.replace(digest, "null") == before  # comments and layout kept
    assert pin_image(repo, digest) == []  # idempotent
    with pytest.raises(ConfigError, match="64 lowercase hex"):
        pin_image(repo, "sha256:xyz")
