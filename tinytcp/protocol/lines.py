"""Line splitting for text mode, with no I/O: reads in, complete lines out.

Each read is split once (``bytes.split``), with no per-line search of a growing buffer
(LineReceiver re-splits its buffer per line); the start of a line that has not ended yet is
held in a ``bytearray``, which costs about its own size however the bytes arrive (a list of
one-byte reads would cost ~80 bytes per byte).  A line may be ``max_line`` bytes long, not
counting its LF or the CR of a CRLF.
"""

from __future__ import annotations

#: LF as an int: ``LF in data`` is a byte search, where ``b"\n" in data`` first tries the
#: operand as an int and builds and drops a TypeError on every call
LF = 0x0A


class LineSplitter:
    """Feed reads, get the complete lines they finish (LF removed; a CR before it is kept)."""

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        #: the start of a line whose end has not arrived
        self.held = bytearray()
        #: a line longer than max_line arrived; feed returned the lines before it
        self.too_long = False
        #: every line the last feed returned is ASCII (one test per read, not one per line)
        self.ascii = True

    def feed(self, data: bytes) -> list[bytes]:
        """The lines ``data`` completes, in order; sets ``too_long`` and stops at a line over the limit."""
        held = self.held
        limit = self.max_line + 1  # + 1: the CR of a CRLF
        if LF not in data:
            held += data
            if len(held) > limit:
                self._overflow()
            return []
        if held:
            held += data
            data = bytes(held)
            held.clear()
        lines = data.split(b"\n")
        self.ascii = data.isascii()
        rest = lines.pop()
        if len(data) > limit:  # only a read this long can hold a line over the limit
            for index, line in enumerate(lines):
                if len(line) > self.max_line and (len(line) > limit or line[-1] != 13):
                    del lines[index:]
                    self._overflow()
                    return lines
            if len(rest) > limit:
                self._overflow()
                return lines
        if rest:
            held += rest
        return lines

    def _overflow(self) -> None:
        self.too_long = True
        self.held = bytearray()
