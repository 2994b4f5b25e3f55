"""Strip telnet IAC command sequences from a byte stream.

telnet sends option negotiation (IAC DO/WILL ...), subnegotiation (IAC SB ... IAC SE) and
commands such as IAC IP on Ctrl+C.  None of them is text a user typed, so text mode drops
them before splitting lines; a sequence may be split across reads, hence the state.

One request is answered: telnet sends IAC DO TIMING-MARK after Ctrl+C (and after bytes it
takes for Ctrl+O, such as 0x8F inside a UTF-8 emoji) and shows no output until the server
answers IAC WILL TIMING-MARK, as telnetd does.  The caller sends that answer.
"""

from __future__ import annotations

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


def strip_telnet(data: bytes, state: int = DATA) -> tuple[bytes, int, int]:
    """Return ``data`` without IAC sequences, the state to pass with the next read, and
    how many IAC DO TIMING-MARK requests it held.

    IAC IAC (an escaped 0xFF data byte) is dropped too: 0xFF never occurs in UTF-8 text.
    """
    if state == DATA and b"\xff" not in data:
        return data, DATA, 0
    out = bytearray()
    marks = 0
    i, n = 0, len(data)
    while i < n:
        if state == DATA:
            j = data.find(b"\xff", i)
            if j < 0:
                out += data[i:]
                break
            out += data[i:j]
            i = j + 1
            state = COMMAND
            continue
        byte = data[i]
        i += 1
        if state == COMMAND:
            if byte == DO:
                state = DO_OPTION
            elif WILL <= byte <= DONT:
                state = OPTION
            elif byte == SB:
                state = SUBNEGOTIATION
            else:
                state = DATA
        elif state == OPTION:
            state = DATA
        elif state == DO_OPTION:
            marks += byte == TIMING_MARK
            state = DATA
        elif state == SUBNEGOTIATION:
            if byte == IAC:
                state = SUBNEGOTIATION_IAC
        else:
            state = DATA if byte == SE else SUBNEGOTIATION
    return bytes(out), state, marks
