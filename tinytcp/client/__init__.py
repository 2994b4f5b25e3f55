"""tinytcp's client side: the Deferred-based library (:mod:`.library`) and ``tinytcp-client`` (:mod:`.cli`).

The library's public names are re-exported here, so ``from tinytcp.client import connect``
keeps working; the command line is imported only when it runs, never by the library.
"""

from tinytcp.client.library import (
    COMMANDS_BY_NAME,
    MODES,
    BinaryClient,
    Client,
    ClientError,
    CloseCallback,
    ConnectionClosed,
    ConnectTimeout,
    MessageCallback,
    ProtocolError,
    Refused,
    ReplyTimeout,
    RequestError,
    TextClient,
    UnknownCommand,
    connect,
    frame_for,
    reply_line,
    request_bytes,
)
from tinytcp.client.tls import TLSConfigError, TLSSettings

__all__ = [
    "COMMANDS_BY_NAME",
    "MODES",
    "BinaryClient",
    "Client",
    "ClientError",
    "CloseCallback",
    "ConnectTimeout",
    "ConnectionClosed",
    "MessageCallback",
    "ProtocolError",
    "Refused",
    "ReplyTimeout",
    "RequestError",
    "TLSConfigError",
    "TLSSettings",
    "TextClient",
    "UnknownCommand",
    "connect",
    "frame_for",
    "reply_line",
    "request_bytes",
]
