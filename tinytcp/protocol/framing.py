"""Binary framing, ``[code u8][length u32 big-endian][payload]``, with no I/O.

In the spirit of Twisted's ``Int32StringReceiver``: the frames of one read are cut with
offsets into that read; the start of a frame that has not fully arrived is held in one
``bytearray`` (about its own size in memory, however the bytes arrive) and joined once,
when the frame is complete; nothing is reserved for an announced length before its bytes
arrive, and a length over ``max_frame`` stops the splitting before any of it is held.
"""

from __future__ import annotations

from tinytcp.protocol.wire import HEADER, HEADER_SIZE


class FrameSplitter:
    """Feed reads, get the complete frames they finish as a flat list ``[code, payload, ...]``."""

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        #: the start of a frame that has not fully arrived
        self.held = bytearray()
        #: bytes the held frame needs in all (header included), once its header is known
        self.need = HEADER_SIZE
        #: ``(code, length)`` of a header over max_frame; feed returned the frames before it
        self.too_large: tuple[int, int] | None = None

    def feed(self, data: bytes) -> list[bytes | int]:
        """The frames ``data`` completes, in order, as ``[code, payload, code, payload, ...]``."""
        held = self.held
        if held:
            held += data
            if len(held) < self.need:
                return []
            data = bytes(held)
            held.clear()
            self.need = HEADER_SIZE
        frames: list[bytes | int] = []
        offset = 0
        size = len(data)
        unpack = HEADER.unpack_from
        max_frame = self.max_frame
        while size - offset >= HEADER_SIZE:
            code, length = unpack(data, offset)
            if length > max_frame:
                self.too_large = (code, length)
                return frames
            end = offset + HEADER_SIZE + length
            if end > size:
                self.need = HEADER_SIZE + length
                break
            frames += (code, data[offset + HEADER_SIZE : end])
            offset = end
        if offset < size:
            held += memoryview(data)[offset:]
        return frames
