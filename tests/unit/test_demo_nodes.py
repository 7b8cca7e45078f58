"""The main job's worker nodes in its state file, without starting any (no Ray here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from graphops.demo import services
from graphops.demo.nodes import marker

REPO = Path(__file__).resolve().parents[2]


def test_a_state_file_from_before_worker_nodes_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(
        '{"services": {"ray-dev": {"name": "ray-dev", "pid": 1, "url": "http://127.0.0.1:8265",'
        ' "log": "ray-dev.log"}}, "source_head": "abc"}'
    )
    state = services.load_state(path)
    assert state.services["ray-dev"].head is None and state.multinode is False


def test_a_worker_node_is_ready_while_its_process_runs(tmp_path: Path) -> None:
    worker = services.Service(
        name="ray-dev-gpu",
        pid=os.getpid(),  # this process: running
        url="http://127.0.0.1:9",  # nothing listens: a head would not be ready
        log=str(tmp_path / "w.log"),
        head="ray-dev",
    )
    assert services.ready(worker)
    assert not services.ready(worker.model_copy(update={"head": None}))


def test_each_worker_node_has_a_resource_of_its_own() -> None:
    assert marker("gpu-a") != marker("gpu-b")


def test_demo_help_lists_multinode() -> None:
    shown = subprocess.run(
        [str(Path(sys.executable).with_name("graphops")), "demo", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=os.environ | {"COLUMNS": "200"},
        check=False,
    )
    assert "--multinode" in shown.stdout, shown.stdout + shown.stderr
