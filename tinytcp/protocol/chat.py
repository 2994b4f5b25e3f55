"""The chat room: who is connected, who has a nick, and delivery of pushed messages.

Joining and leaving cost O(1) for clients that never chat, so connection churn never
fans out; presence notices go only to clients that have taken a nick.  A message is encoded
once per wire format, whoever receives it.

The room's rules keep one member from hurting the others: a SAY costs one push per member,
so each member may say at most ``rate`` messages a second after a burst of ``burst``
(a token bucket, as IRC servers limit floods); text that reaches other people's terminals
carries no control characters but TAB (C0 and DEL become caret notation, ``^[``; C1 controls
become U+FFFD); and guest names (``guest<N>``) cannot be taken as nicks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from tinytcp.protocol import errors
from tinytcp.protocol.reply import Code, Reply, error

NICK = re.compile(rb"[A-Za-z0-9_-]{1,32}\Z")
GUEST = re.compile(rb"guest[0-9]+\Z", re.IGNORECASE)
#: C0 controls but TAB, DEL, and the C1 controls as UTF-8 (U+0080..U+009F)
CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]|\xc2[\x80-\x9f]")
REPLACEMENT = "\ufffd".encode()


def _shown(match: re.Match[bytes]) -> bytes:
    control = match.group()
    if len(control) == 2:
        return REPLACEMENT
    return b"^" + bytes([control[0] ^ 0x40])


def printable(text: bytes) -> bytes:
    """``text`` with every control character but TAB made visible (caret notation) or replaced."""
    if CONTROL.search(text) is None:
        return text
    return CONTROL.sub(_shown, text)


class Member(Protocol):
    """What the room needs of a session."""

    nick: bytes | None
    guest: int
    say_tokens: float
    say_stamp: float
    mode: str
    encode: Callable[[Reply], bytes]

    def push(self, data: bytes) -> None: ...


class Room:
    """Every connected session, the nicks they hold, and broadcast to them."""

    def __init__(self) -> None:
        self.members: set[Any] = set()
        self.nicks: dict[bytes, Any] = {}
        self._guests = 0
        self.rate = 0.0
        self.burst = 0
        self.seconds: Callable[[], float] = lambda: 0.0

    def limit_rate(self, rate: float, burst: int, seconds: Callable[[], float]) -> None:
        """Allow each member ``rate`` SAYs a second after a burst of ``burst`` (rate 0: no limit)."""
        self.rate = rate
        self.burst = max(1, burst)
        self.seconds = seconds

    def may_say(self, member: Member) -> bool:
        """Take one token from ``member``'s bucket; False when it is empty."""
        if not self.rate:
            return True
        now = self.seconds()
        tokens = min(self.burst, member.say_tokens + (now - member.say_stamp) * self.rate)
        member.say_stamp = now
        if tokens < 1:
            member.say_tokens = tokens
            return False
        member.say_tokens = tokens - 1
        return True

    def next_guest(self) -> int:
        """The number of the next guest name, ``guest<N>``."""
        self._guests += 1
        return self._guests

    def join(self, member: Member) -> None:
        member.guest = self.next_guest()
        member.say_tokens = self.burst
        member.say_stamp = self.seconds()
        self.members.add(member)

    def leave(self, member: Member) -> None:
        if member not in self.members:
            return
        self.members.discard(member)
        if member.nick is not None:
            del self.nicks[member.nick.lower()]
            self.announce(member.nick + b" left")
            member.nick = None

    @staticmethod
    def name(member: Member) -> bytes:
        return member.nick if member.nick is not None else b"guest%d" % member.guest

    def valid(self, nick: bytes) -> bool:
        return NICK.match(nick) is not None

    @staticmethod
    def reserved(nick: bytes) -> bool:
        """Guest names belong to the guests: ``NICK guest7`` would impersonate one."""
        return GUEST.match(nick) is not None

    def holder(self, nick: bytes) -> Member | None:
        return self.nicks.get(nick.lower())

    def take(self, member: Member, nick: bytes, user: bool = False) -> Any:
        """NICK and LOGIN: give ``member`` the (valid) ``nick`` unless another member holds it.

        Answers the nick, or ERROR NICK_TAKEN; a room shared between processes
        (tinytcp/cluster/room.py) answers with a Deferred, once the whole room has been asked,
        and there ``user`` (a LOGIN or REGISTER) also marks the nick a registered user name,
        which NICK may not take on any node (ERROR NICK_RESERVED).
        """
        holder = self.holder(nick)
        if (holder is not None and holder is not member) or self.reserved(nick):
            return error(errors.NICK_TAKEN)
        self.rename(member, nick)
        return nick

    def rename(self, member: Member, nick: bytes) -> None:
        """Give ``member`` the (valid, free) ``nick`` and tell the other chat users."""
        old = member.nick
        if old is not None:
            del self.nicks[old.lower()]
        member.nick = nick
        self.nicks[nick.lower()] = member
        if old is None:
            self.announce(nick + b" joined", exclude=member)
        elif old != nick:
            self.announce(old + b" is now " + nick, exclude=member)

    def drop_nick(self, member: Member) -> None:
        """``member`` becomes a guest again (LOGOUT); the others see the rename."""
        old = member.nick
        if old is None or member not in self.members:
            return
        del self.nicks[old.lower()]
        member.nick = None
        self.announce(old + b" is now " + self.name(member))

    def say(self, member: Member, text: bytes) -> Any:
        """Deliver ``MSG <name> <text>`` to every other member; how many got it (a shared room
        answers SAY's whole reply, perhaps later)."""
        recipients = [other for other in self.members if other is not member]
        self.deliver(Reply(Code.MSG, self.name(member) + b" " + printable(text)), recipients)
        return len(recipients)

    def who(self) -> Any:
        """WHO's payload: the nicks, then ``+N`` guests (a shared room may answer later)."""
        names = sorted(self.nicks.values(), key=lambda m: (m.nick.lower(), m.nick))
        words = [m.nick for m in names]
        guests = len(self.members) - len(self.nicks)
        if guests:
            words.append(b"+%d" % guests)
        return b" ".join(words)

    def status(self) -> dict[str, Any]:
        """INFO chat's fields beyond the member counts: none for a room of this process alone."""
        return {}

    def announce(self, text: bytes, exclude: Member | None = None) -> None:
        """A presence notice, ``MSG * <text>``, to the members that have a nick."""
        recipients = [m for m in self.nicks.values() if m is not exclude]
        if recipients:
            self.deliver(Reply(Code.MSG, b"* " + text), recipients)

    @staticmethod
    def deliver(message: Reply, recipients: Iterable[Member]) -> None:
        encoded: dict[str, bytes] = {}
        for member in recipients:
            data = encoded.get(member.mode)
            if data is None:
                data = encoded[member.mode] = member.encode(message)
            member.push(data)
