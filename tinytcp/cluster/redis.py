"""The node's two connections to Redis: one for commands, one for the room's subscription.

Both are kept open by Twisted's ``ClientService`` (reconnect with backoff), because
txredisapi reconnects but does not subscribe again by itself: here every new subscriber
connection subscribes before it counts as up.  Commands are only sent while both
connections are up; while either is down the room answers ``ERROR CHAT_UNAVAILABLE`` at
once instead of queueing work that would grow without bound (txredisapi's own pool waits
for a connection forever).

txredisapi imports the global reactor, so this module imports it only once twistd has
installed tinytcp's reactor (inside :meth:`RedisLink.start`).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import Factory
from twisted.logger import Logger

log = Logger(namespace="tinytcp")

DEFAULT_PORT = 6379
#: seconds a Redis command may take before the connection counts as broken
REPLY_TIMEOUT = 5.0
#: seconds to wait for a TCP connection to Redis
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class RedisAddress:
    """Where Redis is, parsed from a ``redis://``, ``rediss://`` or ``unix://`` URL."""

    host: str | None = "127.0.0.1"
    port: int = DEFAULT_PORT
    path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    #: PEM file of the CAs a rediss:// server's certificate must chain to (default: the system's)
    cafile: str | None = None

    def describe(self) -> str:
        """The URL without its password, for the logs."""
        if self.path is not None:
            return f"unix://{self.path}?db={self.db}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{'rediss' if self.tls else 'redis'}://{host}:{self.port}/{self.db}"


