"""Binary framing, ``[code u8][length u32 big-endian][payload]``, with no I/O.

In the spirit of Twisted's ``Int32StringReceiver``: the frames of one read are cut with
offsets into that read; the start of a frame that has not fully arrived is held in one
``bytearray`` (about its own size in memory, however the bytes arrive) and copied out once,
when the frame is complete; nothing is reserved for an announced length before its bytes
arrive, and a length over ``max_frame`` stops the splitting before any of it is held.
"""

from __future__ import annotations

from collections.abc import Iterator

from tinytcp.protocol.wire import HEADER, HEADER_SIZE


class FrameSplitter:
    """``frames(read)`` yields the ``(code, payload)`` of every frame the read completes."""

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        #: the start of a frame that has not fully arrived
        self.held = bytearray()
        #: bytes the held frame needs in all (header included), once its header is known
        self.need = HEADER_SIZE
        #: ``(code, length)`` of a header over max_frame; no frame after it is cut
        self.too_large: tuple[int, int] | None = None

    def frames(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        """The frames ``data`` completes, in order; the caller may stop between two and go on
        later (the generator keeps its place), but must not feed another read before it ends."""
        held = self.held
        if held:
            held += data
            need = self.need
            if len(held) < need:
                return
            self.held = bytearray()
            self.need = HEADER_SIZE
            if need > HEADER_SIZE:  # the held frame is complete: copy its payload out once
                view = memoryview(held)
                payload = bytes(view[HEADER_SIZE:need])
                data = bytes(view[need:])
                view.release()
                yield held[0], payload
            else:
                data = bytes(held)
        offset = 0
        size = len(data)
        unpack = HEADER.unpack_from
        max_frame = self.max_frame
        while size - offset >= HEADER_SIZE:
            code, length = unpack(data, offset)
            if length > max_frame:
                self.too_large = (code, length)
                return
            end = offset + HEADER_SIZE + length
            if end > size:
                self.need = HEADER_SIZE + length
                break
            yield code, data[offset + HEADER_SIZE : end]
            offset = end
        if offset < size:
            self.held += memoryview(data)[offset:]
