"""What a graph's HTTP routes check before anything else: header size, and the cluster token.

Routes that disclose how a graph runs (``GET <route>/stats``: replica ids and counters) need the
token of the Ray cluster that runs the replica, sent as ``Authorization: Bearer <token>`` (what
`graphops status --live` sends, `graphops.controller.cluster.auth_token`). The replica compares
it in constant time with the token its own process has: Ray's token loader reads
``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token`` (and KubeRay's Secret).
A cluster without token authentication has no token to compare with, so those routes refuse
every request there, saying how to turn it on. Headers over `MAX_HEADER_BYTES` are refused
with 431 on every route: Ray's proxy (uvicorn with httptools) sets no limit of its own.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from graphops.runtime._errors import HeadersTooLarge, Unauthorized

MAX_HEADER_BYTES = 64 * 1024
"""Request headers (names and values, all together) a graph's routes accept."""

TOKEN_FIX = (
    "Send the Ray cluster's token as `Authorization: Bearer <token>` (`graphops status --live` "
    "sends the one it reads: cluster.token_env of the environment, else RAY_AUTH_TOKEN, "
    "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)."
)


def cluster_token() -> str | None:
    """The token of the cluster this process belongs to; None when token auth is off."""
    # Ray's own loader: the same lookup, and the same token, its dashboard and RPCs check.
    # (Compiled; ray/_raylet.pyi does not declare the authentication API.)
    from ray._raylet import (  # type: ignore[attr-defined]
        AuthenticationMode,
        AuthenticationTokenLoader,
        get_authentication_mode,
    )

    if get_authentication_mode() != AuthenticationMode.TOKEN:
        return None
    loader = AuthenticationTokenLoader.instance()
    if not loader.has_token():
        return None
    return str(loader.get_raw_token()).strip() or None


def check_headers(graph: str, headers: Iterable[tuple[bytes, bytes]]) -> None:
    """Refuse headers over `MAX_HEADER_BYTES` (ASGI ``scope["headers"]``, names and values).

    Raises:
        HeadersTooLarge: 431, with the size sent and the limit.
    """
    size = sum(len(name) + len(value) for name, value in headers)
    if size > MAX_HEADER_BYTES:
        raise HeadersTooLarge(
            f"The request's headers hold {size:,} bytes; graph '{graph}' accepts at most "
            f"{MAX_HEADER_BYTES:,} bytes (64 KiB) of headers.",
            "Send smaller headers (cookies and tokens included); put data in the JSON body.",
        )


def require_token(what: str, authorization: str | None, token: str | None) -> None:
    """Let ``what`` (e.g. ``GET /digits/stats``) through only with the cluster's token.

    Raises:
        Unauthorized: 401 when no token or another one was sent, or the cluster has none.
    """
    if token is None:
        raise Unauthorized(
            f"{what} needs the cluster's token, and this cluster runs without token "
            "authentication, so there is none to check.",
            "Start the cluster with token authentication (RAY_AUTH_MODE=token and a token in "
            "RAY_AUTH_TOKEN or ~/.ray/auth_token: `ray get-auth-token --generate`; KubeRay: "
            "authOptions mode token).",
        )
    scheme, _, sent = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(
        sent.strip().encode(), token.strip().encode()
    ):
        return
    problem = "the request sent none" if not authorization else "the token sent is not this one"
    raise Unauthorized(f"{what} needs the cluster's token; {problem}.", TOKEN_FIX)


__all__ = ["MAX_HEADER_BYTES", "check_headers", "cluster_token", "require_token"]
