"""WebSocket message sizes read from frame headers alone, before any payload is buffered.

Twisted's WebSocket layer joins the frames of a message in memory with no limit, so a
browser could make the server hold any amount.  ``MessageSizeGuard`` follows the client's
byte stream (RFC 6455 section 5.2: every client frame is masked, headers are 6 to 14 bytes)
and reports the first data frame whose announced length takes its message past the limit,
so the server refuses it before a byte of its payload is handed on.  No I/O here.
"""

from __future__ import annotations

#: opcodes below this carry message data (continuation, text, binary); the rest are control frames
CONTROL = 0x8


def header_size(header: bytes) -> int | None:
    """The full size of the frame header that starts with ``header``; None before its 2nd byte."""
    if len(header) < 2:
        return None
    length = header[1] & 0x7F
    size = 2 + (2 if length == 126 else 8 if length == 127 else 0)
    return size + 4 if header[1] & 0x80 else size


def payload_length(header: bytes) -> int:
    """The payload length a complete frame header announces."""
    length = header[1] & 0x7F
    if length == 126:
        return int.from_bytes(header[2:4], "big")
    if length == 127:
        return int.from_bytes(header[2:10], "big")
    return length


class MessageSizeGuard:
    """Follows one client's frames; ``feed`` says where a message first grows past ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: the start of a header that has not fully arrived (at most 13 bytes)
        self._header = b""
        #: payload bytes of the current frame still to come
        self._skip = 0
        #: payload bytes announced so far for the data message in progress
        self._message = 0

    def feed(self, data: bytes) -> int | None:
        """Follow ``data``: None when every message so far is within the limit, else the offset in
        ``data`` of the header that breaks it (0 when that header began in an earlier read)."""
        pos = 0
        end = len(data)
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            start = pos - len(self._header)
            header = self._header + data[pos : pos + 14 - len(self._header)]
            size = header_size(header)
            if size is None or len(header) < size:
                self._header = header
                return None
            pos += size - len(self._header)
            self._header = b""
            length = payload_length(header)
            if header[0] & 0x0F < CONTROL:
                self._message += length
                if self._message > self.limit:
                    return max(start, 0)
                if header[0] & 0x80:  # FIN: the next data frame starts a new message
                    self._message = 0
            self._skip = length
        return None
