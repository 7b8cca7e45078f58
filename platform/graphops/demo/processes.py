"""Background processes of the main job: each in its own process group, stopped by its pid.

`spawn` starts a command in a new session (its output to a log) and remembers it, so it is
reaped and never collected while running; `stop_group` ends a whole group at once; `alive`
tells a running process from a zombie. Nothing here knows which service a process is.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# The processes this one started, kept so they are reaped (and never collected while running).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def spawn(
    command: list[str], log: Path, *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own process group, its output to ``log``; remembered for `stop`."""
    with log.open("w") as out:
        process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    _CHILDREN[process.pid] = process
    return process


def console_script(name: str) -> str:
    """The console script ``name`` of this Python environment."""
    path = Path(sys.executable).with_name(name)
    return str(path) if path.exists() else name


def group(pgid: int) -> list[int]:
    """The running processes of process group ``pgid`` (Linux's /proc; elsewhere none known)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = entry.read_text()
            state, _, group = text[text.rindex(")") + 2 :].split()[:3]
            if int(group) == pgid and state not in ("Z", "X"):
                found.append(int(entry.parent.name))
    return found


def kill(pgid: int) -> None:
    """SIGKILL the process group ``pgid`` and reap its leader when it is our child."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    child = _CHILDREN.pop(pgid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)
    reap(pgid)


def reap(pid: int) -> None:
    """Collect the exit status when the process is our child (else it lingers as a zombie)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            del _CHILDREN[pid]
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (reaped first when it is our child; a zombie is not)."""
    reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process reuses the pid
        return False
    status = Path(f"/proc/{pid}/status")  # Linux: an unreaped zombie is not running
    if status.is_file():
        return "\nState:\tZ" not in status.read_text()
    return True


def stop_group(pid: int, timeout_s: float = 10, linger_s: float = 1) -> None:
    """Stop the process group led by ``pid``: SIGTERM to all at once, SIGKILL where needed.

    Every process of the group gets SIGTERM at once, so each cleans up after itself in parallel
    (a Ray head's GCS, raylet, dashboard and workers; the MLflow UI's server and job runners).
    The leader (`ray start --block`, `mlflow server`) only waits for them: once it is the last
    one left, its exit is interpreter teardown (a full garbage collection of all it imported,
    seconds on a busy machine) with nothing left to clean up, so after ``linger_s`` it gets
    SIGKILL. Whatever still runs after ``timeout_s`` does too. Checked every 0.1 s.
    """
    if not (alive(pid) or group(pid)):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    alone: float | None = None  # when the leader became the last process of its group
    while alive(pid) or group(pid):
        now = time.monotonic()
        if alive(pid) and group(pid) == [pid]:
            alone = alone or now
        if now > deadline or (alone is not None and now - alone > linger_s):
            kill(pid)
            break
        time.sleep(0.1)
