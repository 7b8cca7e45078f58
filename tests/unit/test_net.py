"""The one free-port helper: a preferred port when free, never one already handed out."""

from __future__ import annotations

import socket

from graphops._net import free_port, port_free


def test_a_free_preferred_port_is_given_and_then_taken() -> None:
    port = free_port()
    taken: set[int] = set()
    assert free_port(port, taken) == port
    assert taken == {port}
    assert free_port(port, taken) != port  # handed out already: another one


def test_a_held_port_is_neither_free_nor_given() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert not port_free(port)
        assert free_port(port) != port