def parse_url(url: str) -> RedisAddress:
    """``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS, ``?cafile=``),
    ``unix://[[user]:password@]/path/to/socket[?db=N]``; ValueError says what is wrong."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"{url!r}: expected redis://host[:port][/db], rediss://... or unix:///path")
    query = urllib.parse.parse_qs(parts.query)
    unknown = set(query) - {"db", "cafile"}
    if unknown:
        raise ValueError(f"{url!r}: unknown parameter {sorted(unknown)[0]!r} (db and cafile are known)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r}: the port is not a number from 1 to 65535") from None
    db_text = query.get("db", [""])[0]
    if scheme != "unix" and parts.path.strip("/"):
        db_text = parts.path.strip("/")
    if db_text and not db_text.isdigit():
        raise ValueError(f"{url!r}: the database {db_text!r} is not a number")
    username = urllib.parse.unquote(parts.username) if parts.username else None
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    common = {
        "db": int(db_text or 0),
        "username": username,
        "password": password,
        "cafile": query.get("cafile", [None])[0],
    }
    if scheme == "unix":
        if not parts.path:
            raise ValueError(f"{url!r}: no socket path (unix:///path/to/redis.sock)")
        return RedisAddress(host=None, port=0, path=parts.path, **common)  # type: ignore[arg-type]
    if not parts.hostname:
        raise ValueError(f"{url!r}: no host")
    return RedisAddress(
        host=parts.hostname,
        port=port or DEFAULT_PORT,
        tls=scheme == "rediss",
        **common,  # type: ignore[arg-type]
    )


def client_endpoint(reactor: Any, address: RedisAddress) -> Any:
    """The Twisted client endpoint that reaches ``address`` (TLS checked against its host name)."""
    from twisted.internet import endpoints  # after the reactor is chosen (tap.py)

    if address.path is not None:
        return endpoints.UNIXClientEndpoint(reactor, address.path, timeout=CONNECT_TIMEOUT)
    endpoint = endpoints.HostnameEndpoint(reactor, address.host, address.port, timeout=CONNECT_TIMEOUT)
    if not address.tls:
        return endpoint
    from twisted.internet import ssl

    trust: Any = None
    if address.cafile is not None:
        with open(address.cafile, "rb") as f:
            trust = ssl.Certificate.loadPEM(f.read())
    options = ssl.optionsForClientTLS(address.host or "", trustRoot=trust)
    return endpoints.wrapClientTLS(options, endpoint)


class _LinkFactory(Factory):
    """Builds txredisapi protocols and tells the link when one is ready or gone.

    txredisapi's protocol calls ``stopTrying`` and ``connectionError`` on its factory when
    AUTH or SELECT fails; here that is logged (once per failure) and the connection retried.
    """

    isLazy = False
    noisy = False

    def __init__(self, build: Callable[[], Any], ready: Callable[[Any], Any], what: str) -> None:
        self.build = build
        self.ready = ready
        self.what = what

    def buildProtocol(self, addr: Any) -> Any:
        protocol = self.build()
        protocol.factory = self
        protocol.whenConnected().addCallback(self.ready)
        return protocol

    def stopTrying(self) -> None:
        """AUTH or SELECT failed: the connection closes and ClientService tries again later."""

    def connectionError(self, why: str) -> None:
        log.error("Redis {what} connection: {why}", what=self.what, why=why)


class RedisLink:
    """A command connection and a subscription to ``channel``, both reconnecting by themselves.

    ``on_message(payload)`` gets every message published on the channel; ``on_up()`` runs
    each time both connections are usable again (so the room can reassert what it holds),
    ``on_down()`` when one of them is lost.
    """

    def __init__(
        self,
        reactor: Any,
        address: RedisAddress,
        channel: bytes,
        on_message: Callable[[bytes], None],
        on_up: Callable[[], None],
        on_down: Callable[[], None],
    ) -> None:
        self.reactor = reactor
        self.address = address
        self.channel = channel
        self.on_message = on_message
        self.on_up = on_up
        self.on_down = on_down
        self.commands: Any = None
        self.subscribed: Any = None
        self._services: list[Any] = []
        self.was_up = False
        self.ever_up = False

    @property
    def up(self) -> bool:
        """Both connections are open (and subscribed): chat may use Redis."""
        return self.commands is not None and self.subscribed is not None

    def start(self) -> None:
        """Connect both, now and after every loss, with backoff up to 10 s."""
        import txredisapi
        from twisted.application.internet import ClientService, backoffPolicy

        address = self.address
        link = self

        class Subscriber(txredisapi.SubscriberProtocol):  # type: ignore[misc]
            def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
                link.on_message(message)

        def protocol(kind: Any) -> Callable[[], Any]:
            return lambda: kind(
                charset=None,
                replyTimeout=REPLY_TIMEOUT,
                password=address.password,
                username=address.username,
                dbid=address.db if kind is not Subscriber else None,
                convertNumbers=False,
            )

        endpoint = client_endpoint(self.reactor, address)
        policy = backoffPolicy(initialDelay=0.5, factor=2.0, maxDelay=10.0)
        for kind, ready, what in (
            (txredisapi.RedisProtocol, self._commands_ready, "command"),
            (Subscriber, self._subscriber_ready, "subscription"),
        ):
            factory = _LinkFactory(protocol(kind), ready, what)
            service = ClientService(endpoint, factory, retryPolicy=policy, clock=self.reactor)
            service.startService()
            self._services.append(service)

    def _commands_ready(self, protocol: Any) -> None:
        protocol.whenDisconnected().addCallback(self._lost, "commands")
        self.commands = protocol
        self._changed()

    def _subscriber_ready(self, protocol: Any) -> None:
        protocol.whenDisconnected().addCallback(self._lost, "subscribed")

        def subscribed(_: Any) -> None:
            if protocol.connected:
                self.subscribed = protocol
                self._changed()

        def failed(failure: Any) -> None:
            log.error("Redis: SUBSCRIBE failed: {why}", why=failure.getErrorMessage())
            protocol.transport.loseConnection()

        protocol.subscribe([self.channel]).addCallbacks(subscribed, failed)

    def _lost(self, protocol: Any, which: str) -> None:
        if getattr(self, which) is protocol:
            setattr(self, which, None)
            self._changed()

    def _changed(self) -> None:
        if self.up and not self.was_up:
            self.was_up = True
            log.info(
                "chat shared through Redis at {address}{again}",
                address=self.address.describe(),
                again=" again" if self.ever_up else "",
            )
            self.ever_up = True
            self.on_up()
        elif not self.up and self.was_up:
            self.was_up = False
            log.warn(
                "Redis at {address} is unreachable: chat answers ERROR CHAT_UNAVAILABLE until it is back",
                address=self.address.describe(),
            )
            self.on_down()

    def run(self, *command: Any) -> defer.Deferred[Any]:
        """Send one command; fails at once (ConnectionError) while Redis is down."""
        if not self.up:
            return defer.fail(ConnectionError("Redis is down"))
        try:
            return self.commands.execute_command(*command)  # type: ignore[no-any-return]
        except Exception as problem:  # txredisapi raises when the connection just went away
            return defer.fail(problem)

    def eval(self, script: bytes, *args: Any) -> defer.Deferred[Any]:
        """Run a Lua script (cached by SHA1 after its first run) with ``args`` as ARGV."""
        if not self.up:
            return defer.fail(ConnectionError("Redis is down"))
        try:
            return self.commands.eval(script, [], list(args))  # type: ignore[no-any-return]
        except Exception as problem:
            return defer.fail(problem)

    def check_subscription(self) -> None:
        """PING the subscriber connection: a Redis that stopped answering (a network partition
        sends no FIN) times the connection out after REPLY_TIMEOUT, and it reconnects."""
        subscriber = self.subscribed
        if subscriber is None:
            return
        try:
            subscriber.execute_command("PING").addErrback(lambda _: None)
        except Exception:  # the connection just went away; _lost has seen it
            pass

    def stop(self) -> defer.Deferred[Any]:
        """Close both connections and stop reconnecting."""
        services, self._services = self._services, []
        self.commands = self.subscribed = None
        return defer.gatherResults([defer.maybeDeferred(s.stopService) for s in services], consumeErrors=True)
