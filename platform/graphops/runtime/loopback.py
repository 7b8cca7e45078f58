"""Keeping a local Ray cluster on loopback, as far as Ray 2.60 lets it be kept there.

Ray replaces a node address of ``127.0.0.1`` (``ray.init(_node_ip_address=...)``, ``ray start
--node-ip-address``) with the host's own address (``resolve_ip_for_localhost`` in
``ray/_private/services.py``), and its processes then listen on that address or on every
interface. It keeps ``127.0.0.1`` only where it believes no other node can join:
``get_node_ip_address`` returns the loopback address when ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``
is false (``ray_constants.ENABLE_RAY_CLUSTER``), a switch meant for laptops that works on Linux
too. Every listener of such a node is on loopback (read from its sockets by
``tests/integration/test_loopback.py``; docs/security.md); the price is that no worker node can
join it (`ray start --address` refuses to start with the switch off, and without it resolves the
head's address to the host's, where the head does not listen).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from contextlib import contextmanager

LOOPBACK_ONLY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
"""The environment of a single-node cluster kept on loopback (its head and every process it starts)."""


def is_loopback(address: str) -> bool:
    """Whether a listening address is loopback (``127.0.0.0/8``, ``::1``, ``::ffff:127.x``)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    mapped = getattr(ip, "ipv4_mapped", None)  # Python 3.11 calls ::ffff:127.0.0.1 not loopback
    return bool((mapped or ip).is_loopback)


@contextmanager
def loopback_only() -> Iterator[None]:
    """Start a local cluster (``ray.init(address="local")``) inside: every listener on loopback.

    The variable is set for the processes the cluster starts (they inherit it: the head's own
    drivers and agents resolve addresses the same way); Ray's constant, read once when Ray was
    imported, is switched for this process, which was already running. Both are restored after.
    """
    from ray._private import ray_constants  # no public switch: the constant is what Ray reads

    [(name, value)] = LOOPBACK_ONLY_ENV.items()
    before_env, before = os.environ.get(name), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[name] = value
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before
        if before_env is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before_env


__all__ = ["LOOPBACK_ONLY_ENV", "is_loopback", "loopback_only"]
