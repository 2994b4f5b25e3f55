"""Text mode: the newline protocol people type with telnet or nc.

A ``LineReceiver`` subclass whose ``dataReceived`` splits every complete line of one read
with offsets into that read (LineReceiver's own loop re-splits its buffer per line), takes
LF or CRLF, strips telnet IAC sequences, and answers all lines of one read with one write.
"""

from __future__ import annotations

import functools
import re

from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from tinytcp.auth.commands import loggable_line
from tinytcp.protocol import errors
from tinytcp.protocol.core import Code, Reply, error
from tinytcp.protocol.telnet import DATA, WILL_TIMING_MARK, strip_telnet
from tinytcp.protocol.wire import CRLF, encode_text_reply, parse_text_request
from tinytcp.server.state import Connection, Server

log = Logger(namespace="tinytcp")


@functools.lru_cache(maxsize=8)
def echo_lines(max_line: int) -> re.Pattern[bytes]:
    """Lines ``ECHO <ASCII text>`` that need no trimming, none longer than ``max_line``: for
    each, the general path's reply is the line itself (tests/test_text_protocol.py checks)."""
    middle = max(0, max_line - 7)
    return re.compile(rb"(?:ECHO [\x21-\x7e](?:[\x00-\x09\x0b-\x7f]{0,%d}[\x21-\x7e])?\r?\n)+" % middle)


class TextProtocol(Connection, LineReceiver):
    """One text client."""

    mode = "text"
    delimiter = CRLF
    encode = staticmethod(encode_text_reply)

    def __init__(self, server: Server) -> None:
        self.server = server
        self.max_line = server.settings.max_line
        #: answer plain ECHO lines without the core; verbose mode logs each one and --require-login
        #: checks each one, so they take the long way
        self.echo_fast = not server.settings.verbose and not server.settings.require_login
        #: a read made only of such lines is answered whole, with no loop per line
        self.echo_lines = echo_lines(self.max_line) if self.echo_fast and self.max_line >= 7 else None
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._telnet = DATA

    def connectionMade(self) -> None:
        if self.open_connection():
            self.transport.write(b"WELCOME " + self.server.settings.banner.encode("utf-8") + CRLF)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._pending = []
        self.close_connection(reason)

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        self.activity()
        last = len(data) - 1
        if self.echo_fast and data.find(b"\n") == last and not self._pending and self._telnet == DATA:
            # one whole line, the commonest read of a request/response client: a plain
            # ASCII ECHO (the loop's test below; ASCII also means no telnet command) is
            # answered with the line itself, CRLF-ended
            stop = last - 1 if data[last - 1 : last] == b"\r" else last
            if (
                5 < stop <= self.max_line
                and data.startswith(b"ECHO ")
                and data[5] > 32
                and data[stop - 1] > 32
                and data.isascii()
            ):
                self.session.requests += 1
                self.send(data if stop < last else data.replace(b"\n", CRLF))
                return
        if self._telnet != DATA or b"\xff" in data:
            data, self._telnet, marks = strip_telnet(data, self._telnet)
            if marks:
                self.transport.write(WILL_TIMING_MARK * marks)
        if b"\n" not in data:
            if data:
                self._hold(data)
            return
        if self._pending:
            self._pending.append(data)
            data = b"".join(self._pending)
            self._pending = []
            self._pending_size = 0
        if self.echo_lines is not None:
            end = data.rfind(b"\n") + 1
            if self.echo_lines.fullmatch(data, 0, end):
                # every complete line is a plain ECHO: the replies are those lines, CRLF-ended
                self.session.requests += data.count(b"\n", 0, end)
                self.send(data[:end].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
                if end < len(data):
                    self._hold(data[end:])
                return
        lines = data.split(b"\n")
        rest = lines.pop()
        out: list[bytes] = []
        append = out.append
        max_line = self.max_line
        echo = self.echo_fast
        ascii_read = echo and data.isascii()
        echoed = 0
        for line in lines:
            if line[-1:] == b"\r":
                line = line[:-1]
            size = len(line)
            if size > max_line:
                self.session.requests += echoed
                self._flush(out)
                self._too_long()
                return
            # the common case, ECHO <text> in plain ASCII with no blanks to trim: the reply
            # is the request line itself; anything else takes the general path
            if (
                echo
                and size > 5
                and line.startswith(b"ECHO ")
                and line[5] > 32
                and line[-1] > 32
                and (ascii_read or line.isascii())
            ):
                append(line + CRLF)
                echoed += 1
                continue
            reply = self.line(line)
            if reply is not None:
                out.append(encode_text_reply(reply))
                if reply.close:
                    self.session.requests += echoed
                    self._flush(out)
                    self.hang_up("client said QUIT")
                    return
        self.session.requests += echoed
        self._flush(out)
        if rest:
            self._hold(rest)

    def line(self, line: bytes) -> Reply | None:
        """Answer one line (delimiter removed); None for a blank line, which gets no reply."""
        request = parse_text_request(line)
        if request is None:
            return None
        verbose = self.server.settings.verbose
        if verbose:
            log.info("{peer} -> {line!r}", peer=self.peer, line=loggable_line(line.rstrip(b"\r")))
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            self.session.requests += 1
            reply = error(errors.BAD_ENCODING)
        else:
            reply = self.server.core.text_request(self.session, request.word, request.argument)
        if reply.code == Code.ERROR:
            log.info("{peer}: ERROR {name}", peer=self.peer, name=reply.payload.decode("ascii"))
        if verbose:
            log.info("{peer} <- {reply!r}", peer=self.peer, reply=encode_text_reply(reply).rstrip(b"\r\n"))
        return reply

    def _hold(self, partial: bytes) -> None:
        """Keep the start of a line until its end arrives, within --max-line."""
        self._pending.append(partial)
        self._pending_size += len(partial)
        if self._pending_size > self.max_line + 1:  # + 1: the CR of a CRLF
            self._too_long()

    def _flush(self, out: list[bytes]) -> None:
        if out:
            self.send(b"".join(out) if len(out) > 1 else out[0])

    def _too_long(self) -> None:
        self._pending = []
        self._pending_size = 0
        self.send_error(errors.LINE_TOO_LONG)
        self.hang_up(f"line longer than --max-line ({self.max_line} bytes)")
