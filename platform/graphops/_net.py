"""Loopback TCP ports: whether one is free, and a free one (the one helper every part uses).

Local services (the demo's clusters, a throwaway redis-server, Serve's proxy in tests and
benchmarks) each need a port on 127.0.0.1 nothing else holds. Imports nothing of graphops.
"""

from __future__ import annotations

import socket


def port_free(port: int) -> bool:
    """Whether no process listens on (or holds) 127.0.0.1:``port``.

    ``SO_REUSEADDR`` lets the probe bind over connections in TIME_WAIT (a port just freed), but
    never over a listening socket.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(preferred: int | None = None, taken: set[int] | None = None) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    Args:
        preferred: This port when it is free and not ``taken`` (else any free one).
        taken: Ports already handed out but not yet bound: never returned; the chosen port is
            added to it.
    """
    taken = set() if taken is None else taken
    if preferred and preferred not in taken and port_free(preferred):
        taken.add(preferred)
        return preferred
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            taken.add(port)
            return port
