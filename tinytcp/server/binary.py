"""Binary mode: the frame protocol for programs, on the same command core as text mode.

Frames are cut by :mod:`tinytcp.protocol.framing`; ``frame(code, payload)`` is the hook
called once per request frame.  The replies to the frames of one read go out in one write
(a large payload is written as it is, with ``writeSequence``, never copied into a frame).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from tinytcp.auth.commands import loggable_payload
from tinytcp.protocol import errors
from tinytcp.protocol.core import Code, Reply, as_reply, error
from tinytcp.protocol.framing import FrameSplitter
from tinytcp.protocol.wire import HEADER, HEADER_SIZE, encode_frame_reply
from tinytcp.server.connection import FLUSH_SIZE, Connection
from tinytcp.server.state import Server

log = Logger(namespace="tinytcp")

UNKNOWN_COMMAND = error(errors.UNKNOWN_COMMAND)
_pack = HEADER.pack
_unpack = HEADER.unpack_from

#: payloads at least this long are written as their own piece, not copied behind a header
LARGE_PAYLOAD = 16 * 1024


class BinaryProtocol(Connection):
    """One binary client; the server sends nothing until asked."""

    mode = "binary"
    encode = staticmethod(encode_frame_reply)

    def __init__(self, server: Server) -> None:
        Connection.__init__(self, server)
        self.max_frame = server.settings.max_frame
        self.frames = FrameSplitter(self.max_frame)
        self._verbose = server.settings.verbose
        # what the request loop reaches for on every read, one attribute away
        self._core = server.core
        self._handlers = server.core.frame_handlers
        self._calls = server.core.calls

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
            self.answer_from((data, 0, first))
        else:
            self.answer_from((data, 0, None))

    def answer_from(self, pending: tuple[bytes, int, tuple[int, bytes] | None]) -> None:
        """Answer ``first`` (a frame that spanned reads, already cut), then the frames of
        ``data`` from ``offset`` on (``pending``), cutting them inline as ``FrameSplitter.cut``
        does; stop when the transport's buffer passes its mark or a reply is a Deferred,
        holding ``(data, offset, None)`` of the next frame.

        As in text mode, the loop dispatches through the core's table and frames a handler's
        payload with its command's code, with no Reply on the way of a successful request;
        ``Core.frame_request`` is the plain way, and the property tests hold the loop to it.
        """
        out: list[bytes] = []
        unflushed = 0
        core = self._core
        session = self.session
        handlers = self._handlers
        calls = self._calls
        verbose = self._verbose
        data, offset, first = pending
        frames = self.frames
        size = len(data)
        max_frame = self.max_frame
        code: Any
        payload: Any
        while True:
            if first is not None:
                code, payload = first
                first = None
            else:
                if size - offset < HEADER_SIZE:
                    break
                code, length = _unpack(data, offset)
                if length > max_frame:
                    frames.too_large = (code, length)
                    break
                end = offset + HEADER_SIZE + length
                if end > size:
                    break
                payload = data[offset + HEADER_SIZE : end]
                offset = end
            if verbose:
                shown = loggable_payload(code, payload[:200])
                log.info("{peer} -> frame {code} {payload!r}", peer=self.peer, code=code, payload=shown)
            session.requests += 1
            handler = handlers[code]
            if handler is None:
                calls[0] += 1
                answer: Any = UNKNOWN_COMMAND
            else:
                calls[code] += 1
                answer = handler(core, session, payload)
            if answer.__class__ is not bytes:
                if answer.__class__ is not Reply:
                    self._flush(out)
                    self.wait_for(as_reply(core.by_code[code], answer), (data, offset, None))
                    return
                reply, code, answer = answer, answer.code, answer.payload
                if code == Code.ERROR:
                    self.log_error(answer.decode("ascii"))
                elif reply.close:
                    out.append(_pack(code, len(answer)) + answer)
                    self._flush(out)
                    self.hang_up("client said QUIT")
                    return
            if verbose:
                log.info("{peer} <- frame {code} {payload!r}", peer=self.peer, code=code, payload=answer[:200])
            length = len(answer)
            if length < LARGE_PAYLOAD:
                out.append(_pack(code, length) + answer)
            else:
                self._flush(out)
                out = []
                self.transport.writeSequence((_pack(code, length), answer))
            unflushed += length
            if unflushed >= FLUSH_SIZE:
                self._flush(out)
                out = []
                unflushed = 0
                if self.writes_paused:
                    self.hold((data, offset, None))
                    return
        if out:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])
        if frames.too_large is not None:
            if not self.closing:
                self._too_large()
        elif offset < size:
            frames.cut(data, offset)  # holds the start of the next frame

    def _flush(self, out: list[bytes]) -> None:
        if out:
            self.send(b"".join(out) if len(out) > 1 else out[0])

    def _too_large(self) -> None:
        code, length = self.frames.too_large  # type: ignore[misc]
        self.send_error(errors.FRAME_TOO_LARGE)
        self.hang_up(f"frame of {length} bytes is over --max-frame ({self.max_frame})")
