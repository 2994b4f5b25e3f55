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

    def connectionMade(self) -> None:
        self.start()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.frames.held = bytearray()
        Connection.connectionLost(self, reason)

    def receive(self, data: bytes) -> None:
        if self.frames.held:
            joined = self.frames.join(data)
            if joined is None:
                return
            data = joined
        self.answer_from((data, 0))

    def answer_from(self, pending: tuple[bytes, int]) -> None:
        """Answer the frames of ``data`` from ``offset`` on (``pending``), cutting them inline
        as ``FrameSplitter.cut`` does; stop when the transport's buffer passes its mark or a
        reply is a Deferred, holding ``(data, offset)`` of the next frame.

        As in text mode, the loop dispatches through the core's table and frames a handler's
        payload with its command's code, with no Reply on the way of a successful request;
        ``Core.frame_request`` is the plain way, and the property tests hold the loop to it.
        """
        out: list[bytes] = []
        unflushed = 0
        core = self.server.core
        session = self.session
        handlers = core.frame_handlers
        calls = core.calls
        pack = HEADER.pack
        verbose = self._verbose
        data, offset = pending
        frames = self.frames
        size = len(data)
        unpack = HEADER.unpack_from
        max_frame = frames.max_frame
        code: Any
        while size - offset >= HEADER_SIZE:
            code, length = unpack(data, offset)
            if length > max_frame:
                frames.too_large = (code, length)
                break
            end = offset + HEADER_SIZE + length
            if end > size:
                break
            payload: Any = data[offset + HEADER_SIZE : end]
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
                    self.wait_for(as_reply(core.by_code[code], answer), (data, offset))
                    return
                reply, code, answer = answer, answer.code, answer.payload
                if code == Code.ERROR:
                    self.log_error(answer.decode("ascii"))
                elif reply.close:
                    out.append(pack(code, len(answer)) + answer)
                    self._flush(out)
                    self.hang_up("client said QUIT")
                    return
            if verbose:
                log.info("{peer} <- frame {code} {payload!r}", peer=self.peer, code=code, payload=answer[:200])
            length = len(answer)
            if length < LARGE_PAYLOAD:
                out.append(pack(code, length) + answer)
            else:
                self._flush(out)
                out = []
                self.transport.writeSequence((pack(code, length), answer))
            unflushed += length
            if unflushed >= FLUSH_SIZE:
                self._flush(out)
                out = []
                unflushed = 0
                if self.writes_paused:
                    self.hold((data, offset))
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
