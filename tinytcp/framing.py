"""Binary framing: ``[code u8][length u32 big-endian][payload]``, without quadratic copying.

In the spirit of Twisted's ``Int32StringReceiver``, one class owns the framing and calls
``frameReceived`` once per complete frame.  Unlike it, the frames of one read are cut with
offsets into that read, and the pieces of a frame that spans reads are kept in a list and
joined once, when the frame is complete; memory is never reserved for an announced length.
"""

from __future__ import annotations

from twisted.internet.protocol import Protocol

from tinytcp.wire import HEADER, HEADER_SIZE


class FrameReceiver(Protocol):
    """Calls ``frameReceived(code, payload)`` per frame and ``framesDone()`` after each read."""

    #: frames announcing a longer payload go to frameTooLarge instead
    max_frame = 1024 * 1024
    #: set to stop reading frames (after QUIT, an error that closes, or shutdown)
    closing = False

    _chunks: list[bytes] | None = None
    _have = 0
    _need = 0

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        if self._chunks is not None:
            self._chunks.append(data)
            self._have += len(data)
            if self._have < self._need:
                return
            data = b"".join(self._chunks)
            self._chunks = None
        offset = 0
        size = len(data)
        unpack = HEADER.unpack_from
        max_frame = self.max_frame
        need = HEADER_SIZE
        while size - offset >= HEADER_SIZE:
            code, length = unpack(data, offset)
            if length > max_frame:
                self.framesDone()
                self.frameTooLarge(code, length)
                return
            start = offset + HEADER_SIZE
            end = start + length
            if end > size:
                need = HEADER_SIZE + length
                break
            self.frameReceived(code, data[start:end])
            offset = end
            if self.closing:
                self.framesDone()
                return
        if offset < size:
            rest = data[offset:] if offset else data
            self._chunks = [rest]
            self._have = len(rest)
            self._need = need
        self.framesDone()

    def frameReceived(self, code: int, payload: bytes) -> None:
        """One complete frame arrived."""
        raise NotImplementedError

    def framesDone(self) -> None:
        """Every complete frame of the last read has been handed to frameReceived."""

    def frameTooLarge(self, code: int, length: int) -> None:
        """A header announced more than ``max_frame`` bytes; by default, hang up."""
        self.closing = True
        self.transport.loseConnection()  # type: ignore[union-attr]
