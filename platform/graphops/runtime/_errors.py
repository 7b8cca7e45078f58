"""Every HTTP error a graph's routes answer, in one catalogue: a class per status and error code.

The model is BentoML's exceptions: each class carries its HTTP status and a stable error
``code`` (in the JSON body beside ``error`` and ``fix``), code that cannot answer raises one,
and `failure` turns anything raised while answering into one; `error_response` and
`error_answer` are the only places a status becomes a response. Pure (no Ray).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from starlette.responses import Response

from graphops.errors import GraphOpsError

logger = logging.getLogger("ray.serve")
JSON = "application/json"


class HttpError(Exception):
    """A request a graph's route cannot answer: a status, an error code and a JSON body.

    Args:
        error: What is wrong (the body's ``error``).
        fix: How to fix it (the body's ``fix``).
        headers: Response headers (e.g. ``Retry-After``).
        **extra: More fields of the body (``detail``, ``graph``, ``node``, ...).
    """

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    default_headers: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self, error: str, fix: str, *, headers: Mapping[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(error)
        self.body: dict[str, Any] = {"error": error, "fix": fix, "code": self.code, **extra}
        self.headers = {**self.default_headers, **(headers or {})}

    def json(self) -> bytes:
        """The response body."""
        return json.dumps(self.body).encode()


class Unauthorized(HttpError):
    """The route needs the cluster's token (`graphops.runtime._auth`)."""

    status, code = 401, "unauthorized"
    default_headers = {"WWW-Authenticate": 'Bearer realm="ray"'}


class NotFound(HttpError):
    """No such route."""

    status, code = 404, "not_found"


class MethodNotAllowed(HttpError):
    """A route of the graph, with another method."""

    status, code = 405, "method_not_allowed"


class BodyTimeout(HttpError):
    """The request's body did not arrive in time."""

    status, code = 408, "body_timeout"


class PayloadTooLarge(HttpError):
    """The body is over the route's size limit."""

    status, code = 413, "payload_too_large"


class UnsupportedMediaType(HttpError):
    """The body is not JSON by its Content-Type."""

    status, code = 415, "unsupported_media_type"


class InvalidRequest(HttpError):
    """The body violates the graph's request schema (or is not plain JSON)."""

    status, code = 422, "invalid_request"


class HeadersTooLarge(HttpError):
    """The request's headers are over the limit."""

    status, code = 431, "headers_too_large"


class GraphFailed(HttpError):
    """A node (or anything else) failed while answering."""

    status, code = 500, "graph_failed"


class Overloaded(HttpError):
    """The replica refuses this request to keep serving the others (slow bodies)."""

    status, code = 503, "overloaded"
    default_headers = {"Retry-After": "1"}


class Unavailable(HttpError):
    """A stage or version that must answer cannot (replicas lost, application down)."""

    status, code = 503, "unavailable"
    default_headers = {"Retry-After": "1"}


class StageTimeout(HttpError):
    """A stage did not answer within its deadline."""

    status, code = 504, "stage_timeout"


def failure(exc: BaseException, graph: str) -> HttpError:
    """The `HttpError` a request that raised ``exc`` while answering gets."""
    if isinstance(exc, HttpError):
        return exc
    if isinstance(exc, GraphOpsError):  # a node failed: say which, where, and what to do
        logger.warning("graph %s failed a request: %s", graph, exc)
        error = GraphFailed(exc.what, exc.fix or "", graph=exc.graph, node=exc.node)
        if exc.location:
            error.body["file"] = exc.location
        return error
    logger.error("graph %s failed a request", graph, exc_info=exc)
    first = (str(exc).strip().splitlines() or [""])[-1][:300]
    return GraphFailed(
        f"The graph failed: {type(exc).__name__}: {first}",
        "See the Serve replica logs (/tmp/ray/session_latest/logs/serve).",
    )


def error_answer(exc: HttpError) -> tuple[int, bytes]:
    """(status, JSON body) of ``exc``: what `GraphIngress.answer` returns to another ingress."""
    return exc.status, exc.json()


def error_response(exc: HttpError, headers: Mapping[str, str] | None = None) -> Response:
    """The HTTP response of ``exc``: its status, JSON body and headers (plus ``headers``)."""
    return Response(
        exc.json(),
        status_code=exc.status,
        media_type=JSON,
        headers={**exc.headers, **(headers or {})},
    )


__all__ = [
    "JSON",
    "BodyTimeout",
    "GraphFailed",
    "HeadersTooLarge",
    "HttpError",
    "InvalidRequest",
    "MethodNotAllowed",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "StageTimeout",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
    "error_answer",
    "error_response",
    "failure",
]
