"""Binary mode: the frame protocol for programs, on the same command core as text mode.

Frames are cut by :mod:`tinytcp.protocol.framing`; ``frame(code, payload)`` is the hook
called once per request frame.  The replies to the frames of one read go out in one write
(a large payload is written as it is, with ``writeSequence``, never copied into a frame).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

from tinytcp.protocol import errors
from tinytcp.protocol.core import Reply, as_reply, error
from tinytcp.protocol.framing import FrameSplitter
from tinytcp.protocol.wire import HEADER, HEADER_SIZE, encode_frame_reply
from tinytcp.server.connection import FLUSH_COUNT, FLUSH_SIZE, FOLD, SMALL, Connection, encoded_constants
from tinytcp.server.state import Server
from tinytcp.server.wirelog import log_frames

UNKNOWN = errors.UNKNOWN_COMMAND
UNKNOWN_FRAME = encode_frame_reply(error(UNKNOWN))
_pack = HEADER.pack
_unpack = HEADER.unpack_from

#: payloads of a frame shorter than SMALL (connection.py)
SMALL_PAYLOAD = SMALL - HEADER_SIZE
#: per reply code, the headers of payloads of each length under SMALL_PAYLOAD, built at the
#: code's first small reply (about 11 KB per code a server answers with)
SMALL_HEADERS: list[list[bytes] | None] = [None] * 256


def small_headers(code: int) -> list[bytes]:
    """The headers of code's small frames, by payload length (SMALL_HEADERS)."""
    table = SMALL_HEADERS[code] = [_pack(code, length) for length in range(SMALL_PAYLOAD)]
    return table


#: payloads at least this long are written as their own piece, not copied behind a header
LARGE_PAYLOAD = 16 * 1024
#: the replies of one run between two writes, counted by the request loop's inner for
RUN = range(FLUSH_COUNT)


class BinaryProtocol(Connection):
    """One binary client; the server sends nothing until asked."""

    mode = "binary"
    encode = staticmethod(encode_frame_reply)
    constants = encoded_constants(encode_frame_reply)

    def __init__(self, server: Server) -> None:
        Connection.__init__(self, server)
        self.max_frame = server.settings.max_frame
        self.frames = FrameSplitter(self.max_frame)
        self._verbose = server.settings.verbose
        # what the request loop reaches for on every read, one attribute away
        self._core = server.core
        self._handlers = server.core.frame_handlers

    def connectionMade(self) -> None:
        self.start()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.frames.clear()
        Connection.connectionLost(self, reason)

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        # the same first lines in both protocols, inline: one call more per read costs a tenth
        # of a one-request read. The idle clock is only a timestamp (moving the timer on every
        # read would cost more than the rest of such a read; timeoutConnection moves it)
        self._active = True
        now = self._now  # an instance attribute: read as one, since a method-style call would not specialize
        self.last_active = now()
        if self.backlog is not None or self.writes_paused or self.waiting:
            self.read_later(data)
            return
        if self.frames.have:
            joined = self.frames.join(data)
            if joined is None:
                return
            first, data = joined
        else:
            first = None
        if self._verbose:
            log_frames(self.peer, first, data)
        self.answer_from((data, 0, first))

    def answer_from(self, pending: tuple[bytes, int, tuple[int, bytes] | None]) -> None:
        """Answer ``first`` (a frame that spanned reads, already cut), then the frames of
        ``data`` from ``offset`` on (``pending``), cutting them inline as ``FrameSplitter.cut``
        does; stop when the transport's buffer passes its mark or a reply is a Deferred,
        holding ``(data, offset, None)`` of the next frame.

        As in text mode, the loop dispatches through the core's table and frames a handler's
        payload with its command's code, with no Reply on the way of a successful request;
        ``Core.frame_request`` is the plain way, and the property tests hold the loop to it.
        Requests are counted as one byte each in ``session.codes`` (``Core.tally``).
        """
        out: list[bytes] = []
        # replies since the last write come in runs of FLUSH_COUNT (the inner for loop: its
        # small int counts them, where a countdown of our own cost two operations a request);
        # a reply under SMALL bytes counts as SMALL, so a run of small ones is at most
        # FLUSH_SIZE; only a larger one adds its bytes to ``unflushed`` and checks the sum
        unflushed = 0
        tables = SMALL_HEADERS
        core = self._core
        session = self.session
        codes = session.codes
        if len(codes) >= FOLD:
            core.tally(session)
        handlers = self._handlers
        data, offset, first = pending
        frames = self.frames
        size = len(data)
        last = size - HEADER_SIZE  # a header starts at or before this (a test that allocates no int)
        max_frame = self.max_frame
        code: Any
        payload: Any
        while True:
            for done in RUN:
                if first is not None:
                    code, payload = first
                    first = None
                else:
                    if offset > last:
                        break
                    code, length = _unpack(data, offset)
                    if length > max_frame:
                        frames.too_large = (code, length)
                        break
                    start = offset + HEADER_SIZE
                    offset = start + length
                    if offset > size:
                        offset = start - HEADER_SIZE
                        break
                    payload = data[start:offset]
                handler = handlers[code]
                if handler is None:
                    codes.append(0)
                    self.log_error(UNKNOWN)
                    out.append(UNKNOWN_FRAME)
                    continue
                codes.append(code)
                answer = handler(core, session, payload)
                if answer.__class__ is bytes:
                    length = len(answer)
                    if length < SMALL_PAYLOAD:
                        # a small reply: its header from the code's table, the payload beside it
                        # (joined once per write, where header + payload would copy it twice)
                        table = tables[code]
                        if table is None:
                            table = small_headers(code)
                        out.append(table[length])
                        out.append(answer)
                        continue
                    if length < LARGE_PAYLOAD:
                        out.append(_pack(code, length) + answer)
                    else:
                        self._flush(out)
                        out = []
                        self.transport.writeSequence((_pack(code, length), answer))
                    unflushed += length
                elif answer.__class__ is Reply:
                    frame = self.encode_reply(answer)
                    if answer.close:
                        self.quit_after(out, frame)
                        return
                    out.append(frame)
                    if len(frame) < SMALL:
                        continue
                    unflushed += len(frame)
                else:
                    self._flush(out)
                    self.wait_for(as_reply(core.by_code[code], answer), (data, offset, None))
                    return
                # a larger reply: the run's replies so far count as SMALL each
                if unflushed + done * SMALL >= FLUSH_SIZE:
                    self._flush(out)
                    out = []
                    unflushed = 0
                    if self.writes_paused:
                        self.hold((data, offset, None))
                        return
            else:
                # a whole run answered: write it, fold the counts, and stop if the buffer is full
                self._flush(out)
                out = []
                unflushed = 0
                if len(codes) >= FOLD:
                    core.tally(session)
                if self.writes_paused:
                    self.hold((data, offset, None))
                    return
                continue
            break  # the read is answered (or stopped at a partial or oversized frame)
        if out:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])
        if frames.too_large is not None:
            if not self.closing:
                self._too_large()
        elif offset < size:
            frames.cut(data, offset)  # holds the start of the next frame

    def _too_large(self) -> None:
        code, length = self.frames.too_large  # type: ignore[misc]
        self.send_error(errors.FRAME_TOO_LARGE)
        self.hang_up(f"frame of {length} bytes is over --max-frame ({self.max_frame})")
