"""Strip telnet IAC command sequences from a byte stream.

telnet sends option negotiation (IAC DO/WILL ...), subnegotiation (IAC SB ... IAC SE) and
commands such as IAC IP on Ctrl+C.  None of them is text a user typed, so text mode drops
them before splitting lines; a sequence may be split across reads, hence the state.

One request is answered: telnet sends IAC DO TIMING-MARK after Ctrl+C (and after bytes it
takes for Ctrl+O, such as 0x8F inside a UTF-8 emoji) and shows no output until the server
answers IAC WILL TIMING-MARK, as telnetd does.  The caller sends that answer.

The work is done by compiled regular expressions, in C: a client whose lines are full of IAC
sequences must not cost the reactor many times what plain text costs (issue 12), which a
byte-by-byte Python loop did.  The semantics are those of the byte-at-a-time state machine
kept as the oracle in tests/test_wire.py.
"""

from __future__ import annotations

import re

IAC = 0xFF
TIMING_MARK = 6
WILL_TIMING_MARK = b"\xff\xfb\x06"
SB = 250
SE = 240
WILL, WONT, DO, DONT = 251, 252, 253, 254

DATA = 0  #: outside any sequence
COMMAND = 1  #: after IAC
OPTION = 2  #: after IAC WILL/WONT/DO/DONT
SUBNEGOTIATION = 3  #: inside IAC SB ...
SUBNEGOTIATION_IAC = 4  #: after IAC inside a subnegotiation
DO_OPTION = 5  #: after IAC DO

#: the body of a subnegotiation: inside it IAC takes the next byte with it (IAC IAC SE ends nothing)
_SB_BODY = rb"[^\xff]*(?:\xff[^\xf0][^\xff]*)*"
#: one complete sequence: IAC WILL/WONT/DO/DONT <option>, IAC SB ... IAC SE, IAC <any other byte>
_SEQUENCE = rb"\xff(?:[\xfb-\xfe][\x00-\xff]|[^\xfa-\xfe]|\xfa" + _SB_BODY + rb"\xff\xf0)"
#: a sequence the data ends inside (the only place one can be incomplete)
_TAIL = rb"\xff(?:[\xfb-\xfe]|\xfa" + _SB_BODY + rb"\xff?)?\Z"
#: runs of complete sequences (one match for many: the per-match cost dominates), or the
#: incomplete tail, captured so that the state after it can be told
_STRIP = re.compile(rb"(?:" + _SEQUENCE + rb")+|(" + _TAIL + rb")")
#: every sequence, one match each, capturing the option byte of IAC DO TIMING-MARK
_MARKS = re.compile(
    rb"\xff(?:\xfd(\x06)|[\xfb-\xfe][\x00-\xff]|[^\xfa-\xfe]|\xfa" + _SB_BODY + rb"(?:\xff\xf0|\xff?\Z))"
)
#: an IAC that may not start a sequence: the option byte 255 (or data byte 0xFB-0xFE before an IAC)
_OPTION_IAC = re.compile(rb"[\xfb-\xfe]\xff")
_SB_BODY_END = re.compile(_SB_BODY)

#: the bytes that put a fresh parse into each state: a read that starts inside a sequence is
#: parsed as that prefix plus the read, so the state is all that is carried between reads
_RESUME = {
    COMMAND: b"\xff",
    OPTION: b"\xff\xfb",
    DO_OPTION: b"\xff\xfd",
    SUBNEGOTIATION: b"\xff\xfa",
    SUBNEGOTIATION_IAC: b"\xff\xfa\xff",
}
_MARK = b"\xff\xfd\x06"
#: the two-byte commands telnet sends on its own (SE, NOP, DM, BRK, IP, AO, AYT, EC, EL, GA)
_COMMANDS = tuple(bytes((IAC, command)) for command in range(0xF0, 0xFA))
#: kinds of three-byte negotiation (IAC WILL 1, IAC DO 3...) removed one by one before a read
#: takes the general way: telnet negotiates a handful of options
_KINDS = 8


