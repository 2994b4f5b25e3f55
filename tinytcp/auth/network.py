"""Which peers are on this machine: they may send passwords in clear and pass protected mode."""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.internet.address import UNIXAddress


def is_local(address: Any) -> bool:
    """True for a unix socket peer and for loopback addresses (127.0.0.0/8, ::1, ::ffff:127.x)."""
    if address is None or isinstance(address, UNIXAddress):
        return True  # None: a session no connection made (core tests)
    host = getattr(address, "host", None)
    if host is None:
        return False
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def peer_key(address: Any) -> str:
    """What failed logins are counted against for a peer: its IP address (or 'local')."""
    host = getattr(address, "host", None)
    return host if host is not None else "local"


def describe(address: Any) -> str:
    """A peer as the server's logs show it (``127.0.0.1:5000``, ``[::1]:5000``, ``unix``)."""
    host = getattr(address, "host", None)
    if host is not None:
        port = getattr(address, "port", "?")
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return "unix" if isinstance(address, UNIXAddress) else "?"
