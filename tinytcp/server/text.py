"""Text mode: the newline protocol people type with telnet or nc.

``TextProtocol`` is tinytcp's LineReceiver variant, keeping its spirit (one class per
framing, one hook per request, a bound on every buffer) but not its code, so it does not
inherit from it: it strips telnet IAC sequences before splitting, splits each read once
(:mod:`tinytcp.protocol.lines`) where LineReceiver re-splits its buffer per line, answers
all lines of one read with one write, and can stop between two lines (backpressure, or a
command that answers later) and go on from there, which LineReceiver's loop cannot.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

from tinytcp.protocol import errors
from tinytcp.protocol.core import Reply, as_reply, error
from tinytcp.protocol.lines import LineSplitter
from tinytcp.protocol.telnet import DATA, IAC, WILL_TIMING_MARK, strip_telnet
from tinytcp.protocol.wire import CRLF, TEXT_PREFIX, encode_text_reply
from tinytcp.server.connection import FLUSH_COUNT, FLUSH_SIZE, FOLD, SMALL, Connection, encoded_constants
from tinytcp.server.state import Server
from tinytcp.server.wirelog import log_lines


def is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


UNKNOWN = errors.UNKNOWN_COMMAND
UNKNOWN_LINE = encode_text_reply(error(UNKNOWN))
BAD_LINE = (errors.BAD_ENCODING, encode_text_reply(error(errors.BAD_ENCODING)))
#: a payload shorter than this makes a reply under SMALL bytes whatever its prefix
SMALL_ANSWER = SMALL - max(map(len, TEXT_PREFIX.values())) - len(CRLF)


class TextProtocol(Connection):
    """One text client: ``answer_from`` is the hook, called with the lines of each read."""

    mode = "text"
    encode = staticmethod(encode_text_reply)
    constants = encoded_constants(encode_text_reply)

    def __init__(self, server: Server) -> None:
        Connection.__init__(self, server)
        self.max_line = server.settings.max_line
        self.lines = LineSplitter(self.max_line)
        self._telnet = DATA
        self._verbose = server.settings.verbose
        # what the request loop reaches for on every read, one attribute away
        self._core = server.core
        self._by_name = server.core.by_name

    def connectionMade(self) -> None:
        if self.start():
            self.transport.write(b"WELCOME " + self.server.settings.banner.encode("utf-8") + CRLF)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lines.held = bytearray()
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
        # IAC (0xFF) tested as an int: `bytes in bytes` first tries the operand as an int and
        # builds and drops a TypeError (about 1,300 instructions), an int is tested at once
        if self._telnet != DATA or IAC in data:
            data, self._telnet, marks = strip_telnet(data, self._telnet)
            if marks:
                self.transport.write(WILL_TIMING_MARK * marks)
        lines = self.lines.feed(data)
        if lines:
            if self._verbose:
                log_lines(self.peer, lines)
            self.answer_from(iter(lines))
        elif self.lines.too_long:
            self._too_long()

    def answer_from(self, lines: Any) -> None:
        """Answer ``lines`` (an iterator over a list: its length hint tells how many are left),
        one write per FLUSH_COUNT replies or FLUSH_SIZE bytes; stop when the
        transport's buffer passes its mark or a reply is a Deferred, holding the rest.

        The loop dispatches by name through the core's table and encodes a handler's payload
        with its command's prefix, so no Reply is built on the way of a successful request;
        ``Core.text_request`` does the same in the plain way, and the property tests in
        tests/test_text_protocol.py hold this loop to it.  Requests are counted as one byte
        each in ``session.codes`` (``Core.tally``).
        """
        out: list[bytes] = []
        # replies since the last write come in runs of at most FLUSH_COUNT lines (see
        # BinaryProtocol.answer_from); a larger reply checks the sum, counting every piece in
        # ``out`` as a SMALL reply (a reply is one to three pieces: a bound from above)
        unflushed = 0
        core = self._core
        session = self.session
        codes = session.codes
        if len(codes) >= FOLD:
            core.tally(session)
        by_name = self._by_name
        all_ascii = self.lines.ascii  # the lines come from one read (a later read waits while they do)
        while True:
            # most reads hold one run or less, and are iterated as they are: no islice to build
            left = lines.__length_hint__()
            for line in lines if left <= FLUSH_COUNT else islice(lines, FLUSH_COUNT):
                parts = line.split(None, 1)
                if not parts:
                    continue  # a blank line gets no reply
                command = by_name.get(parts[0])
                if command is None:
                    command = by_name.get(parts[0].upper())
                if command is None or not (all_ascii or line.isascii() or is_utf8(line)):
                    # the loop's own errors: not UTF-8 (whatever the word), or no such command
                    codes.append(0)
                    name, reply = (UNKNOWN, UNKNOWN_LINE) if line.isascii() or is_utf8(line) else BAD_LINE
                    self.log_error(name)
                    out.append(reply)
                    continue
                codes.append(command.code)
                # read as an attribute, then called: command.handler(...) compiles to a method
                # lookup, which CPython 3.11 cannot specialize for a function held by the instance
                handler = command.handler
                answer = handler(core, session, parts[1].rstrip() if len(parts) > 1 else None)
                if answer.__class__ is bytes:
                    if answer and len(answer) < SMALL_ANSWER:
                        # the prefix, the payload and CRLF, joined once per write
                        out.append(command.text_prefix)
                        out.append(answer)
                        out.append(CRLF)
                        continue
                    data = command.text_prefix + answer + CRLF if answer else command.text_bare
                elif answer.__class__ is Reply:
                    data = self.encode_reply(answer)
                    if answer.close:
                        self.quit_after(out, data)
                        return
                else:
                    self._flush(out)
                    self.wait_for(as_reply(command, answer), lines)  # type: ignore[arg-type]
                    return
                out.append(data)
                if len(data) < SMALL:
                    continue
                unflushed += len(data)
                if unflushed + len(out) * SMALL >= FLUSH_SIZE:
                    self._flush(out)
                    out = []
                    unflushed = 0
                    if self.writes_paused:
                        self.hold(lines)
                        return
            if left <= FLUSH_COUNT:
                break  # the read is answered
            # a whole run answered: write it, fold the counts, and stop if the buffer is full
            self._flush(out)
            out = []
            unflushed = 0
            if len(codes) >= FOLD:  # a long read: fold as it goes, so no read leaves many held
                core.tally(session)
            if self.writes_paused:
                self.hold(lines)
                return
        if out:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])
        if self.lines.too_long and not self.closing:
            self._too_long()

    def _too_long(self) -> None:
        self.send_error(errors.LINE_TOO_LONG)
        self.hang_up(f"line longer than --max-line ({self.max_line} bytes)")
