"""The HTTP face of a graph: validate requests, shape responses, describe it in OpenAPI.

Pure (no Ray): the Serve ingress calls it, tests call it directly. `GraphHttp.parse` validates the
JSON strictly (no ``"3"`` or ``true`` as a number unless the graph opts into
`Graph.lax_requests`; no duplicate keys; no NaN or infinity) by the graph's pydantic request
schema, so a bad body is a 4xx naming the row and field, never a 500 from inside a node.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Annotated, Any, cast

import numpy as np
from pydantic import BaseModel, TypeAdapter, ValidationError

from graphops.graph import Batch, Graph
from graphops.runtime._body import too_large
from graphops.runtime._errors import InvalidRequest
from graphops.runtime._table import to_array, to_rows
from graphops.runtime.schema import MAX_BODY_BYTES


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
            PayloadTooLarge, InvalidRequest: 413 over the size limit; 422 for invalid JSON, a duplicated key, NaN or
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
            raise InvalidRequest(
                "The request is an empty list.",
                f"Send one {self.graph.request.__name__} object or a non-empty list.",
                detail=[],
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

    def _bad(self, problem: str, field: str | None) -> InvalidRequest:
        schema = self.graph.request.__name__
        return InvalidRequest(
            f"The request to graph '{self.graph.name}' is invalid: {problem}.",
            f"Send plain JSON: each key once, finite numbers only, as {schema} at "
            f"{self.route}/openapi.json describes.",
            detail=[{"loc": ["body", field] if field else ["body"], "msg": problem}],
        )

    def respond(self, columns: Batch, single: bool) -> bytes:
        """The JSON response: one object or a list, each checked by the response schema."""
        rows = self._out.validate_python(to_rows(columns, self.graph.response_fields))
        return self._out.dump_json(rows)[1:-1] if single else self._out.dump_json(rows)

    def _invalid(self, exc: ValidationError, single: bool) -> InvalidRequest:
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
        return InvalidRequest(
            f"{exc.error_count()} error(s) in the request to graph '{self.graph.name}'; first: "
            f"{row}field {where}: {first['msg']}.",
            f"Send a JSON {schema} object (or a list of them) with the fields "
            f"{', '.join(self._fields)}; the schema is at {self.route}/openapi.json.",
            detail=detail,
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
