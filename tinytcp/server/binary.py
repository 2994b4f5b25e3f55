"""Binary mode: the frame protocol for programs, on the same command core as text mode.

Frames are cut by :mod:`tinytcp.protocol.framing`; ``frame(code, payload)`` is the hook
called once per request frame.  The replies to the frames of one read go out in one write
(a large payload is written as it is, with ``writeSequence``, never copied into a frame).
"""

from __future__ import annotations

from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from tinytcp.auth.commands import loggable_payload
from tinytcp.protocol import errors
from tinytcp.protocol.core import Code, Reply
from tinytcp.protocol.framing import FrameSplitter
from tinytcp.protocol.wire import HEADER, encode_frame_reply
from tinytcp.server.connection import FLUSH_SIZE, Connection
from tinytcp.server.state import Server

log = Logger(namespace="tinytcp")

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

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        self.activity()
        frames = self.frames.feed(data)
        if self.frames.too_large is not None:
            self.then = self._too_large
        self.serve(frames)

    def answer_from(self, frames: list[bytes | int], index: int) -> None:
        """Answer the frames from ``frames[index]`` on (a flat ``[code, payload, ...]`` list);
        stop when the transport's buffer passes its mark or a reply is a Deferred."""
        out: list[bytes] = []
        size = 0
        frame_reply = self.frame
        pack = HEADER.pack
        for index in range(index, len(frames), 2):  # noqa: B020 - the loop goes on from index
            reply = frame_reply(frames[index], frames[index + 1])  # type: ignore[arg-type]
            if reply.__class__ is not Reply:
                self._flush(out)
                self.wait_for(reply, frames, index + 2)  # type: ignore[arg-type]
                return
            payload = reply.payload
            length = len(payload)
            if length < LARGE_PAYLOAD:
                out.append(pack(reply.code, length) + payload)
            else:
                self._flush(out)
                out = []
                self.transport.writeSequence((pack(reply.code, length), payload))
            if reply.close:
                self._flush(out)
                self.hang_up("client said QUIT")
                return
            size += length
            if size >= FLUSH_SIZE:
                self._flush(out)
                out = []
                size = 0
                if self.writes_paused:
                    self.hold(frames, index + 2)
                    return
        self._flush(out)
        self.answered()

    def frame(self, code: int, payload: bytes) -> Reply:
        """Answer one request frame."""
        if self._verbose:
            shown = loggable_payload(code, payload[:200])
            log.info("{peer} -> frame {code} {payload!r}", peer=self.peer, code=code, payload=shown)
        reply = self.server.core.frame_request(self.session, code, payload)
        if reply.__class__ is Reply:
            if reply.code == Code.ERROR:
                self.log_error(reply.payload.decode("ascii"))
            if self._verbose:
                log.info(
                    "{peer} <- frame {code} {payload!r}", peer=self.peer, code=reply.code, payload=reply.payload[:200]
                )
        return reply

    def _flush(self, out: list[bytes]) -> None:
        if out:
            self.send(b"".join(out) if len(out) > 1 else out[0])

    def _too_large(self) -> None:
        code, length = self.frames.too_large  # type: ignore[misc]
        self.send_error(errors.FRAME_TOO_LARGE)
        self.hang_up(f"frame of {length} bytes is over --max-frame ({self.max_frame})")
