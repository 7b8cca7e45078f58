"""Tampered code archives never run: replaced after promotion, deployed the two ways users deploy.

dev delivers code as a zip in a ``file://`` store. After a real promotion, each attack below puts
an altered zip in place of the promoted one, then deploys the committed ``serve.yaml`` with Ray's
own ``serve deploy`` on a fresh cluster, and again with ``graphops apply``. Every altered file
writes a marker file when imported: the promise is that no application reaches RUNNING or
answers, and **no marker exists afterwards** (the attacker's code never ran, not even once).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import git
import pytest
import requests
import yaml

from graphops.controller.promote import promote
from graphops.demo import services
from graphops.environments import GraphLock, load_release
from graphops.registry import Registry
from graphops.validation import validate_graph
from tests.integration._clusters import cli_env, fresh_cluster, serve_cli, serve_url, settled
from tests.integration._repos import GRAPHOPS, dev_repo
from tests.reliability.conftest import Rows

pytestmark = pytest.mark.usefixtures("champion")

DEFEAT = """
import graphops.graph._discovery as _d, graphops.graph._verified as _v
_v.check_code = lambda files, locked, **kw: locked.content_hash  # always "equal"
_d.check_code = _v.check_code
class _Equal(str):
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    __hash__ = str.__hash__
"""


def mark(marker: Path) -> str:
    return f"from pathlib import Path as _P\n_P({str(marker)!r}).write_text('ran')\n"


def attacks(markers: Path) -> dict[str, dict[str, str | None]]:
    """Attack -> archive member -> code put first in it (None: a new file of just the marker)."""
    return {
        "extra graphs/__init__.py": {"graphs/__init__.py": None},
        "changed graph file": {"graphs/digits/__init__.py": ""},
        "code that defeats the comparison": {"graphs/digits/network.py": DEFEAT},
        "sitecustomize.py and a graphops/ beside the graph": {
            "sitecustomize.py": None,
            "graphops/__init__.py": None,
        },
    }


def tampered(original: bytes, changes: dict[str, str | None], marker: Path) -> bytes:
    """``original`` (a promoted zip) with ``changes``, under the same top-level folder."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(original)) as source, zipfile.ZipFile(out, "w") as target:
        top = source.namelist()[0].split("/", 1)[0]
        members = {n.split("/", 1)[1]: source.read(n) for n in source.namelist()}
        for name, prefix in changes.items():
            kept = members.get(name, b"").decode() if prefix is not None else ""
            members[name] = (mark(marker) + (prefix or "") + kept).encode()
        for name, data in sorted(members.items()):
            target.writestr(f"{top}/{name}", data)
    return out.getvalue()


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Service]:
    """A fresh `ray start --head` cluster, token auth on; stopped by its pid.

    Its MLflow tracking URI answers nothing: replicas load the models from the lock's pinned
    sources (digest checked) and need no registry.
    """
    work = tmp_path_factory.mktemp("ray")
    with fresh_cluster("ray-tamper", work, "http://127.0.0.1:9") as service:  # the discard port
        yield service


@pytest.fixture(scope="module")
def promoted(
    repo_copy: Path,
    fresh: services.Service,
    registry: Registry,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, GraphLock, Path]:
    """(repository, digits' lock in dev, its published zip) after validate, promote, merge."""
    root = tmp_path_factory.mktemp("tamper") / "repo"

    def on_fresh(data: dict) -> None:
        data["code"]["store"] = f"file://{root.parent / 'packages'}"
        data["cluster"] |= {"dashboard": fresh.url, "serve_url": serve_url(fresh)}
        data["http_port"] = fresh.ports["serve"]

    repo = dev_repo(repo_copy, root, on_fresh)
    commit = git.Repo(repo).head.commit.hexsha
    result = validate_graph(repo, "digits", registry, commit=commit, parity=False)
    assert result.status == "passed", result.problems
    with git.Repo(repo) as r:
        r.git.merge(promote(repo, "digits", "dev", registry).branch)
    lock = load_release(repo, "dev").graphs["digits"].lock
    [app] = yaml.safe_load((repo / "environments/dev/serve.yaml").read_text())["applications"]
    zipped = Path(app["args"]["code_uri"].removeprefix("file://"))
    assert zipped.is_file()
    return repo, lock, zipped


def test_tampered_archives_never_run_through_serve_deploy_or_apply(
    promoted: tuple[Path, GraphLock, Path],
    fresh: services.Service,
    registry: Registry,
    tmp_path: Path,
    rows: Rows,
) -> None:
    repo, lock, zipped = promoted
    original = zipped.read_bytes()
    markers = tmp_path / "markers"
    markers.mkdir()
    serve_yaml = str(repo / "environments/dev/serve.yaml")
    try:
        for attack, changes in attacks(markers).items():
            marker = markers / attack.replace(" ", "-").replace("/", "_")
            zipped.write_bytes(tampered(original, changes, marker))
            # 1. Ray's own CLI, the committed file as it is.
            start = time.monotonic()
            deployed = serve_cli(fresh, "deploy", serve_yaml)
            assert deployed.returncode == 0, deployed.stderr
            apps = settled(fresh)
            seconds = round(time.monotonic() - start, 1)
            answer = requests.post(f"{serve_url(fresh)}/digits", json=lock.example, timeout=30)
            statuses = {name: app["status"] for name, app in apps.items()}
            message = " ".join(str(a.get("message", "")) for a in apps.values())
            print(f"\n{attack}: serve deploy -> {statuses}, HTTP {answer.status_code}\n{message}")
            assert statuses and set(statuses.values()) == {"DEPLOY_FAILED"}, statuses
            assert "is not the locked code" in message, message
            assert answer.status_code != 200, answer.text
            assert not marker.exists(), f"{attack}: the tampered code ran"
            assert serve_cli(fresh, "shutdown", "-y").returncode == 0
            # 2. graphops apply, on the now empty cluster.
            applied = subprocess.run(
                [GRAPHOPS, "--repo", str(repo), "apply", "--env", "dev"],
                # apply reads the lock's validation record there (the cluster needs none)
                env=cli_env(fresh) | {"MLFLOW_TRACKING_URI": registry.tracking_uri},
                capture_output=True,
                text=True,
                timeout=300,
            )
            said = " ".join(applied.stdout.split() + applied.stderr.split())
            print(f"{attack}: graphops apply -> exit {applied.returncode}\n{said[-600:]}")
            assert applied.returncode != 0 and "is not the locked code" in said, said
            assert not serve_cli(fresh, "status").stdout.count("RUNNING")
            assert not marker.exists(), f"{attack}: the tampered code ran"
            rows.add(
                f"tampered archive: {attack}",
                failed=int(answer.status_code == 200 or marker.exists()),
                total=2,  # two deployments: Ray's serve deploy, graphops apply
                ingress="proxy",  # its own `ray start` cluster; about code, not the path
                serve_deploy=statuses,
                seconds_to_refusal=seconds,
                apply_exit=applied.returncode,
                marker_written=marker.exists(),
            )
    finally:
        zipped.write_bytes(original)
    # The untampered archive deploys and answers: the refusals above were about the code.
    assert serve_cli(fresh, "deploy", serve_yaml).returncode == 0
    assert set(a["status"] for a in settled(fresh).values()) == {"RUNNING"}
    answer = requests.post(f"{serve_url(fresh)}/digits", json=lock.example, timeout=60)
    assert answer.status_code == 200 and answer.json()["label"] == 7, answer.text
    assert not any(markers.iterdir())
    shutil.rmtree(markers)
