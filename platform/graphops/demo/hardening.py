"""The main job's hardening check: bad and slow requests against a live stable route, answered.

Each request an attacker found to hurt (booleans coerced into numbers, a duplicated key, NaN, a
non-JSON body, a client that never finishes its body) is sent to dev's stable route; the table
shows the status and the first words of the answer, and a good request sent while the slow
client is held is answered as usual.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from rich.table import Table

from graphops._views import console
from graphops.demo.job import DemoJob

_STALL = (
    "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    "Content-Length: 1000\r\n\r\n"
)


def abuse(job: DemoJob, port: int, graph: str, good: dict[str, Any]) -> None:
    """Send the attacker's requests to ``graph`` on ``port``; record any that are not refused."""
    import requests

    url = f"http://127.0.0.1:{port}/{graph}"
    field, values = next((k, v) for k, v in good.items() if isinstance(v, list))
    cases: list[tuple[str, bytes, dict[str, str], int]] = [
        (
            "booleans as numbers",
            json.dumps({**good, field: [True] * len(values)}).encode(),
            {},
            422,
        ),
        ("a key twice", f'{{"{field}": [], "{field}": {json.dumps(values)}}}'.encode(), {}, 422),
        ("NaN", json.dumps({**good, field: [float("nan")] * len(values)}).encode(), {}, 422),
        ("text/plain body", json.dumps(good).encode(), {"Content-Type": "text/plain"}, 415),
    ]
    table = Table(title=f"dev /{graph}: what an attacker sends", title_justify="left")
    for column in ("request", "status", "answer"):
        table.add_column(column)
    for what, body, headers, expected in cases:
        answer = requests.post(url, data=body, headers=headers, timeout=30)
        _row(job, table, what, answer.status_code, answer.text, expected)
    stalled = socket.create_connection(("127.0.0.1", port), timeout=60)
    try:
        stalled.sendall(_STALL.format(path=f"/{graph}").encode() + b'{"x":')
        started = time.perf_counter()
        answer = requests.post(url, json=good, timeout=30)
        ms = (time.perf_counter() - started) * 1000
        _row(
            job,
            table,
            f"good request while a body stalls ({ms:.0f} ms)",
            answer.status_code,
            answer.text,
            200,
        )
        head = stalled.recv(65536).decode(errors="replace")
        waited = time.perf_counter() - started
        status = int(head.split()[1]) if len(head.split()) > 1 else 0
        text = head.split("\r\n\r\n", 1)[-1]
        _row(job, table, f"the stalled body ({waited:.0f} s later)", status, text, 408)
    finally:
        stalled.close()
    console.print(table)


def _row(job: DemoJob, table: Table, what: str, status: int, text: str, expected: int) -> None:
    try:
        shown = json.loads(text).get("error", text) if status != 200 else text
    except (ValueError, AttributeError):
        shown = text
    colour = "green" if status == expected else "red"
    table.add_row(what, f"[{colour}]{status}[/]", str(shown)[:110])
    if status != expected:
        job.problems.append(f"hardening: {what} got {status}, not {expected}")
