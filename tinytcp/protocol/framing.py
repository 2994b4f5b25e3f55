"""Binary framing: ``[code u8][length u32 big-endian][payload]``, without quadratic copying.

In the spirit of Twisted's ``Int32StringReceiver``, one class owns the framing and calls
``frameReceived`` once per complete frame.  Unlike it, the frames of one read are cut with
offsets into that read, and the pieces of a frame that spans reads are kept in a list and
joined once, when the frame is complete (an echoed frame is not joined at all: its pieces are
its reply); memory is never reserved for an announced length.  The replies to all frames of
one read go out in one write.
"""

from __future__ import annotations

from twisted.internet.protocol import Protocol

from tinytcp.protocol.wire import HEADER, HEADER_SIZE


class FrameReceiver(Protocol):
    """Calls ``frameReceived(code, payload)`` per frame; replies queued on ``replies`` are
    written once per read."""

    #: frames announcing a longer payload go to frameTooLarge instead
    max_frame = 1024 * 1024
    #: frames with this code are their own reply (an echo): they are queued as they came,
    #: bytes for bytes, without a call per frame; ``mirrored`` counts them
    mirror_code: int | None = None
    mirrored = 0
    #: set to stop reading frames (after QUIT, an error that closes, or shutdown)
    closing = False

    _chunks: list[bytes] | None = None
    _have = 0
    _need = 0

    def __init__(self) -> None:
        #: encoded replies waiting for the end of this read
        self.replies: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        chunks = self._chunks
        if chunks is None and len(data) >= HEADER_SIZE and data[0] == self.mirror_code:
            length = HEADER.unpack_from(data)[1]
            if length == len(data) - HEADER_SIZE and length <= self.max_frame:
                # the commonest read of a request/response client: one whole mirrored frame
                self.mirrored += 1
                self.send(data)
                return
        if chunks is not None:
            chunks.append(data)
            self._have += len(data)
            if self._have < self._need:
                return
            self._chunks = None
            if self._need > HEADER_SIZE and chunks[0][0] == self.mirror_code:
                # a mirrored frame that spanned reads (its header was whole in the first
                # piece) is its own reply: its pieces go out as they came, never joined
                cut = len(data) - (self._have - self._need)
                if cut < len(data):
                    chunks[-1] = data[:cut]
                    data = data[cut:]
                else:
                    data = b""
                self.replies.extend(chunks)
                self.mirrored += 1
            else:
                data = b"".join(chunks)
        offset = 0
        size = len(data)
        unpack = HEADER.unpack_from
        max_frame = self.max_frame
        mirror = self.mirror_code
        replies = self.replies
        need = HEADER_SIZE
        mirrored = 0
        # mirrored frames in a row are one stretch of this read, queued with one slice
        run = -1
        too_large = 0
        while size - offset >= HEADER_SIZE:
            code, length = unpack(data, offset)
            if length > max_frame:
                too_large = length
                break
            end = offset + HEADER_SIZE + length
            if end > size:
                need = HEADER_SIZE + length
                break
            if code == mirror:
                if run < 0:
                    run = offset
                mirrored += 1
            else:
                if run >= 0:
                    replies.append(data[run:offset])
                    run = -1
                self.frameReceived(code, data[offset + HEADER_SIZE : end])
                if self.closing:
                    break
            offset = end
        if run >= 0:
            replies.append(data[run:offset])  # the read itself when it is all mirrored frames
        self.mirrored += mirrored
        if self.closing:
            self.flush()
            return
        if too_large:
            self.flush()
            self.frameTooLarge(data[offset], too_large)
            return
        if offset < size:
            rest = data[offset:] if offset else data
            self._chunks = [rest]
            self._have = len(rest)
            self._need = need
        self.flush()

    def flush(self) -> None:
        """Write the replies queued so far, in one write (a writeSequence: large pieces are not joined)."""
        replies = self.replies
        if len(replies) == 1:
            data = replies.pop()
            self.send(data)
        elif replies:
            pieces = replies[:]
            replies.clear()
            self.transport.writeSequence(pieces)  # type: ignore[union-attr]

    def send(self, data: bytes) -> None:
        """Write replies; protocols may send more directly than transport.write."""
        self.transport.write(data)  # type: ignore[union-attr]

    def frameReceived(self, code: int, payload: bytes) -> None:
        """One complete frame arrived; queue its reply on ``replies``."""
        raise NotImplementedError

    def frameTooLarge(self, code: int, length: int) -> None:
        """A header announced more than ``max_frame`` bytes; by default, hang up."""
        self.closing = True
        self.transport.loseConnection()  # type: ignore[union-attr]
