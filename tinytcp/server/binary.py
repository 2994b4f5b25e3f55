"""Binary mode: the frame protocol for programs, on the same command core as text mode."""

from __future__ import annotations

from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from tinytcp.auth.commands import loggable_payload
from tinytcp.protocol import errors
from tinytcp.protocol.core import Code
from tinytcp.protocol.framing import FrameReceiver
from tinytcp.protocol.wire import encode_frame_reply
from tinytcp.server.state import Connection, Server

log = Logger(namespace="tinytcp")


class BinaryProtocol(Connection, FrameReceiver):
    """One binary client; the server sends nothing until asked."""

    mode = "binary"
    encode = staticmethod(encode_frame_reply)

    def __init__(self, server: Server) -> None:
        FrameReceiver.__init__(self)
        self.server = server
        self.max_frame = server.settings.max_frame
        # ECHO frames are their own replies; verbose mode logs each one and --require-login checks
        # each one, so they take the long way
        self.mirror_code = None if server.settings.verbose or server.settings.require_login else Code.ECHO

    def connectionMade(self) -> None:
        self.open_connection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._chunks = None
        self.session.requests += self.mirrored
        self.mirrored = 0
        self.close_connection(reason)

    def dataReceived(self, data: bytes) -> None:
        if not self.closing:
            self.activity()
            FrameReceiver.dataReceived(self, data)

    def frameReceived(self, code: int, payload: bytes) -> None:
        verbose = self.server.settings.verbose
        if verbose:
            shown = loggable_payload(code, payload[:200])
            log.info("{peer} -> frame {code} {payload!r}", peer=self.peer, code=code, payload=shown)
        reply = self.server.core.frame_request(self.session, code, payload)
        if reply.code == Code.ERROR:
            log.info("{peer}: ERROR {name}", peer=self.peer, name=reply.payload.decode("ascii"))
        if verbose:
            log.info("{peer} <- frame {code} {payload!r}", peer=self.peer, code=reply.code, payload=reply.payload[:200])
        self.replies.append(encode_frame_reply(reply))
        if reply.close:
            self.flush()
            self.hang_up("client said QUIT")

    def frameTooLarge(self, code: int, length: int) -> None:
        self._chunks = None
        self.send_error(errors.FRAME_TOO_LARGE)
        self.hang_up(f"frame of {length} bytes is over --max-frame ({self.max_frame})")
