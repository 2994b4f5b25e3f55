"""The per-connection base both wire formats share, as four named parts.

- ``Registration``: joining the server's registry and the chat room, the connection limit,
  and the one log line when the connection ends;
- ``IdleTimeout``: closing a client that neither sends nor reads for ``--idle-timeout``;
- ``Backpressure``: the transport's streaming producer, and the request loop's brake: once
  the transport's write buffer is past its high-water mark, no more requests are answered
  (not even the rest of the current read) and nothing more is read, until it drains;
  pushed chat messages count toward ``--max-pending``;
- ``Drain``: on shutdown, answer what the client already sent, then say BYE.

``Connection`` puts them together with the closing rules every part relies on: a connection
the server decides to close is aborted if it is still open ``--shutdown-grace`` seconds
later, whether or not the client reads, so its slot and its buffers are freed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IHandshakeListener, INegotiated
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from tinytcp.auth.network import is_local
from tinytcp.protocol import errors
from tinytcp.protocol.core import BYE, Session, no_push
from tinytcp.protocol.reply import CONSTANT_REPLIES, Code, Reply, error
from tinytcp.server.state import PROTECTED_HINT, QUIET, Server, describe_peer
from tinytcp.server.wirelog import WireLog

log = Logger(namespace="tinytcp")

#: errors logged per connection before the rest are only counted (a flood of bad input
#: must not write more log than a few lines per connection)
LOGGED_ERRORS = 3

#: replies gathered before they are written and the buffer's mark is checked again
FLUSH_SIZE = 64 * 1024
#: a reply shorter than this counts as this many bytes toward FLUSH_SIZE, so that a run of
#: small replies is measured by how many there are (FLUSH_COUNT of them fill FLUSH_SIZE)
SMALL = 256
FLUSH_COUNT = FLUSH_SIZE // SMALL
#: request codes a session holds (``Session.codes``) before the request loop folds them into
#: the counters (at the start of a read and at each write, so a session holds at most about
#: FOLD + FLUSH_COUNT); readers of the counters fold them first (``Core.tally``)
FOLD = 256


def encoded_constants(encode: Callable[[Reply], bytes]) -> dict[Reply, tuple[bytes, str | None]]:
    """The constant replies (every documented error, BYE) in one wire format, each with its
    error's name (None for BYE): encoded once, for ``Registration.encode_reply``."""
    return {reply: (encode(reply), name) for reply, name in CONSTANT_REPLIES.items()}


