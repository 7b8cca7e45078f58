"""Online/offline parity: the graph served on Ray Serve answers what the offline run computed.

The graph is deployed as its own Serve application on the validation cluster, the validation rows
are sent over real HTTP (as list requests, and the first few one by one, concurrently, so dynamic
batching mixes them) and every response field is compared with the offline output: floats within
the graph's ``Validation.parity_tolerance``, everything else exactly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from graphops._models import StrictModel
from graphops.errors import ServeError
from graphops.graph import Batch, GraphPackage
from graphops.registry import Registry, ResolvedModel

LIST_SIZE = 32
"""Rows per list request."""
SINGLES = 16
"""Rows also sent one per request, concurrently (exercises dynamic batching)."""
_SHOWN = 5


class ParityResult(StrictModel):
    """How the online answers compare with the offline ones."""

    rows: Annotated[int, Field(description="Rows compared.")]
    requests: Annotated[int, Field(description="HTTP requests sent.")]
    mismatches: Annotated[int, Field(description="Rows where some field differs.")]
    max_abs_diff: Annotated[float, Field(description="Largest difference in a float field.")]
    tolerance: Annotated[float, Field(description="Allowed difference for float fields.")]
    examples: Annotated[list[str], Field(description="The first mismatches, explained.")] = []

    @property
    def passed(self) -> bool:
        """No row differs beyond the tolerance."""
        return self.mismatches == 0


def check_parity(
    package: GraphPackage,
    registry: Registry,
    rows: Sequence[Mapping[str, Any]],
    expected: Batch,
    pins: Mapping[str, ResolvedModel],
    *,
    fuse: bool = True,
) -> ParityResult:
    """Serve ``package`` at ``pins``, send ``rows`` over HTTP and compare with ``expected``.

    Args:
        package: The graph package.
        registry: Where the replicas load the pinned models from.
        rows: The validation rows (request fields are sent, other columns ignored).
        expected: The offline output columns, in the order of ``rows``.
        pins: The model versions the offline run used.
        fuse: Compile the fused plan.

    Raises:
        ServeError: The application did not start or a request failed.
    """
    import requests

    from graphops._net import free_port
    from graphops.runtime.online import deploy, undeploy

    graph = package.graph
    tolerance = graph.validation.parity_tolerance if graph.validation else 0.0
    fields = graph.request_fields
    bodies = [{f: r[f] for f in fields} for r in rows]
    name = f"{graph.name}-parity"
    online = deploy(
        package, registry, name=name, route=f"/{name}", pins=pins, fuse=fuse, port=free_port()
    )
    try:
        session = requests.Session()

        def post(body: Any) -> Any:
            answer = session.post(online.url, data=json.dumps(body), timeout=120)
            if answer.status_code != 200:
                raise ServeError(
                    f"The online graph answered {answer.status_code}: {answer.text[:300]}",
                    fix="Run the same rows with `graphops run` to reproduce it locally.",
                    graph=graph.name,
                )
            return answer.json()

        answers: list[dict[str, Any]] = []
        for start in range(0, len(bodies), LIST_SIZE):
            answers.extend(post(bodies[start : start + LIST_SIZE]))
        singles = bodies[:SINGLES]
        with ThreadPoolExecutor(max_workers=8) as pool:
            single_answers = list(pool.map(post, singles))
    finally:
        undeploy(name)
    requests_sent = -(-len(bodies) // LIST_SIZE) + len(singles)
    return _compare(
        answers, single_answers, expected, graph.response_fields, tolerance, requests_sent
    )


def _compare(
    answers: list[dict[str, Any]],
    singles: list[dict[str, Any]],
    expected: Batch,
    fields: Sequence[str],
    tolerance: float,
    requests_sent: int,
) -> ParityResult:
    mismatched: set[int] = set()
    examples: list[str] = []
    worst = 0.0
    for got_rows in (answers, singles):  # singles repeat the first rows, one per request
        for i, got in enumerate(got_rows):
            for f in fields:
                want = np.asarray(expected[f][i])
                value = np.asarray(got[f])
                if np.issubdtype(want.dtype, np.floating):
                    diff = float(np.max(np.abs(value.astype(np.float64) - want)))
                    worst = max(worst, diff)
                    same = diff <= tolerance
                else:
                    same = value.tolist() == want.tolist()
                if not same:
                    mismatched.add(i)
                    if len(examples) < _SHOWN:
                        examples.append(
                            f"row {i + 1}, field {f}: online {value.tolist()!r:.60}, "
                            f"offline {want.tolist()!r:.60}"
                        )
    return ParityResult(
        rows=len(answers),
        requests=requests_sent,
        mismatches=len(mismatched),
        max_abs_diff=worst,
        tolerance=tolerance,
        examples=examples,
    )
