"""`graphops demo --down` stops a service's process group in seconds (plain processes, no Ray).

A stand-in for `ray start --block` and `mlflow server`: a leader that waits for its child on
SIGTERM, then takes long to exit (their interpreter teardown on a busy machine).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from graphops.demo import processes, services

LEADER = """
import signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", {child!r}])
print("child", child.pid, flush=True)

def term(*_):
    child.wait()
    time.sleep(30)  # a slow exit with nothing left to clean up
    sys.exit(0)

signal.signal(signal.SIGTERM, term)
time.sleep(60)
"""
CHILD = "import time; print('ready', flush=True); time.sleep(60)"
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)"
)


def _start(tmp_path: Path, child: str) -> services.Service:
    log = tmp_path / "leader.log"
    process = processes.spawn([sys.executable, "-c", LEADER.format(child=child)], log)
    deadline = time.monotonic() + 60
    while "ready" not in log.read_text():  # the group is complete, the child set up
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    return services.Service(name="fake", pid=process.pid, url="http://127.0.0.1:9", log=str(log))


def _child_pid(service: services.Service) -> int:
    return int(Path(service.log).read_text().split()[1])


def test_the_leader_is_not_waited_for_once_its_group_is_gone(tmp_path: Path) -> None:
    service = _start(tmp_path, CHILD)
    child = _child_pid(service)
    assert sorted(processes.group(service.pid)) == sorted([service.pid, child])
    started = time.monotonic()
    services.stop(service)
    took = time.monotonic() - started
    assert not service.alive() and not processes.group(service.pid)
    assert took < 6, f"stop took {took:.1f} s: it waited for the leader's slow exit"


def test_a_process_ignoring_sigterm_is_killed_at_the_timeout(tmp_path: Path) -> None:
    service = _start(tmp_path, STUBBORN)
    started = time.monotonic()
    services.stop(service, timeout_s=2)
    took = time.monotonic() - started
    assert not service.alive() and not processes.group(service.pid)
    assert 1.5 < took < 8, took
