"""What ``INFO`` and ``/metrics`` report: the server's counters, read only when asked.

Counting must not slow the request path, so the server only bumps plain integers on objects
each request already touches (the core's per-command list, the connection's transport, the
session); the sums, the per-mode split and everything derived are computed here, per
``INFO``.  Field names are a stable interface, documented in docs/protocol.md §9.
"""

from __future__ import annotations

import os
import platform
import time
from typing import Any

import twisted
from tinytcp import __version__
from tinytcp.protocol import errors
from tinytcp.protocol.core import COMMANDS

#: tinytcp.server's Server and Connection: the server imports this module, so this module
#: names them only loosely, and the dependency runs one way
Server = Any
Connection = Any

SECTIONS = ("server", "clients", "stats", "chat")

#: the errors that close a connection because it hit a limit, as clients-section fields
LIMITS = (errors.LINE_TOO_LONG, errors.FRAME_TOO_LARGE, errors.IDLE_TIMEOUT, errors.SLOW_CONSUMER)

Value = int | float | str


class Stats:
    """The server-wide counters the connections bump: plain integers, no locks, no lookups."""

    def __init__(self, clock: Any = time.time) -> None:
        self.started = clock()
        self.clock = clock
        #: connections served and since closed, with their requests and wire bytes
        self.closed = 0
        self.closed_requests = 0
        self.closed_bytes_in = 0
        self.closed_bytes_out = 0
        #: times a client's write buffer filled and the server stopped reading from it
        self.backpressure_pauses = 0
        #: ERROR replies sent, by name (errors are rare: a dict is fine here)
        self.errors: dict[str, int] = dict.fromkeys(errors.ERRORS, 0)

    def error(self, name: str | bytes) -> None:
        """Count one ERROR reply."""
        key = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        self.errors[key] = self.errors.get(key, 0) + 1

    def connection_closed(self, connection: Connection) -> None:
        """Fold a served connection's counters into the totals."""
        self.closed += 1
        self.closed_requests += connection_requests(connection)
        bytes_in, bytes_out = wire_bytes(connection.transport)
        self.closed_bytes_in += bytes_in
        self.closed_bytes_out += bytes_out


def connection_requests(connection: Connection) -> int:
    """Requests a connection has answered."""
    return connection.session.requests


def wire_bytes(transport: Any) -> tuple[int, int]:
    """Bytes received and sent on a connection's socket, as its TCP transport counted them.

    TLS wraps the TCP transport, so the count is of encrypted bytes; transports that do not
    count (unix sockets) report 0.
    """
    for _ in range(4):
        if transport is None:
            break
        if hasattr(transport, "bytes_in"):
            return transport.bytes_in, transport.bytes_out
        transport = getattr(transport, "transport", None)
    return 0, 0


def collect(server: Server) -> dict[str, dict[str, Value]]:
    """Every section's fields, in documented order."""
    stats = server.stats
    open_connections = list(server.connections)
    by_mode = {"text": 0, "binary": 0}
    requests = stats.closed_requests
    bytes_in, bytes_out = stats.closed_bytes_in, stats.closed_bytes_out
    for connection in open_connections:
        by_mode[connection.mode] = by_mode.get(connection.mode, 0) + 1
        connection.fold_counters()  # what it has answered since, into the server's counters
        requests += connection_requests(connection)
        got, sent = wire_bytes(connection.transport)
        bytes_in += got
        bytes_out += sent
    reactor = server.reactor
    server_section: dict[str, Value] = {
        "version": __version__,
        "twisted": twisted.__version__,
        "python": platform.python_version(),
        "pid": os.getpid(),
        "uptime_seconds": int(stats.clock() - stats.started),
        "reactor": f"{type(reactor).__module__}.{type(reactor).__qualname__}",
        "worker": server.worker,
        "workers": server.workers,
    }
    clients: dict[str, Value] = {
        "connected": len(open_connections),
        "connected_text": by_mode["text"],
        "connected_binary": by_mode["binary"],
        "connections_total": stats.closed + len(open_connections),
        "refused_busy": stats.errors.get(errors.BUSY, 0),
        "max_connections": server.settings.max_connections,
    }
    for name in LIMITS:
        clients[f"closed_{name.lower()}"] = stats.errors.get(name, 0)
    calls = server.core.calls
    stats_section: dict[str, Value] = {"requests_total": requests}
    for command in COMMANDS:
        stats_section[f"requests_{command.name.lower()}"] = calls[command.code]
    stats_section["requests_unknown"] = calls[0]
    for name, count in stats.errors.items():
        stats_section[f"errors_{name.lower()}"] = count
    stats_section["bytes_in"] = bytes_in
    stats_section["bytes_out"] = bytes_out
    stats_section["backpressure_pauses"] = stats.backpressure_pauses
    stats_section["slow_consumers"] = stats.errors.get(errors.SLOW_CONSUMER, 0)
    room = server.core.room
    chat: dict[str, Value] = {
        "members": len(room.members),
        "nicks": len(room.nicks),
        "guests": len(room.members) - len(room.nicks),
    }
    chat.update(room.status())  # what a room shared between nodes adds (tinytcp/cluster/room.py)
    return {"server": server_section, "clients": clients, "stats": stats_section, "chat": chat}


def render(fields: dict[str, dict[str, Value]], section: str | None = None) -> bytes | None:
    """``key:value`` fields separated by single spaces, for one section or all; None for an unknown section."""
    if section is not None and section not in fields:
        return None
    chosen = [fields[section]] if section is not None else list(fields.values())
    return " ".join(f"{key}:{value}" for part in chosen for key, value in part.items()).encode("utf-8")


def info(server: Server, section: bytes | None) -> bytes | None:
    """The INFO payload for ``section`` (any case), or None when there is no such section."""
    name = section.decode("ascii", "replace").lower() if section else None
    if name is not None and name not in SECTIONS:
        return None
    return render(collect(server), name)