def strip_telnet(data: bytes, state: int = DATA) -> tuple[bytes, int, int]:
    """Return ``data`` without IAC sequences, the state to pass with the next read, and
    how many IAC DO TIMING-MARK requests it held.

    IAC IAC (an escaped 0xFF data byte) is dropped too: 0xFF never occurs in UTF-8 text.
    """
    if state != DATA:
        finished = _finish(data, state)
        if finished is None:
            data = _RESUME[state] + data
        else:  # the read completes the sequence the last one ended in: go on from there
            rest, marks = finished
            out, state, more = strip_telnet(rest)
            return out, state, marks + more
    elif IAC not in data:  # an int: a byte search without bytes-in-bytes' TypeError on the way
        return data, DATA, 0
    elif b"\xff\xfa" not in data and not _OPTION_IAC.search(data):
        # No subnegotiation, and no IAC as an option byte: every IAC starts a sequence, so the
        # commonest traffic can go kind by kind with bytes.replace, in C, where the regexes
        # would pay one match per sequence (a client that puts a sequence after every byte).
        # IAC IAC pairs go first, left to right as telnet reads them (no pair is left after),
        # then the two-byte commands, then each distinct three-byte negotiation; no removal
        # can make a new IAC, so the first IAC left is a sequence's start, and if it is cut by
        # the end of the read, its state is carried.  Anything else (an IAC before another
        # byte, many kinds of negotiation) takes the general way, from the start.
        stripped = data.replace(b"\xff\xff", b"")
        for command in _COMMANDS:
            stripped = stripped.replace(command, b"")
        marks = 0
        for _ in range(_KINDS):
            at = stripped.find(b"\xff")
            if at < 0:
                return stripped, DATA, marks
            sequence = stripped[at : at + 3]
            if len(sequence) == 1:  # the read ends after IAC
                return stripped[:at], COMMAND, marks
            if not WILL <= sequence[1] <= DONT:
                break
            if len(sequence) == 2:  # the read ends after IAC WILL/WONT/DO/DONT
                return stripped[:at], DO_OPTION if sequence[1] == DO else OPTION, marks
            if sequence == _MARK:
                marks = stripped.count(_MARK)
            stripped = stripped.replace(sequence, b"")
    parts = _STRIP.split(data)  # [data, tail-or-None, data, tail-or-None, ..., data]
    tail = parts[-2]
    out = b"".join(parts[::2])
    marks = data.count(_MARK)
    if marks and (b"\xff\xff" in data or b"\xff\xfa" in data or _OPTION_IAC.search(data)):
        # an IAC DO TIMING-MARK may lie inside another sequence: count sequence by sequence
        marks = _MARKS.findall(data).count(b"\x06")
    if tail is None:
        return out, DATA, marks
    return out, _state_after(tail), marks


def _finish(data: bytes, state: int) -> tuple[bytes, int] | None:
    """The rest of ``data`` after the end of the short sequence the last read ended in, and the
    DO TIMING-MARK it made (0 or 1); None for a subnegotiation or a read too short to end it."""
    if not data or state in (SUBNEGOTIATION, SUBNEGOTIATION_IAC):
        return None
    if state == OPTION:
        return data[1:], 0
    if state == DO_OPTION:
        return data[1:], int(data[0] == TIMING_MARK)
    command = data[0]  # state == COMMAND: after IAC
    if command == SB:
        return None
    if WILL <= command <= DONT:
        if len(data) < 2:
            return None
        return data[2:], int(command == DO and data[1] == TIMING_MARK)
    return data[1:], 0  # a two-byte command, or IAC IAC (an escaped 0xFF, dropped)


def _state_after(tail: bytes) -> int:
    """The state after an incomplete sequence at the end of a read."""
    if len(tail) == 1:
        return COMMAND
    command = tail[1]
    if command == SB:
        return SUBNEGOTIATION if _SB_BODY_END.match(tail, 2).end() == len(tail) else SUBNEGOTIATION_IAC  # type: ignore[union-attr]
    if command == DO:
        return DO_OPTION
    return OPTION
