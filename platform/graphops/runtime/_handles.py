"""Calls by Serve handle from an ingress: a deadline, one retry on a lost replica, errors as JSON.

Used for a graph's own remote stages (`call_with_retry`) and for another version's ingress
(`ask_version`, one hop) when a split sends it a share, or a copy, of the route's requests.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ray.exceptions import RayActorError

from graphops.runtime._errors import HttpError, StageTimeout, Unavailable, error_answer

logger = logging.getLogger("ray.serve")


async def call_with_retry(
    call: Any, *, timeout_s: float | None, graph: str, what: str, retry_fix: str
) -> Any:
    """Await ``call()`` (a Serve handle call), within ``timeout_s``; once more if its replica died.

    A replica that died (or is unreachable) mid-call is retried once: the handle routes the
    second call to another replica. An error raised by the code the replica runs is never
    retried. Inference calls are idempotent, so a retry cannot do a request's work twice
    in any way a client sees.

    Raises:
        StageTimeout: ``timeout_s`` passed (504).
        Unavailable: The second replica died too (503).
    """
    for attempt in (1, 2):
        response = call()
        try:
            return await asyncio.wait_for(_awaited(response), timeout_s)
        except TimeoutError:
            response.cancel()
            raise StageTimeout(
                f"{what} of graph '{graph}' did not answer within {timeout_s:g} s.",
                "See its replica logs (/tmp/ray/session_latest/logs/serve); a stage that needs "
                "longer can be given it with stage_timeout_s in the application's args, or more "
                "replicas.",
            ) from None
        except RayActorError as exc:
            if attempt == 2:
                raise Unavailable(
                    f"{what} of graph '{graph}' lost two replicas in a row while answering "
                    f"({type(exc).__name__}).",
                    retry_fix,
                ) from None
            logger.warning("%s of graph %s: a replica died (%s); retrying once", what, graph, exc)
    raise AssertionError("unreachable")  # pragma: no cover


async def _awaited(response: Any) -> Any:
    return await response


async def ask_version(
    handle: Any, body: bytes, *, graph: str, version: str, app: str
) -> tuple[int, bytes]:
    """(status, JSON answer) of another version's ingress (`GraphIngress.answer`) for ``body``.

    Never raises: a version that cannot answer gives the 5xx its client sees (with the fix).
    """
    fix = "Run `graphops status` and `graphops apply`; see the Serve logs."
    try:
        status, answer = await call_with_retry(
            lambda: handle.remote(body),
            timeout_s=None,  # that ingress bounds its own stages; Serve bounds the rest
            graph=graph,
            what=f"Version {version}",
            retry_fix=fix,
        )
        return int(status), bytes(answer)
    except HttpError as exc:
        return error_answer(exc)
    except Exception as exc:  # the version's application is down or being replaced
        logger.warning("version %s of %s failed: %s", version, graph, exc)
        return error_answer(
            Unavailable(
                f"Version {version} of graph '{graph}' (application {app}) did not answer: "
                f"{type(exc).__name__}.",
                fix,
            )
        )
