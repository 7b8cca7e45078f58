"""Reading a request's body: JSON only, within a size limit and a deadline, slow bodies capped.

A replica waits on only a few slow bodies at once, so slow clients cannot hold every request
slot (`BodyReader`). Pure (no Ray): the ingress calls it, tests call it directly.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from graphops.runtime._errors import (
    BodyTimeout,
    Overloaded,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from graphops.runtime.schema import (
    BODY_TIMEOUT_S,
    MAX_BODY_BYTES,
    MAX_SLOW_BODIES,
    SLOW_BODY_GRACE_S,
    BodyLimits,
)

if TYPE_CHECKING:
    from starlette.requests import Request

_SEND_JSON = "Send the body as JSON with the header Content-Type: application/json"


def too_large(graph: str, limit: int, size: int) -> PayloadTooLarge:
    """The 413 for a body of ``size`` bytes (or more) sent to ``graph``."""
    return PayloadTooLarge(
        f"The request body has {size} bytes or more; graph '{graph}' accepts at most {limit} "
        "bytes per request.",
        "Send fewer rows per request (split the list), or raise the limit (max_body_bytes in "
        "the application's args).",
    )


class BodyReader:
    """Reads request bodies for one replica: type, size, deadline, and a cap on slow bodies.

    A body that has not fully arrived after `SLOW_BODY_GRACE_S` is slow: at most ``max_slow``
    of them are waited on at once, each for at most ``timeout_s`` in all (then 408). When one
    more turns slow, the one waited on longest gives its place up (a 503 with Retry-After): a
    request that is only late because the machine is busy (its body queued in Serve's proxy)
    arrives within moments and is never refused for the stalled bodies ahead of it. Serve's
    proxy streams a body to the replica as it arrives, so every request waiting for its body
    holds one of the replica's ``max_ongoing_requests`` slots: without this, a few hundred
    clients that never finish their body starve everyone.

    Args:
        graph: The graph's name (for messages).
        max_body_bytes: Payload limit; larger bodies get a 413, as soon as they are.
        timeout_s: Seconds a body may take to arrive.
        max_slow: Slow bodies waited on at once.
    """

    def __init__(
        self,
        graph: str,
        *,
        max_body_bytes: int = MAX_BODY_BYTES,
        timeout_s: float = BODY_TIMEOUT_S,
        max_slow: int = MAX_SLOW_BODIES,
    ) -> None:
        self.graph = graph
        self.max_body_bytes = max_body_bytes
        self.timeout_s = timeout_s
        self.max_slow = max_slow
        # The slow bodies waited on now, oldest first: set a body's future to give its place up.
        self.waiting: dict[int, asyncio.Future[None]] = {}

    @classmethod
    def of(cls, graph: str, limits: BodyLimits) -> BodyReader:
        """The reader of a replica configured by ``limits`` (its application's args)."""
        return cls(
            graph,
            max_body_bytes=limits.max_body_bytes,
            timeout_s=limits.body_timeout_s,
            max_slow=limits.max_slow_bodies,
        )

    async def read(self, request: Request) -> bytes:
        """The body of ``request``.

        Raises:
            UnsupportedMediaType, PayloadTooLarge, Overloaded, BodyTimeout: 415 not JSON, 413 too large, 503 too many slow bodies, 408 too slow.
        """
        self.check_type(request.headers.get("content-type"))
        limit = self.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise too_large(self.graph, limit, int(declared))
        chunks: list[bytes] = []

        async def collect() -> None:
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large(self.graph, limit, size)
                chunks.append(chunk)

        task = asyncio.ensure_future(collect())
        try:
            done, _ = await asyncio.wait({task}, timeout=min(SLOW_BODY_GRACE_S, self.timeout_s))
            if not done:
                done = await self._wait_slow(task, declared)
            task.result()  # a 413 (or the client's disconnect) raised while reading
            return b"".join(chunks)
        finally:
            if not task.done():
                task.cancel()

    @property
    def slow(self) -> int:
        """Slow bodies being waited on now."""
        return len(self.waiting)

    async def _wait_slow(self, task: asyncio.Future[None], declared: str | None) -> set[Any]:
        if self.max_slow == 0:
            raise self._refused("waits on no slow request bodies (max_slow_bodies is 0)")
        if len(self.waiting) >= self.max_slow:
            oldest = next(iter(self.waiting))
            self.waiting.pop(oldest).set_result(None)
        place: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting[id(place)] = place
        try:
            remaining = max(self.timeout_s - SLOW_BODY_GRACE_S, 0.0)
            done, _ = await asyncio.wait(
                {task, place}, timeout=remaining, return_when="FIRST_COMPLETED"
            )
        finally:
            self.waiting.pop(id(place), None)
        if task in done:
            return done
        if place in done:
            raise self._refused(
                f"waits on at most {self.max_slow} slow request bodies per replica, and newer "
                "ones came after this one"
            )
        expected = f" (of {declared} bytes announced)" if declared else ""
        raise BodyTimeout(
            f"The request body did not arrive within {self.timeout_s:g} s{expected}; graph "
            f"'{self.graph}' stopped waiting for it.",
            "Send the whole body at once (with a correct Content-Length); operators can raise "
            "body_timeout_s in the application's args.",
        )

    def _refused(self, why: str) -> Overloaded:
        """The 503 for a slow body given up: ``why`` completes "Graph 'g' ..."."""
        return Overloaded(
            f"Graph '{self.graph}' {why}; this body was refused so that slow clients cannot hold "
            "every request slot.",
            "Retry after a second and send the whole body at once; operators can raise "
            "max_slow_bodies in the application's args.",
        )

    def check_type(self, content_type: str | None) -> None:
        """Refuse (415) a Content-Type other than JSON; a missing one is taken as JSON."""
        if content_type is None:
            return
        media = content_type.split(";", 1)[0].strip().lower()
        if media == "application/json" or (
            media.startswith("application/") and media.endswith("+json")
        ):
            return
        raise UnsupportedMediaType(
            f"Got Content-Type {content_type!r}; graph '{self.graph}' reads JSON only.",
            f"{_SEND_JSON} (curl: -H 'Content-Type: application/json').",
        )
