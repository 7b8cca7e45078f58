"""The pure checks in front of a graph's routes (header size, cluster token) and loopback tests."""

from __future__ import annotations

import json

import pytest

from graphops.runtime._auth import MAX_HEADER_BYTES, check_headers, require_token
from graphops.runtime._errors import HttpError
from graphops.runtime._ray import _on_loopback
from graphops.runtime.loopback import is_loopback

TOKEN = "0123456789abcdef" * 4


def test_headers_up_to_64_kib_pass_and_one_byte_more_is_431() -> None:
    name = b"x-big"
    check_headers("digits", [(name, b"a" * (MAX_HEADER_BYTES - len(name)))])
    with pytest.raises(HttpError) as caught:
        check_headers("digits", [(name, b"a" * (MAX_HEADER_BYTES - len(name) + 1))])
    assert caught.value.status == 431
    body = json.loads(caught.value.json())
    assert set(body) == {"error", "fix", "code"} and body["code"] == "headers_too_large"
    assert "65,537 bytes" in body["error"] and "65,536" in body["error"], body


def test_many_small_headers_count_together() -> None:
    with pytest.raises(HttpError, match="graph 'digits'"):
        check_headers("digits", [(b"h%d" % i, b"v" * 1000) for i in range(70)])


@pytest.mark.parametrize(
    ("sent", "problem"),
    [
        (None, "the request sent none"),
        ("", "the request sent none"),
        (f"Bearer {TOKEN[:-1]}x", "the token sent is not this one"),
        (f"Basic {TOKEN}", "the token sent is not this one"),
        (TOKEN, "the token sent is not this one"),  # no scheme
    ],
)
def test_stats_without_the_right_token_are_401(sent: str | None, problem: str) -> None:
    with pytest.raises(HttpError) as caught:
        require_token("GET /digits/stats", sent, TOKEN)
    assert caught.value.status == 401
    assert caught.value.headers == {"WWW-Authenticate": 'Bearer realm="ray"'}
    body = json.loads(caught.value.json())
    assert body["error"] == f"GET /digits/stats needs the cluster's token; {problem}."
    assert "Authorization: Bearer <token>" in body["fix"]
    assert TOKEN not in caught.value.json().decode()  # never echoes the token


@pytest.mark.parametrize("sent", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"Bearer {TOKEN}\n"])
def test_the_cluster_token_lets_stats_through(sent: str) -> None:
    require_token("GET /digits/stats", sent, TOKEN)


def test_a_cluster_without_token_auth_refuses_and_says_how_to_turn_it_on() -> None:
    with pytest.raises(HttpError) as caught:
        require_token("GET /digits/stats", f"Bearer {TOKEN}", None)
    assert caught.value.status == 401
    body = json.loads(caught.value.json())
    assert "runs without token authentication" in body["error"]
    assert "RAY_AUTH_MODE=token" in body["fix"]


@pytest.mark.parametrize(
    ("ip", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),  # Python 3.11's ipaddress alone says False
        ("0.0.0.0", False),
        ("::", False),
        ("192.0.2.2", False),
        ("::ffff:192.0.2.2", False),
        ("fe80::1%eth0", False),
    ],
)
def test_is_loopback(ip: str, loopback: bool) -> None:
    assert is_loopback(ip) is loopback


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:6379", True),
        ("localhost:6379", True),
        ("ray://127.0.0.1:10001", True),
        ("[::1]:6379", True),
        ("192.0.2.2:6379", False),
        ("head.example:6379", False),
        ("auto", False),
    ],
)
def test_on_loopback_addresses(address: str, loopback: bool) -> None:
    assert _on_loopback(address) is loopback