class Registration:
    """Joining and leaving the server: the registry, the connection limit, the chat room."""

    server: Server
    transport: Any
    mode = "?"
    encode: Callable[[Reply], bytes]
    constants: dict[Reply, tuple[bytes, str | None]] = {}
    peer = "?"
    opened = 0.0
    #: no more requests are read or answered (QUIT, an error that closes, shutdown, lost)
    closing = False
    refused = False
    #: errors answered so far, and those not logged (past LOGGED_ERRORS)
    errors = 0
    #: the names of errors past LOGGED_ERRORS not yet counted (fold_counters)
    _unlogged: list[str] | None = None

    def open_connection(self) -> bool:
        """Register a new connection, or refuse it with BUSY or DENIED (protected mode); True when
        it is served."""
        self.session = Session(self.mode, self.encode, self.push)  # type: ignore[attr-defined]
        self.session.address = self.transport.getPeer()
        # a WebSocket bridge over wss says so itself (tinytcp/server/websocket.py)
        self.session.tls = INegotiated.providedBy(self.transport) or getattr(self.transport, "secure", False)
        self.peer = describe_peer(self.session.address)
        self.opened = time.monotonic()
        server = self.server
        if len(server.connections) >= server.settings.max_connections or server.stopping:
            self.closing = self.refused = True
            server.stats.error(errors.BUSY)
            self.transport.write(self.encode(error(errors.BUSY)))
            log.info(
                "{peer}: closing: refused, {count} connections open (--max-connections)",
                peer=self.peer,
                count=len(server.connections),
            )
            self.transport.loseConnection()
            return False
        if server.settings.protected_mode and not server.settings.require_login and not is_local(self.session.address):
            self.closing = self.refused = True
            server.stats.error(errors.DENIED)
            self.transport.write(self.encode(Reply(Code.ERROR, b"DENIED " + PROTECTED_HINT)))
            log.info("{peer}: closing: not a local client, and login is not required (protected mode)", peer=self.peer)
            self.transport.loseConnection()
            return False
        server.add(self)  # type: ignore[arg-type]
        server.core.room.join(self.session)
        return True

    def close_connection(self, reason: Failure) -> None:
        """The transport is gone: leave the registry and the room, log one line."""
        self.closing = True
        if self.refused:
            return
        self.server.core.room.leave(self.session)
        # the session points back at this protocol (push): break the cycle so that
        # refcounting, not an occasional full GC, frees a closed connection at once
        self.session.push = no_push
        self.server.remove(self)  # type: ignore[arg-type]
        self.fold_counters()
        self.server.stats.connection_closed(self)  # type: ignore[arg-type]
        unlogged = max(0, self.errors - LOGGED_ERRORS)
        requests = self.session.requests
        log.info(
            "{peer} disconnected after {duration:.3f}s, {requests} request{s}{unlogged} ({why})",
            peer=self.peer,
            duration=time.monotonic() - self.opened,
            requests=requests,
            s="" if requests == 1 else "s",
            unlogged=f", {unlogged} more errors not logged" if unlogged else "",
            why=reason.getErrorMessage(),
        )

    def encode_reply(self, reply: Reply) -> bytes:
        """``reply`` in this connection's wire format, counted (and maybe logged) when it is an
        error; a constant one comes encoded from ``constants``."""
        prepared = self.constants.get(reply)
        if prepared is None:
            data = self.encode(reply)
            name = reply.payload.decode("ascii") if reply.code == Code.ERROR else None
        else:
            data, name = prepared
        if name is not None:
            self.log_error(name)
        return data

    def log_error(self, name: str) -> None:
        """Count an ERROR sent to this client (for INFO); log the first few, then only count them.

        Past the first few, the name is only noted, and counted when the counters are read
        (``fold_counters``): a flood of bad requests costs a list append each."""
        if self.errors < LOGGED_ERRORS:
            self.errors += 1
            counts = self.server.stats.errors
            counts[name] = counts.get(name, 0) + 1
            log.info("{peer}: ERROR {name}", peer=self.peer, name=name)
            if self.errors == LOGGED_ERRORS:
                log.info("{peer}: further errors are counted, not logged", peer=self.peer)
            return
        unlogged = self._unlogged
        if unlogged is None:
            unlogged = self._unlogged = []
        unlogged.append(name)
        if len(unlogged) >= FOLD:
            self.fold_counters()

    def fold_counters(self) -> None:
        """Bring the server's counters up to date with this connection's requests and errors;
        INFO and /metrics call this for every connection before they read them."""
        self.server.core.tally(self.session)
        unlogged = self._unlogged
        if unlogged:
            counts = self.server.stats.errors
            for name in set(unlogged):
                counts[name] = counts.get(name, 0) + unlogged.count(name)
            self.errors += len(unlogged)
            unlogged.clear()


class IdleTimeout(TimeoutMixin):
    """Close a client that neither sends nor reads for ``--idle-timeout`` seconds."""

    server: Server
    closing: bool
    #: ``Server.seconds()`` when the client last sent something or read replies that waited
    last_active = 0.0
    #: set by every read; the shutdown drain watches it
    _active = False
    _now: Callable[[], float]

    def start_idle_timer(self) -> None:
        self.callLater = self.server.reactor.callLater
        self.last_active = self.server.seconds()
        self.setTimeout(self.server.settings.idle_timeout or None)

    def timeoutConnection(self) -> None:
        if self.closing:
            return
        limit = self.server.settings.idle_timeout
        idle = self.server.seconds() - self.last_active
        if idle < limit:
            # active since the timer was set: wait for the rest of the period from then
            self.setTimeout(limit - idle)
        else:
            self.send_error(errors.IDLE_TIMEOUT)  # type: ignore[attr-defined]
            self.hang_up(f"idle for {limit:g}s (--idle-timeout)")  # type: ignore[attr-defined]


