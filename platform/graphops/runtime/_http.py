"""The HTTP face of a graph: read and validate requests, shape responses, describe it in OpenAPI.

Pure (no Ray): the Serve ingress and the experiment router call it, tests call it directly.
`BodyReader` reads a body within a size limit and a deadline, and refuses a body that is not
JSON by its Content-Type; a replica waits on only a few slow bodies at once, so slow clients
cannot hold every request slot. `GraphHttp.parse` validates the JSON strictly (no ``"3"`` or
``true`` as a number unless the graph opts into `Graph.lax_requests`; no duplicate keys; no NaN or
infinity) by the graph's pydantic request schema, so a bad body is a 4xx naming the row and field,
never a 500 from inside a node.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, cast

import numpy as np
from pydantic import BaseModel, TypeAdapter, ValidationError

from graphops.graph import Batch, Graph
from graphops.runtime._table import to_array, to_rows
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


class HttpError(Exception):
    """A request the graph cannot answer: an HTTP status and a JSON body explaining why."""

    def __init__(
        self, status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(body.get("error", ""))
        self.status = status
        self.body = body
        self.headers = dict(headers or {})

    def json(self) -> bytes:
        """The response body."""
        return json.dumps(self.body).encode()


def too_large(graph: str, limit: int, size: int) -> HttpError:
    """The 413 for a body of ``size`` bytes (or more) sent to ``graph``."""
    return HttpError(
        413,
        {
            "error": f"The request body has {size} bytes or more; graph '{graph}' "
            f"accepts at most {limit} bytes per request.",
            "fix": "Send fewer rows per request (split the list), or raise the limit "
            "(max_body_bytes in the application's args).",
        },
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
            HttpError: 415 not JSON, 413 too large, 503 too many slow bodies, 408 too slow.
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
        raise HttpError(
            408,
            {
                "error": f"The request body did not arrive within {self.timeout_s:g} s"
                f"{expected}; graph '{self.graph}' stopped waiting for it.",
                "fix": "Send the whole body at once (with a correct Content-Length); "
                "operators can raise body_timeout_s in the application's args.",
            },
        )

    def _refused(self, why: str) -> HttpError:
        """The 503 for a slow body given up: ``why`` completes "Graph 'g' ..."."""
        return HttpError(
            503,
            {
                "error": f"Graph '{self.graph}' {why}; this body was refused so that slow "
                "clients cannot hold every request slot.",
                "fix": "Retry after a second and send the whole body at once; operators can "
                "raise max_slow_bodies in the application's args.",
            },
            headers={"Retry-After": "1"},
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
        raise HttpError(
            415,
            {
                "error": f"Got Content-Type {content_type!r}; graph '{self.graph}' reads JSON "
                "only.",
                "fix": f"{_SEND_JSON} (curl: -H 'Content-Type: application/json').",
            },
        )


class _Duplicate(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


class _Constant(Exception):
    def __init__(self, token: str) -> None:
        self.token = token


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        raise _Duplicate(next(k for k, _ in pairs if k in seen or seen.add(k)))  # type: ignore[func-returns-value]
    return obj


def _constant(token: str) -> Any:
    raise _Constant(token)


class GraphHttp:
    """Request parsing, response shaping and the OpenAPI document for one graph.

    Args:
        graph: The graph.
        route: The route prefix it is served under (e.g. ``/digits``).
        max_body_bytes: Payload limit; larger bodies are refused with 413.
        example: One request object, shown in the OpenAPI document.
    """

    def __init__(
        self,
        graph: Graph,
        *,
        route: str,
        max_body_bytes: int = MAX_BODY_BYTES,
        example: Mapping[str, Any] | None = None,
    ) -> None:
        self.graph = graph
        self.route = route.rstrip("/") or "/"
        self.max_body_bytes = max_body_bytes
        self.example = dict(example) if example else None
        self._one = TypeAdapter(graph.request)
        # The graph's own request/response classes, known only at run time (here and below).
        self._many = TypeAdapter(list[graph.request])  # type: ignore[name-defined]
        self._out = TypeAdapter(list[graph.response])  # type: ignore[name-defined]
        self._fields = list(graph.request.model_fields)

    def parse(self, body: bytes) -> tuple[Batch, bool]:
        """Validate a JSON body; return (request columns, whether it was a single object).

        Raises:
            HttpError: 413 over the size limit; 422 for invalid JSON, a duplicated key, NaN or
                infinity, or schema violations (strict unless the graph is `lax_requests`).
        """
        if len(body) > self.max_body_bytes:
            raise too_large(self.graph.name, self.max_body_bytes, len(body))
        self._scan(body)
        single = not body.lstrip().startswith(b"[")
        strict = not self.graph.lax_requests
        try:
            adapter = self._one if single else self._many
            parsed = adapter.validate_json(body, strict=strict)
        except ValidationError as exc:
            raise self._invalid(exc, single) from None
        rows = cast(list[BaseModel], [parsed] if single else parsed)
        if not rows:
            raise HttpError(
                422,
                {
                    "error": "The request is an empty list.",
                    "fix": f"Send one {self.graph.request.__name__} object or a non-empty list.",
                    "detail": [],
                },
            )
        columns = {f: to_array([getattr(r, f) for r in rows]) for f in self._fields}
        self._finite(columns, single)
        return columns, single

    def _scan(self, body: bytes) -> None:
        """Refuse duplicated keys and NaN/Infinity tokens, which the schema cannot see."""
        try:
            json.loads(body, object_pairs_hook=_unique, parse_constant=_constant)
        except _Duplicate as dup:
            raise self._bad(f'the key "{dup.key}" appears twice in one object', dup.key) from None
        except _Constant as const:
            raise self._bad(f"{const.token} is not a JSON number", None) from None
        except (ValueError, RecursionError):
            return  # not JSON at all: the schema validation below names the problem

    def _finite(self, columns: Batch, single: bool) -> None:
        """Refuse numbers that overflow to infinity (e.g. 1e400) in any numeric field."""
        for name, column in columns.items():
            if column.dtype.kind != "f" or np.isfinite(column).all():
                continue
            bad = np.argwhere(~np.isfinite(column))[0]
            row = "" if single else f"row {int(bad[0]) + 1}, "
            raise self._bad(f"{row}field {name} is not a finite number", name)

    def _bad(self, problem: str, field: str | None) -> HttpError:
        schema = self.graph.request.__name__
        return HttpError(
            422,
            {
                "error": f"The request to graph '{self.graph.name}' is invalid: {problem}.",
                "fix": f"Send plain JSON: each key once, finite numbers only, as {schema} at "
                f"{self.route}/openapi.json describes.",
                "detail": [{"loc": ["body", field] if field else ["body"], "msg": problem}],
            },
        )

    def respond(self, columns: Batch, single: bool) -> bytes:
        """The JSON response: one object or a list, each checked by the response schema."""
        rows = self._out.validate_python(to_rows(columns, self.graph.response_fields))
        return self._out.dump_json(rows)[1:-1] if single else self._out.dump_json(rows)

    def _invalid(self, exc: ValidationError, single: bool) -> HttpError:
        detail = [
            {
                "loc": ["body", *err["loc"]],
                "msg": err["msg"],
                "type": err["type"],
            }
            for err in exc.errors(include_url=False)[:20]
        ]
        first = exc.errors(include_url=False)[0]
        value = first.get("input")
        if isinstance(value, float) and not math.isfinite(value):
            first = {**first, "msg": "not a finite number"}
        loc = list(first["loc"])
        row = (
            ""
            if single or not loc or not isinstance(loc[0], int)
            else f"row {int(loc.pop(0)) + 1}, "
        )
        where = ".".join(map(str, loc)) or "(body)"
        schema = self.graph.request.__name__
        return HttpError(
            422,
            {
                "error": f"{exc.error_count()} error(s) in the request to graph "
                f"'{self.graph.name}'; first: {row}field {where}: {first['msg']}.",
                "fix": f"Send a JSON {schema} object (or a list of them) with the fields "
                f"{', '.join(self._fields)}; the schema is at {self.route}/openapi.json.",
                "detail": detail,
            },
        )

    def health(self, info: Mapping[str, Any]) -> bytes:
        """The health document: the graph, its version and what it runs (``info``)."""
        return json.dumps(
            {"status": "ok", "graph": self.graph.name, "version": self.graph.version, **info}
        ).encode()

    def openapi(self) -> dict[str, Any]:
        """An OpenAPI 3.1 document generated by FastAPI from the request and response schemas."""
        from fastapi import Body, FastAPI
        from fastapi.openapi.utils import get_openapi

        g = self.graph
        request, response = g.request, g.response
        examples = (
            {"one": {"summary": "One request", "value": self.example}} if self.example else None
        )
        body_type = Annotated[request | list[request], Body(openapi_examples=examples)]  # type: ignore[valid-type]

        async def predict(body: Any) -> Any:
            raise NotImplementedError  # documentation only: the Serve ingress answers

        # Real types, not the strings `from __future__ import annotations` would leave here.
        predict.__annotations__ = {"body": body_type, "return": response | list[response]}  # type: ignore[valid-type]

        async def health() -> dict[str, Any]:
            raise NotImplementedError

        api = FastAPI()
        api.post(
            "/",
            summary=f"Run graph {g.name}",
            description="Send one request object for one response object, or a list for a list "
            "(rows are answered in order).",
            responses={
                413: {"description": f"Body larger than {self.max_body_bytes} bytes."},
                422: {"description": "The body violates the request schema."},
            },
        )(predict)
        api.get("/health", summary="Liveness and what is running")(health)
        return get_openapi(
            title=f"graphops · {g.name}",
            version=g.version,
            description=g.description or f"Graph {g.name}, served by graphops.",
            routes=api.routes,
            servers=[{"url": self.route}],
        )
