"""`graphops serve` stopped with SIGTERM (as nox does on Ctrl-C) leaves no process behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from graphops._net import free_port
from graphops.registry import Registry, ResolvedModel


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (process group, command line) of every process this user can read."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            continue  # a zombie runs nothing; its parent reaps it
        out[int(entry.name)] = (int(fields[2]), cmdline)
    return out


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc (Linux)")
def test_sigterm_stops_serve_and_its_local_cluster(
    repo_copy: Path, registry: Registry, champion: ResolvedModel
) -> None:
    # Ray's temp dir of its own (short: Unix socket paths are limited) tells its processes apart.
    temp = Path(tempfile.mkdtemp(prefix="gsv-", dir="/tmp"))
    env = os.environ | {"MLFLOW_TRACKING_URI": registry.tracking_uri, "RAY_TMPDIR": str(temp)}
    env.pop("RAY_ADDRESS", None)
    main = "from graphops.cli import main; main()"
    command = [sys.executable, "-c", main, "--repo", str(repo_copy), "serve", "digits"]
    process = subprocess.Popen(
        [*command, "--port", str(free_port())],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as under nox
    )
    group = process.pid
    lines: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 600
        for line in process.stdout:
            lines.append(line)
            if "Press Ctrl-C" in line or time.monotonic() > deadline:
                break
        assert any("Press Ctrl-C" in line for line in lines), "".join(lines)
        assert any(str(temp) in cmd for _, cmd in _processes().values())  # Ray runs there
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=120)
        lines.append(rest)
        assert process.returncode == 0, "".join(lines)
        assert "Stopped digits." in rest
        deadline = time.monotonic() + 30  # Ray's agents exit a moment after the raylet
        left = {}
        while time.monotonic() < deadline:
            left = {
                pid: cmd
                for pid, (pgid, cmd) in _processes().items()
                if pgid == group or str(temp) in cmd
            }
            if not left:
                break
            time.sleep(1)
        assert not left, f"left running: {left}"
    finally:
        if process.poll() is None:
            os.killpg(group, signal.SIGKILL)
            process.wait()
        for pid, (_, cmd) in _processes().items():  # what a failed run left: ours, by pid
            if str(temp) in cmd:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)
