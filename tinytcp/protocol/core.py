"""The command core: a parsed request in, a reply out, and no I/O.

Both wire formats call this module, so a command behaves the same over text lines and
binary frames, and every command is tested without a reactor.  A reply is a
``(code, payload, close)`` triple; the codecs in :mod:`tinytcp.protocol.wire` turn it into bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Union

from tinytcp.protocol import errors
from tinytcp.protocol.chat import Room
from tinytcp.protocol.reply import BYE, Code, Reply, error
from tinytcp.protocol.wire import CRLF, TEXT_PREFIX, encode_text_reply

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

_graphemes: Callable[[str], list[str]] | None = None


def reverse_text(text: str) -> str:
    """Reverse user-perceived characters, so combining marks and emoji sequences survive."""
    if text.isascii() and "\r" not in text:  # CR LF is one grapheme
        return text[::-1]
    return "".join(reversed((_graphemes or _load_graphemes())(text)))


def _load_graphemes() -> Callable[[str], list[str]]:
    """``regex``'s ``\\X`` (grapheme clusters), loaded at the first text that needs it.

    ``regex`` takes about 10 ms to import; the client imports this module for the command
    table, and ASCII text never needs it.
    """
    global _graphemes
    import regex

    _graphemes = regex.compile(r"\X").findall
    return _graphemes


def local_now() -> datetime:
    """The current local time with its UTC offset."""
    return datetime.now().astimezone()


def no_push(data: bytes) -> None:
    """Where pushed messages go for a session no connection has claimed (core tests)."""


class Session:
    """What the core knows of one connection: counters, chat identity, and how to push to it.

    ``address`` (the peer's IAddress) and ``tls`` tell the account commands whether
    credentials may cross this connection; ``user`` is the logged-in user name.
    """

    __slots__ = (
        "requests",
        "codes",
        "nick",
        "guest",
        "mode",
        "encode",
        "push",
        "say_tokens",
        "say_stamp",
        "address",
        "tls",
        "user",
    )

    def __init__(
        self,
        mode: str = "text",
        encode: Callable[[Reply], bytes] = encode_text_reply,
        push: Callable[[bytes], None] = no_push,
    ) -> None:
        self.requests = 0
        #: the command codes of requests answered but not yet folded into ``requests`` and
        #: the core's ``calls`` (``Core.tally``): the request loops append one byte per
        #: request, where two counter updates would each allocate a new int past 256
        #: (0 for a request that named no command)
        self.codes = bytearray()
        self.nick: bytes | None = None
        self.guest = 0
        self.say_tokens = 0.0
        self.say_stamp = 0.0
        self.mode = mode
        self.encode = encode
        self.push = push
        self.address: Any = None
        self.tls = False
        self.user: bytes | None = None


#: what a handler answers: its payload, a Reply, or a Deferred that fires with one of those
Answer = Union[bytes, Reply, "Deferred[Any]"]
Handler = Callable[["Core", Session, "bytes | None"], Answer]


@dataclass(frozen=True)
class Command:
    """One command: its name and binary code, usage text for HELP, and its handler."""

    name: str
    code: int
    usage: str
    handler: Handler
    aliases: tuple[str, ...] = ()
    #: what a text reply with this command's code starts with (``ECHO ``, ``SAID ``...)
    text_prefix: bytes = field(init=False)
    #: the whole text reply when the payload is empty (``WHO``, ``BYE``)
    text_bare: bytes = field(init=False)

    def __post_init__(self) -> None:
        prefix = TEXT_PREFIX.get(self.code, self.name.encode("ascii") + b" ")
        object.__setattr__(self, "text_prefix", prefix)
        object.__setattr__(self, "text_bare", prefix.rstrip(b" ") + CRLF)


def _echo(core: Core, session: Session, argument: bytes | None) -> Answer:
    if argument is None:
        return error(errors.BAD_ARGUMENTS)
    return argument


def _reverse(core: Core, session: Session, argument: bytes | None) -> Answer:
    if argument is None:
        return error(errors.BAD_ARGUMENTS)
    try:
        text = argument.decode("utf-8")
    except UnicodeDecodeError:
        return error(errors.BAD_ENCODING)
    return reverse_text(text).encode("utf-8")


def _time(core: Core, session: Session, argument: bytes | None) -> Answer:
    if argument:
        return error(errors.BAD_ARGUMENTS)
    return core.clock().isoformat(timespec="seconds").encode("ascii")


def _help(core: Core, session: Session, argument: bytes | None) -> Answer:
    if not argument:
        return core.help_list
    usage = core.usages.get(argument.upper())
    if usage is None:
        return error(errors.UNKNOWN_COMMAND)
    return usage


def _quit(core: Core, session: Session, argument: bytes | None) -> Answer:
    if argument:
        return error(errors.BAD_ARGUMENTS)
    return BYE


def _nick(core: Core, session: Session, argument: bytes | None) -> Answer:
    if argument is None or not core.room.valid(argument):
        return error(errors.BAD_ARGUMENTS)
    return core.room.take(session, argument)


def _say(core: Core, session: Session, argument: bytes | None) -> Answer:
    if not argument or 10 in argument or 13 in argument:  # LF, CR (ints: no bytes-in-bytes search)
        # a message is one line for text clients: a binary SAY must not forge more
        return error(errors.BAD_ARGUMENTS)
    try:
        argument.decode("utf-8")
    except UnicodeDecodeError:
        return error(errors.BAD_ENCODING)
    if not core.room.may_say(session):
        return error(errors.RATE_LIMITED)
    said = core.room.say(session, argument)
    return b"%d" % said if isinstance(said, int) else said


def _who(core: Core, session: Session, argument: bytes | None) -> Answer:
    if argument:
        return error(errors.BAD_ARGUMENTS)
    return core.room.who()


def _info(core: Core, session: Session, argument: bytes | None) -> Answer:
    fields = core.status(argument or None)
    if fields is None:
        return error(errors.BAD_ARGUMENTS)
    return fields


COMMANDS: tuple[Command, ...] = (
    Command("TIME", Code.TIME, "TIME: the server's local time, ISO 8601 with its UTC offset", _time),
    Command("ECHO", Code.ECHO, "ECHO <text>: send the text back unchanged", _echo),
    Command(
        "REVERSE",
        Code.REVERSE,
        "REVERSE <text> (alias REV): the text reversed, character by character as a reader sees them",
        _reverse,
        aliases=("REV",),
    ),
    Command("HELP", Code.HELP, "HELP [command]: the command names, or the usage of one command", _help),
    Command("NICK", Code.NICK, "NICK <name>: chat as name (1-32 letters, digits, _ or -)", _nick),
    Command("SAY", Code.SAY, "SAY <text>: send MSG <your nick> <text> to every other client", _say),
    Command("WHO", Code.WHO, "WHO: the nicks in the chat, then +N for the guests", _who),
    Command(
        "INFO",
        Code.INFO,
        "INFO [section]: server status as key:value fields; sections: server clients stats chat",
        _info,
    ),
    Command(
        "QUIT", Code.QUIT, "QUIT (alias EXIT): the server says BYE and closes the connection", _quit, aliases=("EXIT",)
    ),
)


class Core:
    """Looks commands up by name (text mode) or code (binary mode) and runs them."""

    def __init__(
        self,
        clock: Callable[[], datetime] = local_now,
        commands: tuple[Command, ...] = COMMANDS,
        room: Room | None = None,
    ) -> None:
        self.clock = clock
        self.room = room or Room()
        self.commands = commands
        self.by_name: dict[bytes, Command] = {}
        for command in commands:
            for name in (command.name, *command.aliases):
                self.by_name[name.encode("ascii")] = command
        self.by_code: dict[int, Command] = {command.code: command for command in commands}
        #: handler per binary code (None: no such command), a list so that dispatch is one index
        self.frame_handlers: list[Handler | None] = [None] * 256
        for code, command in self.by_code.items():
            self.frame_handlers[code] = command.handler
        self.help_list = " ".join(command.name for command in commands).encode("ascii")
        #: HELP <name>'s payload by command name or alias, encoded once
        self.usages = {name: command.usage.encode("utf-8") for name, command in self.by_name.items()}
        #: requests per command code, for INFO; [0] counts requests that named no command
        #: (a list index, not a dict lookup: it is bumped on every request the core runs)
        self.calls = [0] * 256
        #: INFO's payload for a section (None: all), or None for no such section; the
        #: server replaces this with tinytcp.ops.status.info, which knows more than the core
        self.status: Callable[[bytes | None], bytes | None] = self.chat_status

    def tally(self, session: Session) -> None:
        """Fold the codes the request loops recorded in ``session.codes`` into
        ``session.requests`` and ``calls``: the loops do when a session holds a few hundred,
        INFO and /metrics for every connection before they read the counters, and a closing
        connection before its totals are kept."""
        codes = session.codes
        count = len(codes)
        if not count:
            return
        session.requests += count
        calls = self.calls
        first = codes[0]
        same = codes.count(first)
        calls[first] += same
        if same != count:
            for code in set(codes):
                if code != first:
                    calls[code] += codes.count(code)
        codes.clear()

    def chat_status(self, section: bytes | None) -> bytes | None:
        """INFO from what the core alone knows: the chat room."""
        if section is not None and section.lower() != b"chat":
            return None
        room = self.room
        return b"members:%d nicks:%d guests:%d" % (
            len(room.members),
            len(room.nicks),
            len(room.members) - len(room.nicks),
        )

    def text_request(self, session: Session, word: bytes, argument: bytes | None) -> Reply | Deferred[Any]:
        """Run the command named ``word`` (any case); ``argument`` is None when the line has none."""
        session.requests += 1
        command = self.by_name.get(word.upper())
        if command is None:
            self.calls[0] += 1
            return error(errors.UNKNOWN_COMMAND)
        self.calls[command.code] += 1
        handler = command.handler  # an attribute load, not a method lookup (see TextProtocol.answer_from)
        return as_reply(command, handler(self, session, argument))

    def frame_request(self, session: Session, code: int, payload: bytes) -> Reply | Deferred[Any]:
        """Run the command with binary ``code``; the payload is its argument, possibly empty."""
        session.requests += 1
        command = self.by_code.get(code)
        if command is None:
            self.calls[0] += 1
            return error(errors.UNKNOWN_COMMAND)
        self.calls[command.code] += 1
        handler = command.handler
        return as_reply(command, handler(self, session, payload))


def as_reply(command: Command, answer: Answer) -> Reply | Deferred[Any]:
    """A handler's answer as a Reply (or a Deferred that fires with one)."""
    if isinstance(answer, bytes):
        return Reply(command.code, answer)
    if isinstance(answer, Reply):
        return answer
    return answer.addCallback(lambda later: as_reply(command, later))
