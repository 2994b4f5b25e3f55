"""Text mode: the newline protocol people type with telnet or nc.

``TextProtocol`` is tinytcp's LineReceiver variant, keeping its spirit (one class per
framing, one hook per request, a bound on every buffer) but not its code, so it does not
inherit from it: it strips telnet IAC sequences before splitting, splits each read once
(:mod:`tinytcp.protocol.lines`) where LineReceiver re-splits its buffer per line, answers
all lines of one read with one write, and can stop between two lines (backpressure, or a
command that answers later) and go on from there, which LineReceiver's loop cannot.
"""

from __future__ import annotations

from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from tinytcp.auth.commands import loggable_line
from tinytcp.protocol import errors
from tinytcp.protocol.core import Code, Reply, error
from tinytcp.protocol.lines import LineSplitter
from tinytcp.protocol.telnet import DATA, WILL_TIMING_MARK, strip_telnet
from tinytcp.protocol.wire import CRLF, encode_text_reply, parse_text_request
from tinytcp.server.connection import FLUSH_SIZE, Connection
from tinytcp.server.state import Server

log = Logger(namespace="tinytcp")


class TextProtocol(Connection):
    """One text client: ``line(line)`` is the hook called once per request line."""

    mode = "text"
    encode = staticmethod(encode_text_reply)

    def __init__(self, server: Server) -> None:
        Connection.__init__(self, server)
        self.max_line = server.settings.max_line
        self.lines = LineSplitter(self.max_line)
        self._telnet = DATA
        self._verbose = server.settings.verbose

    def connectionMade(self) -> None:
        if self.start():
            self.transport.write(b"WELCOME " + self.server.settings.banner.encode("utf-8") + CRLF)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lines.held = bytearray()
        Connection.connectionLost(self, reason)

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        self.activity()
        if self._telnet != DATA or b"\xff" in data:
            data, self._telnet, marks = strip_telnet(data, self._telnet)
            if marks:
                self.transport.write(WILL_TIMING_MARK * marks)
        lines = self.lines.feed(data)
        if self.lines.too_long:
            self.then = self._too_long
        self.serve(lines)

    def answer_from(self, lines: list[bytes], index: int) -> None:
        """Answer ``lines[index:]`` in one write per FLUSH_SIZE bytes of replies; stop when the
        transport's buffer passes its mark or a reply is a Deferred, holding the rest."""
        out: list[bytes] = []
        size = 0
        line_reply = self.line
        for index in range(index, len(lines)):  # noqa: B020 - the loop goes on from index
            reply = line_reply(lines[index])
            if reply is None:
                continue
            if reply.__class__ is not Reply:
                self._flush(out)
                self.wait_for(reply, lines, index + 1)  # type: ignore[arg-type]
                return
            data = encode_text_reply(reply)
            out.append(data)
            if reply.close:
                self._flush(out)
                self.hang_up("client said QUIT")
                return
            size += len(data)
            if size >= FLUSH_SIZE:
                self._flush(out)
                out = []
                size = 0
                if self.writes_paused:
                    self.hold(lines, index + 1)
                    return
        self._flush(out)
        self.answered()

    def line(self, line: bytes) -> Reply | None:
        """Answer one line (LF removed); None for a blank line, which gets no reply."""
        request = parse_text_request(line)
        if request is None:
            return None
        if self._verbose:
            log.info("{peer} -> {line!r}", peer=self.peer, line=loggable_line(line.rstrip(b"\r")))
        if line.isascii():
            reply = self.server.core.text_request(self.session, request.word, request.argument)
        else:
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                self.session.requests += 1
                reply = error(errors.BAD_ENCODING)
            else:
                reply = self.server.core.text_request(self.session, request.word, request.argument)
        if reply.__class__ is Reply and reply.code == Code.ERROR:
            self.log_error(reply.payload.decode("ascii"))
        if self._verbose and reply.__class__ is Reply:
            log.info("{peer} <- {reply!r}", peer=self.peer, reply=encode_text_reply(reply).rstrip(b"\r\n"))
        return reply

    def _flush(self, out: list[bytes]) -> None:
        if out:
            self.send(b"".join(out) if len(out) > 1 else out[0])

    def _too_long(self) -> None:
        self.send_error(errors.LINE_TOO_LONG)
        self.hang_up(f"line longer than --max-line ({self.max_line} bytes)")
