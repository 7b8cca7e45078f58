"""A bounded, counted load on one route from a process of its own, on loopback only.

    python -m graphops.demo.load URL BODY_JSON STOP_FILE [--max-seconds 300]

POSTs ``BODY_JSON`` to ``URL`` one request after the other until ``STOP_FILE`` exists (or
``--max-seconds`` / `MAX_REQUESTS` is reached), then prints one JSON object: ``ok`` (200
answers) and ``failed`` (anything else, timeouts included). `Load` runs it around a block.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

MAX_REQUESTS = 50_000


class Load:
    """``with Load(url, body, stop_file) as load:`` load runs in the block; counts after it."""

    def __init__(self, url: str, body: object, stop_file: Path, max_seconds: float = 300) -> None:
        if urlsplit(url).hostname not in ("127.0.0.1", "localhost"):
            raise ValueError(f"the demo's load goes to loopback only, not {url}")
        self.url, self.body, self.stop_file, self.max_seconds = url, body, stop_file, max_seconds
        self.ok = self.failed = 0
        self.process: subprocess.Popen[str] | None = None

    @property
    def total(self) -> int:
        """Requests answered or failed."""
        return self.ok + self.failed

    def __enter__(self) -> Load:
        self.stop_file.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "graphops.demo.load",
                self.url,
                json.dumps(self.body),
                str(self.stop_file),
                "--max-seconds",
                str(self.max_seconds),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        assert self.process is not None
        self.stop_file.touch()
        out, _ = self.process.communicate(timeout=120)
        counts = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        self.ok, self.failed = int(counts.get("ok", 0)), int(counts.get("failed", 0))
        self.stop_file.unlink(missing_ok=True)


def main() -> None:
    """Send requests until told to stop; print the counts."""
    import requests

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("body")
    parser.add_argument("stop", type=Path)
    parser.add_argument("--max-seconds", type=float, default=300)
    args = parser.parse_args()
    if urlsplit(args.url).hostname not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"loopback only, not {args.url}")
    deadline = time.monotonic() + args.max_seconds
    ok = failed = 0
    with requests.Session() as session:
        while not args.stop.exists() and time.monotonic() < deadline and ok + failed < MAX_REQUESTS:
            try:
                answer = session.post(args.url, data=args.body, timeout=30)
                ok, failed = (ok + 1, failed) if answer.status_code == 200 else (ok, failed + 1)
            except requests.RequestException:
                failed += 1
    print(json.dumps({"ok": ok, "failed": failed}))


if __name__ == "__main__":
    main()
