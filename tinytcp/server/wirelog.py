"""``--verbose``: every request as it arrives and every message as it is written, in the log.

The log is a tap on the wire, not a step of the request loops: a read's requests are logged
once per read (``log_lines``, ``log_frames``; passwords masked), and what the server writes
is logged by ``WireLog``, the transport a verbose connection writes through.  So the loops
test no flag per request, and the log shows the replies as the client gets them, pushed chat
messages and the banner included.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any

from twisted.logger import Logger
from zope.interface import directlyProvides, providedBy

from tinytcp.auth.commands import loggable_line, loggable_payload
from tinytcp.protocol.framing import FrameSplitter
from tinytcp.protocol.wire import CRLF

log = Logger(namespace="tinytcp")

#: the most of a payload a log line shows
SHOWN = 200
#: frames logged are cut whatever their length (the connection's own splitter enforces --max-frame)
UNBOUNDED = 2**32


def whole_frames(data: bytes) -> Iterator[tuple[int, bytes]]:
    """The ``(code, payload)`` of each complete frame in ``data``, up to the first that is not:
    cut by a splitter of its own, so the connection's splitter holds nothing more."""
    return FrameSplitter(UNBOUNDED).frames(data)


def log_lines(peer: str, lines: Iterable[bytes]) -> None:
    """Log the request lines of a read (a blank line is no request)."""
    for line in lines:
        line = line.rstrip(b"\r")
        if line.strip():
            log.info("{peer} -> {line!r}", peer=peer, line=loggable_line(line[:SHOWN]))


def log_frames(peer: str, first: tuple[int, bytes] | None, data: bytes) -> None:
    """Log the request frames of a read: ``first`` (a frame that spanned reads), then the
    complete frames of ``data`` (one still arriving is logged with the read that ends it)."""
    frames = whole_frames(data)
    for code, payload in frames if first is None else chain((first,), frames):
        shown = loggable_payload(code, payload[:SHOWN])
        log.info("{peer} -> frame {code} {payload!r}", peer=peer, code=code, payload=shown)


class WireLog:
    """A connection's transport, logging what is written through it; everything else
    (producers, closing, the peer, TLS) is the transport's own."""

    def __init__(self, transport: Any, connection: Any, binary: bool) -> None:
        directlyProvides(self, providedBy(transport))
        self._transport = transport
        self._connection = connection  # its peer is known once the connection is made
        self._binary = binary

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def write(self, data: bytes) -> None:
        self._log(data)
        self._transport.write(data)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        data = list(data)
        self._log(b"".join(data))
        self._transport.writeSequence(data)

    def _log(self, data: bytes) -> None:
        peer = self._connection.peer
        if self._binary:
            for code, payload in whole_frames(data):
                log.info("{peer} <- frame {code} {payload!r}", peer=peer, code=code, payload=payload[:SHOWN])
        else:
            for reply in data.split(CRLF):
                if reply:
                    log.info("{peer} <- {reply!r}", peer=peer, reply=reply[:SHOWN])
