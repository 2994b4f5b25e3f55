"""REGISTER, LOGIN and LOGOUT for the command core, and the login policy around the others.

:meth:`Accounts.commands` returns the core's command table with the account commands added
and NICK and the rest wrapped: NICK refuses registered names, and with ``require_login``
everything but LOGIN, REGISTER, HELP and QUIT answers AUTH_REQUIRED until LOGIN.  REGISTER
and LOGIN answer with a Deferred: the password is hashed in a thread, and the protocol
holds that connection's later requests until the reply is ready.

This module imports no hashing library: the client takes the command names and codes from
:data:`ACCOUNT_COMMANDS` without bcrypt installed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from tinytcp.auth.cred import IAccount, Runner
from tinytcp.auth.limiter import FailureLimiter
from tinytcp.auth.network import describe, is_local, peer_key
from tinytcp.protocol import errors
from tinytcp.protocol.chat import NICK
from tinytcp.protocol.core import COMMANDS, Command, Core, Handler, Session
from tinytcp.protocol.reply import Code, Reply, error

log = Logger(namespace="tinytcp")

MIN_PASSWORD = 8
#: bcrypt reads at most 72 bytes; a longer password is refused rather than silently cut
MAX_PASSWORD = 72

#: what a client without a LOGIN may still do under --require-login
OPEN_COMMANDS = frozenset({"LOGIN", "REGISTER", "HELP", "QUIT"})


def _unbound(core: Core, session: Session, argument: bytes | None) -> Reply:
    """The handler of an account command on a server without accounts."""
    return error(errors.UNKNOWN_COMMAND)


ACCOUNT_COMMANDS: tuple[Command, ...] = (
    Command(
        "REGISTER",
        Code.REGISTER,
        f"REGISTER <user> <password>: create an account and log in (password {MIN_PASSWORD}-{MAX_PASSWORD} bytes)",
        _unbound,
    ),
    Command("LOGIN", Code.LOGIN, "LOGIN <user> <password>: log in; you then chat as user", _unbound),
    Command("LOGOUT", Code.LOGOUT, "LOGOUT: log out; you chat as a guest again", _unbound),
)

_SECRET_WORDS = (b"REGISTER", b"LOGIN")
_SECRET_CODES = (Code.REGISTER, Code.LOGIN)


def loggable_line(line: bytes) -> bytes:
    """A request line fit for the log: REGISTER and LOGIN keep their word and user name only."""
    parts = line.split(None, 2)
    if len(parts) > 1 and parts[0].upper() in _SECRET_WORDS:
        return b" ".join(parts[:2] if len(parts) == 3 else parts[:1]) + b" ***"
    return line


def loggable_payload(code: int, payload: bytes) -> bytes:
    """A request payload fit for the log: REGISTER and LOGIN keep their user name only."""
    if code in _SECRET_CODES:
        parts = payload.split(None, 1)
        return parts[0] + b" ***" if len(parts) == 2 else b"***"
    return payload


def credentials(argument: bytes | None) -> tuple[bytes, bytes] | None:
    """``<user> <password>``: the user is a valid nick, the password the rest, as typed (1-72 bytes)."""
    if not argument:
        return None
    parts = argument.split(None, 1)
    if len(parts) != 2 or NICK.match(parts[0]) is None or len(parts[1]) > MAX_PASSWORD:
        return None
    return parts[0], parts[1]


@dataclasses.dataclass(frozen=True)
class Policy:
    """Who may log in and register, and how failures are limited."""

    require_login: bool = False
    allow_register: bool = True
    #: LOGIN and REGISTER over plain TCP from other machines (passwords in clear)
    allow_plaintext: bool = False
    #: failed LOGINs per user name within ``window`` seconds before RATE_LIMITED
    user_failures: int = 5
    #: failed LOGINs and REGISTERs per peer address within ``window`` seconds
    peer_failures: int = 20
    window: float = 300.0
    #: a failed LOGIN is answered this many seconds late
    failure_delay: float = 1.0


class Accounts:
    """The account commands of one server: portal, registration, limits, reserved names.

    ``register`` creates an account (in a thread); None when only an ``--auth`` checker is
    configured, which cannot create accounts.  ``names`` are the user names to reserve
    against NICK from the start.
    """

    def __init__(
        self,
        portal: Portal,
        policy: Policy,
        reactor: IReactorTime,
        run: Runner,
        register: Callable[[str, bytes], str] | None = None,
        names: Iterable[bytes] = (),
    ) -> None:
        self.portal = portal
        self.policy = policy
        self.reactor = reactor
        self.run = run
        self.register = register
        #: registered user names, lower case; NICK cannot take them
        self.reserved: set[bytes] = {name.lower() for name in names}
        self.peer_limiter = FailureLimiter(reactor.seconds, policy.peer_failures, policy.window)
        self.user_limiter = FailureLimiter(reactor.seconds, policy.user_failures, policy.window)

    def commands(self, base: tuple[Command, ...] = COMMANDS) -> tuple[Command, ...]:
        """``base`` with NICK guarding registered names, the account commands, and the login gate."""
        handlers: dict[str, Handler] = {"REGISTER": self._register, "LOGIN": self._login, "LOGOUT": self._logout}
        table = [
            dataclasses.replace(command, handler=self._nick(command.handler)) if command.name == "NICK" else command
            for command in base
        ]
        at = next((i for i, command in enumerate(table) if command.name == "QUIT"), len(table))
        table[at:at] = [dataclasses.replace(command, handler=handlers[command.name]) for command in ACCOUNT_COMMANDS]
        if self.policy.require_login:
            table = [command if command.name in OPEN_COMMANDS else self._gated(command) for command in table]
        return tuple(table)

    # the wrappers
    def _gated(self, command: Command) -> Command:
        inner = command.handler

        def gated(core: Core, session: Session, argument: bytes | None) -> Any:
            if session.user is None:
                return error(errors.AUTH_REQUIRED)
            return inner(core, session, argument)

        return dataclasses.replace(command, handler=gated)

    def _nick(self, inner: Handler) -> Handler:
        def nick(core: Core, session: Session, argument: bytes | None) -> Any:
            if session.user is not None:
                return Reply(Code.NICK, session.user) if argument == session.user else error(errors.LOGGED_IN)
            if argument is not None and argument.lower() in self.reserved:
                return error(errors.NICK_RESERVED)
            return inner(core, session, argument)

        return nick

    # the commands
    def _may_send_credentials(self, session: Session) -> bool:
        return session.tls or self.policy.allow_plaintext or is_local(session.address)

    def _register(self, core: Core, session: Session, argument: bytes | None) -> Any:
        given = credentials(argument)
        if given is None or len(given[1]) < MIN_PASSWORD:
            return error(errors.BAD_ARGUMENTS)
        if self.register is None or not self.policy.allow_register:
            return error(errors.REGISTER_DISABLED)
        if not self._may_send_credentials(session):
            return error(errors.TLS_REQUIRED)
        if session.user is not None:
            return error(errors.LOGGED_IN)
        name, password = given
        holder = core.room.holder(name)
        taken = name.lower() in self.reserved or core.room.reserved(name)
        if taken or (holder is not None and holder is not session):
            return error(errors.NICK_TAKEN)
        peer = peer_key(session.address)
        if self.peer_limiter.blocked(peer):
            return error(errors.RATE_LIMITED)
        self.peer_limiter.failed(peer)  # every registration costs a hash: it counts like a failure
        registering: defer.Deferred[Any] = self.run(self.register, name.decode("ascii"), password)

        def registered(created: str) -> Reply:
            self.reserved.add(name.lower())
            log.info("{peer}: registered user {user}", peer=describe(session.address), user=created)
            return self._logged_in(core, session, created.encode("ascii"), Code.REGISTER)

        def failed(failure: Failure) -> Reply:
            from tinytcp.auth.store import NameTaken

            if failure.check(NameTaken):
                return error(errors.NICK_TAKEN)
            log.failure("REGISTER failed", failure)
            return error(errors.REGISTER_DISABLED)

        return registering.addCallbacks(registered, failed)

    def _login(self, core: Core, session: Session, argument: bytes | None) -> Any:
        given = credentials(argument)
        if given is None:
            return error(errors.BAD_ARGUMENTS)
        if not self._may_send_credentials(session):
            return error(errors.TLS_REQUIRED)
        name, password = given
        peer, user = peer_key(session.address), name.lower()
        if self.peer_limiter.blocked(peer) or self.user_limiter.blocked(user):
            log.info(
                "{peer}: LOGIN for {user} refused: too many failures",
                peer=describe(session.address),
                user=name.decode("ascii"),
            )
            return error(errors.RATE_LIMITED)
        checking = self.portal.login(UsernamePassword(name, password), None, IAccount)

        def succeeded(result: tuple[Any, Any, Any]) -> Reply:
            self.user_limiter.succeeded(user)
            account = result[1]
            self.reserved.add(account.name.lower())
            return self._logged_in(core, session, account.name, Code.LOGIN)

        def failed(failure: Failure) -> defer.Deferred[Reply]:
            if not failure.check(UnauthorizedLogin):
                log.failure("LOGIN check failed", failure)
            self.peer_limiter.failed(peer)
            self.user_limiter.failed(user)
            log.info("{peer}: LOGIN failed for {user}", peer=describe(session.address), user=name.decode("ascii"))
            return task.deferLater(self.reactor, self.policy.failure_delay, error, errors.AUTH_FAILED)

        return checking.addCallbacks(succeeded, failed)

    def _logged_in(self, core: Core, session: Session, name: bytes, code: int) -> Any:
        """Chat as ``name`` from now on, unless another connection is logged in as it.

        The room decides (room-wide when chat is shared through Redis), so the answer may
        come later, as a Deferred.
        """
        if core.room.reserved(name):
            return error(errors.NICK_TAKEN)  # a guest name from an --auth checker
        if session not in core.room.members:  # closed while the password was checked
            session.user = name
            return Reply(code, name)

        def taken(answer: Any) -> Reply:
            if isinstance(answer, Reply):
                return answer  # NICK_TAKEN: logged in elsewhere
            session.user = name
            return Reply(code, name)

        answer = core.room.take(session, name, user=True)
        if isinstance(answer, defer.Deferred):
            return answer.addCallback(taken)
        return taken(answer)

    def _logout(self, core: Core, session: Session, argument: bytes | None) -> Reply:
        if argument:
            return error(errors.BAD_ARGUMENTS)
        if session.user is None:
            return error(errors.AUTH_REQUIRED)
        session.user = None
        core.room.drop_nick(session)
        return Reply(Code.LOGOUT, b"")
