"""What a command answers, as the codecs see it: a code, payload bytes, and whether to close."""

from __future__ import annotations

from typing import NamedTuple

from tinytcp.protocol import errors


class Code:
    """Binary command codes; a reply carries the code of the command that made it."""

    ECHO = 1
    REVERSE = 2
    QUIT = 3
    TIME = 4
    HELP = 5
    NICK = 6
    SAY = 7
    WHO = 8
    INFO = 9
    REGISTER = 10
    LOGIN = 11
    LOGOUT = 12
    #: a message the server pushes on its own (chat, notices); never a reply to a request
    MSG = 0x80
    ERROR = 0xFF


class Reply(NamedTuple):
    """What a command answers: its code, its payload bytes, and whether to hang up after it."""

    code: int
    payload: bytes
    close: bool = False


def error(name: str) -> Reply:
    """The reply for error ``name`` (one of :mod:`tinytcp.protocol.errors`)."""
    return _ERROR_REPLIES.get(name) or Reply(Code.ERROR, name.encode("ascii"))


_ERROR_REPLIES = {name: Reply(Code.ERROR, name.encode("ascii")) for name in errors.ERRORS}
BYE = Reply(Code.QUIT, b"BYE", close=True)
#: the replies that are constants (every documented error, BYE): the request loops encode
#: each once, with the error's name beside it
CONSTANT_REPLIES: dict[Reply, str | None] = {reply: name for name, reply in _ERROR_REPLIES.items()}
CONSTANT_REPLIES[BYE] = None
