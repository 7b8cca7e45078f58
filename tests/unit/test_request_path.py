"""The request path without Ray: strict validation, content types, slow bodies, timeouts, retry."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from ray.exceptions import ActorDiedError
from starlette.requests import Request

from graphops.runtime._body import BodyReader
from graphops.runtime._errors import HttpError
from graphops.runtime._handles import call_with_retry
from graphops.runtime._http import GraphHttp
from tests.fixtures.graphs import valid


def http(lax: bool = False) -> GraphHttp:
    graph = dataclasses.replace(valid.graph, lax_requests=True) if lax else valid.graph
    return GraphHttp(graph, route="/valid")


def refusal(call: Callable[[], Any]) -> tuple[int, dict[str, Any]]:
    with pytest.raises(HttpError) as caught:
        call()
    return caught.value.status, json.loads(caught.value.json())


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"x": [true, 2]}', "field x.0: Input should be a valid number"),
        (b'{"x": ["3", 2]}', "field x.0: Input should be a valid number"),
        (b'{"x": [1], "x": [2]}', 'the key "x" appears twice'),
        (b'{"x": [NaN]}', "NaN is not a JSON number"),
        (b'{"x": [-Infinity]}', "-Infinity is not a JSON number"),
        (b'[{"x": [1]}, {"x": [1e400]}]', "row 2, field x is not a finite number"),
    ],
)
def test_strict_by_default(body: bytes, says: str) -> None:
    status, payload = refusal(lambda: http().parse(body))

    assert status == 422
    assert says in payload["error"], payload["error"]
    assert payload["fix"]


def test_a_graph_can_opt_into_lax_coercion_but_never_into_duplicates() -> None:
    columns, _ = http(lax=True).parse(b'{"x": [true, "3"]}')

    assert columns["x"].tolist() == [[1.0, 3.0]]
    status, _ = refusal(lambda: http(lax=True).parse(b'{"x": [1], "x": [2]}'))
    assert status == 422


def test_json_ints_still_fill_float_fields() -> None:
    columns, _ = http().parse(b'{"x": [1, 2.5]}')

    assert columns["x"].tolist() == [[1.0, 2.5]]


def request(
    chunks: list[bytes], headers: dict[str, str], stall: float = 0.0, delay: float = 0.0
) -> tuple[Request, Callable[[], Awaitable[None]]]:
    """A Starlette request whose body arrives in ``chunks`` after ``delay`` s, then stalls
    ``stall`` s."""
    pending = list(chunks)

    async def receive() -> dict[str, Any]:
        nonlocal delay
        await asyncio.sleep(delay)
        delay = 0.0
        if pending:
            return {"type": "http.request", "body": pending.pop(0), "more_body": True}
        await asyncio.sleep(stall)
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/valid",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    return Request(scope, receive), receive


JSON = {"content-type": "application/json"}


def read(reader: BodyReader, req: Request) -> bytes:
    return asyncio.run(reader.read(req))


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "application/vnd.api+json"],
)
def test_json_content_types_and_none_are_read(content_type: str) -> None:
    reader = BodyReader("valid")

    assert read(reader, request([b'{"x"', b": [1]}"], {"content-type": content_type})[0]) == (
        b'{"x": [1]}'
    )
    assert read(reader, request([b"{}"], {})[0]) == b"{}"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_other_content_types_get_415_naming_the_header(content_type: str) -> None:
    req, _ = request([b"{}"], {"content-type": content_type})

    status, payload = refusal(lambda: read(BodyReader("valid"), req))

    assert status == 415
    assert content_type in payload["error"]
    assert "Content-Type: application/json" in payload["fix"]


def test_a_body_that_never_finishes_gets_408_after_the_deadline() -> None:
    req, _ = request([b'{"x": [1'], {**JSON, "content-length": "1000"}, stall=30)

    status, payload = refusal(lambda: read(BodyReader("valid", timeout_s=0.7), req))

    assert status == 408
    assert "did not arrive within 0.7 s (of 1000 bytes announced)" in payload["error"]
    assert "body_timeout_s" in payload["fix"]


def test_beyond_the_cap_the_oldest_slow_body_gets_503_and_fast_ones_still_pass() -> None:
    reader = BodyReader("valid", timeout_s=3, max_slow=2)

    async def scenario() -> list[Any]:
        tasks = []
        for _ in range(3):  # one after the other: the first is the oldest
            tasks.append(asyncio.ensure_future(reader.read(request([b"{"], JSON, stall=30)[0])))
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.8)  # past the grace: the third turned slow, the first gave way
        fast = await reader.read(request([b"{}"], JSON)[0])
        first = await asyncio.gather(tasks[0], return_exceptions=True)
        for task in tasks[1:]:
            task.cancel()
        rest = await asyncio.gather(*tasks[1:], return_exceptions=True)
        return [fast, *first, *rest]

    fast, first, *rest = asyncio.run(scenario())

    assert fast == b"{}"
    assert isinstance(first, HttpError) and first.status == 503
    assert first.headers == {"Retry-After": "1"}
    assert "at most 2 slow request bodies per replica" in first.body["error"]
    assert all(isinstance(r, asyncio.CancelledError) for r in rest)  # still waited on
    assert reader.slow == 0  # every place given back


def test_a_late_body_is_not_refused_for_the_stalled_ones_ahead_of_it() -> None:
    """A body delayed past the grace (a busy proxy) arrives while the cap is full: it passes."""
    reader = BodyReader("valid", timeout_s=5, max_slow=2)

    async def scenario() -> list[Any]:
        stalled = [
            asyncio.ensure_future(reader.read(request([b"{"], JSON, stall=30)[0])) for _ in range(2)
        ]
        await asyncio.sleep(0.7)  # both are waited on: the cap is full
        late, _ = request([b"{}"], JSON, delay=0.9)
        body = await reader.read(late)
        for task in stalled:
            task.cancel()
        return [body, *await asyncio.gather(*stalled, return_exceptions=True)]

    body, *stalled = asyncio.run(scenario())

    assert body == b"{}"
    assert sum(isinstance(s, HttpError) and s.status == 503 for s in stalled) == 1


def test_no_slow_bodies_allowed_refuses_each_at_the_grace() -> None:
    req, _ = request([b"{"], JSON, stall=30)

    status, payload = refusal(lambda: read(BodyReader("valid", timeout_s=3, max_slow=0), req))

    assert status == 503 and "max_slow_bodies is 0" in payload["error"]


def test_a_declared_oversized_body_is_refused_before_reading() -> None:
    req, _ = request([], {**JSON, "content-length": "5000"}, stall=30)

    status, payload = refusal(lambda: read(BodyReader("valid", max_body_bytes=100), req))

    assert status == 413 and "5000 bytes" in payload["error"]


class FakeResponse:
    """What a Serve handle call returns, for `call_with_retry`: awaitable, cancellable."""

    def __init__(self, outcome: Any, delay: float = 0.0) -> None:
        self.outcome, self.delay, self.cancelled = outcome, delay, False

    def cancel(self) -> None:
        self.cancelled = True

    def __await__(self) -> Any:
        return self._result().__await__()

    async def _result(self) -> Any:
        await asyncio.sleep(self.delay)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


def retrying(outcomes: list[FakeResponse], timeout_s: float | None = 5) -> tuple[Any, int]:
    calls = iter(outcomes)
    made = 0

    def call() -> FakeResponse:
        nonlocal made
        made += 1
        return next(calls)

    result = asyncio.run(
        call_with_retry(call, timeout_s=timeout_s, graph="g", what="Stage s", retry_fix="fix it")
    )
    return result, made


def test_a_dead_replica_is_retried_once_on_another() -> None:
    result, made = retrying([FakeResponse(ActorDiedError()), FakeResponse("answer")])

    assert (result, made) == ("answer", 2)


def test_two_dead_replicas_in_a_row_are_a_503() -> None:
    status, payload = refusal(
        lambda: retrying([FakeResponse(ActorDiedError()), FakeResponse(ActorDiedError())])
    )

    assert status == 503
    assert "Stage s of graph 'g' lost two replicas in a row" in payload["error"]


def test_an_error_raised_by_node_code_is_never_retried() -> None:
    with pytest.raises(ValueError, match="node failed"):
        retrying([FakeResponse(ValueError("node failed")), FakeResponse("never asked")])


def test_a_stage_that_hangs_is_a_504_and_its_call_is_cancelled() -> None:
    hanging = FakeResponse("late", delay=30)

    status, payload = refusal(lambda: retrying([hanging], timeout_s=0.2))

    assert status == 504
    assert "Stage s of graph 'g' did not answer within 0.2 s" in payload["error"]
    assert "stage_timeout_s" in payload["fix"]
    assert hanging.cancelled


def test_the_ingress_reads_bodies_by_its_args_limits() -> None:
    from graphops.runtime.schema import AppArgs

    app = AppArgs(
        graph="g",
        repo=".",
        content_hash="sha256:x",
        body_timeout_s=3,
        max_slow_bodies=4,
        max_body_bytes=100,
    )

    assert (BodyReader.of("g", app).timeout_s, BodyReader.of("g", app).max_slow) == (3, 4)
    assert BodyReader.of("g", app).max_body_bytes == 100
