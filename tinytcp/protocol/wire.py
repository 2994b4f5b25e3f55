"""Wire codecs shared by the server and the client: text lines and binary frames.

Text: a request is one line ending in LF or CRLF; a reply is ``<WORD> <payload>`` + CRLF.
Binary: every message is ``[code u8][length u32 big-endian][payload]``.
See docs/protocol.md for the byte-level contract.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from tinytcp.protocol.reply import Code, Reply

CRLF = b"\r\n"

#: text-mode reply prefix per code; QUIT's reply is the bare word BYE (its payload).
TEXT_PREFIX: dict[int, bytes] = {
    Code.ECHO: b"ECHO ",
    Code.REVERSE: b"REVERSE ",
    Code.TIME: b"TIME ",
    Code.HELP: b"HELP ",
    Code.QUIT: b"",
    Code.NICK: b"NICK ",
    Code.SAY: b"SAID ",
    Code.WHO: b"WHO ",
    Code.INFO: b"INFO ",
    Code.REGISTER: b"REGISTER ",
    Code.LOGIN: b"LOGIN ",
    Code.LOGOUT: b"LOGOUT ",
    Code.ERROR: b"ERROR ",
    Code.MSG: b"MSG ",
}
#: the reverse map, for clients reading text replies.
TEXT_WORD: dict[bytes, int] = {prefix.strip(): code for code, prefix in TEXT_PREFIX.items() if prefix}

HEADER = struct.Struct(">BI")
HEADER_SIZE = HEADER.size
MAX_LENGTH = 0xFFFFFFFF


class TextRequest(NamedTuple):
    """A parsed text line: the command word as sent, and the argument (None when absent)."""

    word: bytes
    argument: bytes | None


def parse_text_request(line: bytes) -> TextRequest | None:
    """Split a line (delimiter removed) into word and argument; None for a blank line.

    Blanks around the line are ignored; the argument is the rest of the line after the
    first run of blanks, kept as typed.  Blanks are ASCII whitespace.
    """
    parts = line.split(None, 1)
    if not parts:
        return None
    if len(parts) == 1:
        return TextRequest(parts[0], None)
    return TextRequest(parts[0], parts[1].rstrip())


def encode_text_reply(reply: Reply) -> bytes:
    """One reply as a CRLF-terminated text line (a bare word when the payload is empty)."""
    if reply.payload:
        return TEXT_PREFIX[reply.code] + reply.payload + CRLF
    return TEXT_PREFIX[reply.code].rstrip(b" ") + CRLF


def parse_text_reply(line: bytes) -> Reply:
    """A server line (delimiter removed) as a Reply; lines with an unknown word keep code 0."""
    word, _, rest = line.partition(b" ")
    if word == b"WHO" and not rest:
        return Reply(Code.WHO, b"")
    if word == b"BYE" and not rest:
        return Reply(Code.QUIT, b"BYE")
    if word == b"LOGOUT" and not rest:
        return Reply(Code.LOGOUT, b"")
    code = TEXT_WORD.get(word)
    if code is None:
        return Reply(0, line)
    return Reply(code, rest)


def encode_frame(code: int, payload: bytes) -> bytes:
    """One binary frame."""
    return HEADER.pack(code, len(payload)) + payload


def encode_frame_reply(reply: Reply) -> bytes:
    """One reply as a binary frame."""
    return HEADER.pack(reply.code, len(reply.payload)) + reply.payload
