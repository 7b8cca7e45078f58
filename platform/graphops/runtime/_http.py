"""The HTTP face of a graph: parse and validate requests, shape responses, describe it in OpenAPI.

Pure (no Ray): the Serve ingress calls it, tests call it directly. Requests are validated straight
from the JSON bytes by the graph's pydantic request schema (one object, or a list of them), so a
bad body is a 422 naming the row and field, never a 500 from inside a node.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, cast

from pydantic import BaseModel, TypeAdapter, ValidationError

from graphops.graph import Batch, Graph
from graphops.runtime._table import to_array, to_rows
from graphops.runtime.schema import MAX_BODY_BYTES


class HttpError(Exception):
    """A request the graph cannot answer: an HTTP status and a JSON body explaining why."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("error", ""))
        self.status = status
        self.body = body

    def json(self) -> bytes:
        """The response body."""
        return json.dumps(self.body).encode()


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

    def too_large(self, size: int) -> HttpError:
        """The 413 for a body of ``size`` bytes (or more)."""
        return HttpError(
            413,
            {
                "error": f"The request body has {size} bytes or more; graph '{self.graph.name}' "
                f"accepts at most {self.max_body_bytes} bytes per request.",
                "fix": "Send fewer rows per request (split the list), or raise the limit "
                "(max_body_bytes in the application's args).",
            },
        )

    def parse(self, body: bytes) -> tuple[Batch, bool]:
        """Validate a JSON body; return (request columns, whether it was a single object).

        Raises:
            HttpError: 413 over the size limit; 422 for invalid JSON or schema violations.
        """
        if len(body) > self.max_body_bytes:
            raise self.too_large(len(body))
        single = not body.lstrip().startswith(b"[")
        try:
            parsed = self._one.validate_json(body) if single else self._many.validate_json(body)
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
        return columns, single

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