class Backpressure:
    """The transport's streaming producer, and the brake on the request loop.

    The transport calls ``pauseProducing`` when its buffer passes the high-water mark (64 KiB)
    and ``resumeProducing`` once it drains.  While paused the server neither reads nor answers:
    the requests of the current read wait in ``backlog`` (an iterator positioned on the next
    one) and are answered, in order, on resume.  A command may also answer with a Deferred:
    the requests after it wait the same way until it fires.  A read that arrives meanwhile
    (a transport may deliver one already under way) waits whole in ``later``.  So what a
    client costs is bounded by the mark, one flush of replies, one read and its partial
    request, whatever it sends.
    """

    server: Server
    transport: Any
    closing: bool
    finishing = False
    last_active: float
    _active: bool
    #: the buffer is past its mark; pushes since then are counted against --max-pending
    writes_paused = False
    _unread_pushes = 0
    #: a command's reply is a Deferred that has not fired yet
    waiting = False
    #: the rest of a read's requests, not answered yet (each protocol's own form: an
    #: iterator over lines, a read and an offset)
    backlog: Any = None
    #: reads that arrived while requests waited
    later: bytearray | None = None

    def read_later(self, data: bytes) -> None:
        """A read that arrived while requests wait (each protocol's dataReceived starts by
        checking ``backlog``, ``writes_paused`` and ``waiting``): it waits behind them whole."""
        if self.later is None:
            self.later = bytearray(data)
        else:
            self.later += data

    def answer_from(self, requests: Any) -> None:
        """Answer ``requests`` in order (each protocol's loop), stopping with ``hold`` or
        ``wait_for`` when it must."""
        raise NotImplementedError

    def hold(self, requests: Any) -> None:
        """Keep the rest of ``requests`` for later, and stop reading until they are answered."""
        self.backlog = requests
        self.transport.pauseProducing()

    def wait_for(self, reply: defer.Deferred[Reply], requests: Any) -> None:
        """A command answers later: hold the rest of ``requests`` until its reply is sent."""
        self.waiting = True
        self.hold(requests)
        reply.addCallbacks(self._deferred_reply, self._deferred_failure)

    def _deferred_reply(self, reply: Reply) -> None:
        self.waiting = False
        if self.closing:
            return
        self.send(self.encode_reply(reply))  # type: ignore[attr-defined]
        if reply.close:
            self.hang_up("client said QUIT")  # type: ignore[attr-defined]
            return
        self.carry_on()

    def _deferred_failure(self, failure: Failure) -> None:
        log.failure("{peer}: a command failed", failure, peer=self.peer)  # type: ignore[attr-defined]
        self._deferred_reply(error(errors.INTERNAL_ERROR))

    def carry_on(self) -> None:
        """Answer what waits, then read again unless something blocks once more."""
        while not (self.writes_paused or self.waiting or self.closing):
            if self.backlog is not None:
                requests, self.backlog = self.backlog, None
                self.answer_from(requests)
            elif self.later is not None:
                data, self.later = bytes(self.later), None
                self.dataReceived(data)  # type: ignore[attr-defined]
            else:
                self.transport.resumeProducing()
                return

    def push(self, data: bytes) -> None:
        """Send a message the client did not ask for (chat); a client that lets more than
        --max-pending bytes of them pile up unread is a slow consumer and is disconnected."""
        if self.closing:
            return
        if self.writes_paused:
            self._unread_pushes += len(data)
            if self._unread_pushes > self.server.max_pending:
                self.send_error(errors.SLOW_CONSUMER)  # type: ignore[attr-defined]
                why = f"over {self.server.max_pending} bytes of pushed messages unread (--max-pending)"
                self.hang_up(why)  # type: ignore[attr-defined]
                return
        self.send(data)

    def _flush(self, out: list[bytes]) -> None:
        """Write the replies a request loop gathered, joined."""
        if out:
            self.send(b"".join(out) if len(out) > 1 else out[0])

    def quit_after(self, out: list[bytes], last: bytes) -> None:
        """Write the gathered replies and ``last`` (BYE), then close: the client said QUIT."""
        out.append(last)
        self._flush(out)
        self.hang_up("client said QUIT")  # type: ignore[attr-defined]

    def send(self, data: bytes) -> None:
        """Write replies and pushes; on tinytcp's TCP listeners the transport sends them at once
        when nothing is queued (tinytcp/server/transport.py)."""
        self.transport.write(data)

    # IPushProducer, for the transport
    def pauseProducing(self) -> None:
        # the transport calls this on every write while its buffer is full: count from the first
        if not self.writes_paused:
            self.writes_paused = True
            self._unread_pushes = 0
            self.server.stats.backpressure_pauses += 1
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.writes_paused = False
        self.last_active = self.server.seconds()
        self._active = True
        self.carry_on()

    def stopProducing(self) -> None:
        """The transport is going away; connectionLost does the cleanup."""


