"""Protocol test fixtures: a server on a fake clock and protocols on StringTransports."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from tinytcp.protocol.core import Core
from tinytcp.server.binary import BinaryProtocol
from tinytcp.server.state import Server, Settings
from tinytcp.server.text import TextProtocol

FIXED = datetime(2025, 9, 12, 17, 24, 13, tzinfo=timezone(timedelta(hours=-5)))


def make_server(**settings: object) -> Server:
    """A Server with a fixed clock and a MemoryReactorClock."""
    return Server(Settings(**settings), core=Core(clock=lambda: FIXED), reactor=MemoryReactorClock())  # type: ignore[arg-type]


def connect(protocol_class: type[TextProtocol] | type[BinaryProtocol], server: Server, port: int = 5555):
    """A connected protocol and its transport."""
    protocol = protocol_class(server)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
    protocol.makeConnection(transport)
    return protocol, transport


def feed(protocol, data: bytes, step: int | None = None) -> None:
    """Deliver ``data`` whole, or ``step`` bytes per read."""
    if step is None:
        protocol.dataReceived(data)
        return
    for i in range(0, len(data), step):
        protocol.dataReceived(data[i : i + step])
