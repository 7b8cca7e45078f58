"""A bounded load generator that runs in its own process, on loopback only.

`Load.start` spawns a process that POSTs one body to one URL at a fixed rate for a fixed time
(at most `MAX_REQUESTS` requests, or until `Load.finish`), from a few threads, and reports
counts, latencies and each request's timeline when `Load.result` is called. The scenarios measure the cluster under that load, never themselves.
"""

from __future__ import annotations

import multiprocessing as mp
import socket
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

MAX_REQUESTS = 5_000
MAX_SECONDS = 120.0


@dataclass
class LoadResult:
    """What the load process saw."""

    total: int = 0
    ok: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)  # (seconds since start, what)
    samples: dict[str, str] = field(default_factory=dict)  # the first answer's text per failure
    started_at: float = 0.0  # wall clock (time.time()) when the schedule began
    timeline: list[tuple[float, float, str]] = field(default_factory=list)  # (sent, answered, what)

    @property
    def failed(self) -> int:
        return self.total - self.ok

    def percentile(self, q: float) -> float:
        values = sorted(self.latencies_ms)
        return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def _loopback(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost"):
        raise ValueError(f"load goes to loopback only, not {host}")


def _run(
    url: str,
    body: bytes,
    rps: float,
    seconds: float,
    out: Any,
    ok_status: int,
    stop: Any,
    threads: int,
) -> None:
    import requests

    result = LoadResult(started_at=time.time())
    statuses: Counter[str] = Counter()
    started = time.perf_counter()
    count = min(int(rps * seconds), MAX_REQUESTS)
    session = requests.Session()

    def one(i: int) -> None:
        due = started + i / rps
        if stop.wait(max(0.0, due - time.perf_counter())):
            return  # finished early: this one is never sent
        t0 = time.perf_counter()
        try:
            answer = session.post(
                url, data=body, headers={"Content-Type": "application/json"}, timeout=30
            )
            what, text = str(answer.status_code), answer.text
        except requests.RequestException as exc:
            what, text = type(exc).__name__, str(exc)
        ms = (time.perf_counter() - t0) * 1000
        statuses[what] += 1
        result.timeline.append((round(t0 - started, 3), round(t0 - started + ms / 1000, 3), what))
        if what == str(ok_status):
            result.latencies_ms.append(ms)
        else:
            result.failures.append((round(t0 - started, 2), what))
            result.samples.setdefault(what, text[:300])

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, range(count)))
    result.total = sum(statuses.values())
    result.timeline.sort()
    result.ok = statuses[str(ok_status)]
    result.statuses = dict(statuses)
    out.put(result)


class Load:
    """A load process: ``rps`` requests per second of ``body`` to ``url`` for ``seconds``.

    At most ``threads`` requests are in flight: while all of them wait, the schedule slips.
    Give it rps x (longest wait) threads to keep sending on time through an outage.
    """

    def __init__(
        self,
        url: str,
        body: bytes,
        *,
        rps: float = 20,
        seconds: float = 8,
        ok_status: int = 200,
        threads: int = 16,
    ) -> None:
        _loopback(url)
        if seconds > MAX_SECONDS:
            raise ValueError(f"at most {MAX_SECONDS} s of load")
        context = mp.get_context("spawn")
        self._queue = context.Queue()
        self._stop = context.Event()
        self._process = context.Process(
            target=_run,
            args=(url, body, rps, seconds, self._queue, ok_status, self._stop, threads),
            daemon=True,
        )
        self.seconds = seconds

    def start(self) -> Load:
        self._process.start()
        return self

    def finish(self) -> LoadResult:
        """Send no more requests (those in flight are answered) and return the result."""
        self._stop.set()
        return self.result()

    def result(self) -> LoadResult:
        try:
            got: LoadResult = self._queue.get(timeout=self.seconds + 90)
        finally:
            self._process.join(timeout=10)
            if self._process.is_alive():
                self._process.kill()
        return got


def _hold(port: int, path: str, count: int, seconds: float, out: Any) -> None:
    """Open ``count`` connections that announce 1,000 bytes of body and send 10; read answers."""
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=seconds + 30)
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n".encode()
            + b'{"pixels":'
        )
        socks.append(sock)
    statuses: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    for sock in socks:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            head = sock.recv(4096).split()
            statuses[head[1].decode() if len(head) > 1 else "closed"] += 1
        except OSError:
            statuses["held"] += 1  # still held when the time was up
        finally:
            sock.close()
    out.put(dict(statuses))


class SlowClients:
    """A process holding ``count`` stalled request bodies on ``port`` for up to ``seconds``."""

    def __init__(self, port: int, path: str, count: int = 300, seconds: float = 20) -> None:
        context = mp.get_context("spawn")
        self._queue = context.Queue()
        self._process = context.Process(
            target=_hold, args=(port, path, count, seconds, self._queue), daemon=True
        )
        self.seconds = seconds

    def start(self) -> SlowClients:
        self._process.start()
        return self

    def result(self) -> dict[str, int]:
        try:
            got: dict[str, int] = self._queue.get(timeout=self.seconds + 60)
        finally:
            self._process.join(timeout=10)
            if self._process.is_alive():
                self._process.kill()
        return got
