"""Binary framing, ``[code u8][length u32 big-endian][payload]``, with no I/O.

In the spirit of Twisted's ``Int32StringReceiver``: the frames of one read are cut with
offsets into that read; the start of a frame that has not fully arrived is held in one
``bytearray`` (about its own size in memory, however the bytes arrive) and joined once,
when the frame is complete; nothing is reserved for an announced length before its bytes
arrive, and a length over ``max_frame`` stops the cutting before any of it is held.

The server's request loop (tinytcp/server/binary.py) cuts frames inline, with ``join`` and
``keep`` around it, because a generator per read costs a third of a small request;
``frames`` is the same cutting as a generator, for the client.
"""

from __future__ import annotations

from collections.abc import Iterator

from tinytcp.protocol.wire import HEADER, HEADER_SIZE


class FrameSplitter:
    """Holds the partial frame between reads; ``frames(read)`` yields complete frames."""

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        #: the start of a frame that has not fully arrived
        self.held = bytearray()
        #: bytes the held frame needs in all (header included), once its header is known
        self.need = HEADER_SIZE
        #: ``(code, length)`` of a header over max_frame; no frame after it is cut
        self.too_large: tuple[int, int] | None = None

    def join(self, data: bytes) -> bytes | None:
        """The held start of a frame followed by ``data``, once the frame is complete (None
        before: the read is held)."""
        held = self.held
        held += data
        if len(held) < self.need:
            return None
        self.held = bytearray()
        self.need = HEADER_SIZE
        return bytes(held)

    def keep(self, data: bytes, offset: int, need: int) -> None:
        """Hold ``data[offset:]``, the start of a frame of ``need`` bytes in all."""
        self.held += memoryview(data)[offset:]
        self.need = need

    def cut(self, data: bytes, offset: int) -> tuple[int, int, int] | None:
        """The frame at ``offset``: ``(code, payload start, end)``; None when it is not
        complete (it is held) or announces more than max_frame (``too_large`` is set)."""
        size = len(data)
        if size - offset < HEADER_SIZE:
            if offset < size:
                self.keep(data, offset, HEADER_SIZE)
            return None
        code, length = HEADER.unpack_from(data, offset)
        if length > self.max_frame:
            self.too_large = (code, length)
            return None
        end = offset + HEADER_SIZE + length
        if end > size:
            self.keep(data, offset, HEADER_SIZE + length)
            return None
        return code, offset + HEADER_SIZE, end

    def frames(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        """The ``(code, payload)`` of every frame ``data`` completes, in order."""
        if self.held:
            joined = self.join(data)
            if joined is None:
                return
            data = joined
        offset = 0
        while (frame := self.cut(data, offset)) is not None:
            code, start, offset = frame
            yield code, data[start:offset]
