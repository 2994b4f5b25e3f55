"""Binary framing, ``[code u8][length u32 big-endian][payload]``, with no I/O.

In the spirit of Twisted's ``Int32StringReceiver``: the frames of one read are cut with
offsets into that read.  A frame that has not fully arrived is held as the reads that carry
it (reads under 4 KiB are gathered into one ``bytearray``, so a frame sent a byte at a time
costs about its own size, not a Python object per byte); once it is complete, its payload
is copied out of them once.  Nothing is reserved for an announced length before its bytes
arrive, and a length over ``max_frame`` stops the cutting before any of it is held.

The server's request loop (tinytcp/server/binary.py) cuts frames inline, with ``join`` and
``keep`` around it, because a generator per read costs a third of a small request;
``frames`` is the same cutting as a generator, for the client.
"""

from __future__ import annotations

from collections.abc import Iterator

from tinytcp.protocol.wire import HEADER, HEADER_SIZE

#: reads shorter than this are gathered into one bytearray while a frame is held
GATHER = 4096


class FrameSplitter:
    """Holds the partial frame between reads; ``frames(read)`` yields complete frames."""

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        #: the reads (or gathered small reads) that hold the start of a frame
        self.pieces: list[bytes | bytearray] = []
        #: bytes held in ``pieces``
        self.have = 0
        #: bytes the held frame needs in all (header included), once its header is known
        self.need = HEADER_SIZE
        #: ``(code, length)`` of a header over max_frame; no frame after it is cut
        self.too_large: tuple[int, int] | None = None

    def clear(self) -> None:
        """Drop what is held (the connection is gone)."""
        self.pieces = []
        self.have = 0

    def _add(self, data: bytes | memoryview) -> None:
        pieces = self.pieces
        if len(data) < GATHER:
            if pieces and pieces[-1].__class__ is bytearray:
                pieces[-1] += data  # type: ignore[operator]
            else:
                pieces.append(bytearray(data))
        else:
            pieces.append(bytes(data) if data.__class__ is memoryview else data)  # type: ignore[arg-type]
        self.have += len(data)

    def keep(self, data: bytes, offset: int, need: int) -> None:
        """Hold ``data[offset:]``, the start of a frame of ``need`` bytes in all."""
        self._add(memoryview(data)[offset:] if offset else data)
        self.need = need

    def join(self, data: bytes) -> tuple[tuple[int, bytes] | None, bytes] | None:
        """Add a read to the held frame.  None while it is still incomplete; then
        ``(frame, rest)``: the completed frame's ``(code, payload)`` (None when only the start
        of a header was held) and the bytes after it, to cut as a read of their own."""
        self._add(data)
        if self.have < self.need:
            return None
        pieces, need = self.pieces, self.need
        self.pieces = []
        self.have = 0
        self.need = HEADER_SIZE
        if need == HEADER_SIZE:
            return None, b"".join(pieces)
        # the header is whole in the first piece (the frame was held once its header was read)
        code = pieces[0][0]
        payload: list[memoryview] = []
        rest: list[memoryview] = []
        position = 0
        for piece in pieces:
            view = memoryview(piece)
            size = len(piece)
            start, end = max(HEADER_SIZE - position, 0), min(need - position, size)
            if start < end:
                payload.append(view[start:end])
            if need - position < size:
                rest.append(view[max(need - position, 0) :])
            position += size
        return (code, b"".join(payload)), b"".join(rest)

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
        if self.have:
            joined = self.join(data)
            if joined is None:
                return
            first, data = joined
            if first is not None:
                yield first
        offset = 0
        while (frame := self.cut(data, offset)) is not None:
            code, start, offset = frame
            yield code, data[start:offset]