class Drain:
    """On shutdown: answer what the client has already sent, then say BYE.

    Reading goes on until the client has sent nothing for ``QUIET`` seconds, so requests
    already in the socket are answered and the close sends no RST over them.  Backpressure
    stays on: a client that does not read its replies is not read either, and is waited for
    (it may read later) until ``Server.shutdown`` aborts whoever is still open after
    ``--shutdown-grace``.
    """

    server: Server
    transport: Any
    closing: bool
    finishing = False
    _active: bool
    writes_paused: bool
    waiting: bool
    backlog: Any

    def finish(self) -> None:
        if self.closing:
            return
        self.finishing = True
        self._active = False
        self.server.reactor.callLater(QUIET, self._finish_when_quiet)

    def _finish_when_quiet(self) -> None:
        if self.closing:
            return
        if self._active or self.writes_paused or self.waiting or self.backlog is not None:
            self._active = False
            self.server.reactor.callLater(QUIET, self._finish_when_quiet)
            return
        self.say_goodbye()

    def say_goodbye(self) -> None:
        """Tell the client the server is stopping, and close."""
        if not self.closing:
            self.transport.write(self.encode(BYE))  # type: ignore[attr-defined]
            self.hang_up("server shutting down")  # type: ignore[attr-defined]


@implementer(IHandshakeListener)
class Connection(Registration, IdleTimeout, Backpressure, Drain, Protocol):
    """One client of either wire format: the four parts, and how a connection closes."""

    _abort_call: Any = None

    def __init__(self, server: Server) -> None:
        self.server = server
        self._now = server.seconds
        # The flags dataReceived tests on every read, set on the instance although the
        # parts' class attributes give the same defaults: CPython 3.11 specializes an
        # attribute load only when the instance holds the value, and falls back to a
        # generic lookup through the class (about 200 instructions each) otherwise.
        self.closing = False
        self.backlog = None
        self.writes_paused = False
        self.waiting = False

    def makeConnection(self, transport: Any) -> None:
        """Under --verbose, the connection writes through a transport that logs what it writes."""
        if self.server.settings.verbose:
            transport = WireLog(transport, self, binary=self.mode == "binary")
        Protocol.makeConnection(self, transport)

    def start(self) -> bool:
        """connectionMade's shared half: register, start the idle clock, produce for the
        transport; False when the connection was refused."""
        if not self.open_connection():
            return False
        self.start_idle_timer()
        # over TLS, the TLS layer pauses its producer while it holds what was written before
        # the handshake (the WELCOME line): pausing would stop reading the handshake itself
        if not INegotiated.providedBy(self.transport):
            self.transport.registerProducer(self, True)
        elif self.server.client_certificates is not None:
            self.server.client_certificates.ask(self.transport)
        log.info("{peer} connected ({mode})", peer=self.peer, mode=self.mode)
        return True

    def handshakeCompleted(self) -> None:
        """TLS only: the handshake is done, so backpressure can begin (see start)."""
        if self.server.client_certificates is not None:
            self.server.client_certificates.log_peer(self.transport, self.peer)
        if not self.closing:
            self.transport.registerProducer(self, True)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.backlog = self.later = None
        self.setTimeout(None)
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        self.close_connection(reason)

    def send_error(self, name: str) -> None:
        self.transport.write(self.encode_reply(error(name)))

    def hang_up(self, why: str) -> None:
        """Close on the server's own initiative: flush what is queued, and abort if the client
        has not taken it within --shutdown-grace (it may never read)."""
        self.closing = True
        self.backlog = self.later = None
        # out of the room now, not when the last bytes drain: a closing client gets no more
        # messages, so SAY must not count it and the others should see it leave
        self.server.core.room.leave(self.session)
        log.info("{peer}: closing: {why}", peer=self.peer, why=why)
        self.transport.unregisterProducer()
        self.transport.loseConnection()
        if self._abort_call is None:
            self._abort_call = self.server.reactor.callLater(self.server.settings.shutdown_grace, self._abort)

    def _abort(self) -> None:
        log.info(
            "{peer}: aborting: still open {grace:g}s after closing (--shutdown-grace)",
            peer=self.peer,
            grace=self.server.settings.shutdown_grace,
        )
        self.transport.abortConnection()
