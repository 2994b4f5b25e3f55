"""Service assembly: endpoints, factories and the shared Server, in one place.

The twistd plugin, the tests and anything else that runs tinytcp build it here.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from twisted.application.service import MultiService, Service
from twisted.internet import defer, error
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from tinytcp.ops.startup import StartupError
from tinytcp.protocol.core import COMMANDS, Core
from tinytcp.server.binary import BinaryProtocol
from tinytcp.server.state import Server, Settings
from tinytcp.server.text import TextProtocol

if TYPE_CHECKING:
    from tinytcp.cluster.room import SharedRoom

log = Logger(namespace="tinytcp")

DEFAULT_TEXT_PORT = 40000
DEFAULT_BINARY_PORT = 40001
#: the command-line option behind each mode's listeners, for messages
PORT_OPTION = {"text": "--port", "binary": "--binary-port", "web": "--web-port", "metrics": "--metrics-port"}


#: accept queue for bare port numbers; Twisted's default of 50 drops SYNs (a 1 s client stall)
#: as soon as connections arrive faster than one reactor turn accepts them
BACKLOG = 1024


#: permissions of a unix socket whose description gives no mode: its owner and group may connect
UNIX_MODE = 0o660


def endpoint_description(port: str) -> str:
    """A bare port number listens on 127.0.0.1 only; anything else is an endpoint description
    (a unix socket without ``mode=`` gets UNIX_MODE)."""
    if port.isdigit():
        return f"tcp:{int(port)}:interface=127.0.0.1:backlog={BACKLOG}"
    if port.startswith("unix:") and ":mode=" not in port:
        # Twisted's default is 666, which lets every local user connect
        return f"{port}:mode={UNIX_MODE:o}"
    return port


#: the prefix of listeners behind a load balancer that sends the PROXY protocol header
PROXIED = "haproxy:"


def server_endpoint(reactor: Any, description: str) -> IStreamServerEndpoint:
    """The endpoint a (checked) description names; ``haproxy:`` ones connect tinytcp's protocol
    only once the PROXY header has named the client (tinytcp/server/proxied.py)."""
    if description.lower().startswith(PROXIED):
        from tinytcp.server.proxied import ProxiedEndpoint

        return ProxiedEndpoint(server_endpoint(reactor, description[len(PROXIED) :]), reactor)
    from twisted.internet import endpoints  # once the reactor is chosen (tap.py: TLS only if used)

    return endpoints.serverFromString(reactor, description)


class ConnectionFactory(Factory):
    """Builds one protocol per connection, each handed the shared Server."""

    noisy = False  # tinytcp logs its own listening address and every connection

    def __init__(self, server: Server, protocol: Callable[[Server], Protocol]) -> None:
        self.server = server
        self.make = protocol

    def buildProtocol(self, addr: Any) -> Protocol:
        protocol = self.make(self.server)
        protocol.factory = self
        return protocol


class ListenService(Service):
    """Listens on one endpoint while running and logs the address it is bound to."""

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        factory: Factory,
        mode: str,
        description: str = "?",
        port: str = "?",
        announce: bool = True,
    ) -> None:
        self.endpoint = endpoint
        #: log the "listening on" line; a --workers worker does not: its parent bound the
        #: socket and logged it once
        self.announce = announce
        self.description = description
        self.factory = factory
        self.mode = mode
        #: the --port/--binary-port value as the operator wrote it
        self.option_value = port
        self.port: IListeningPort | None = None
        self._listening: defer.Deferred[IListeningPort] | None = None

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)
        self.listen()

    def startService(self) -> None:
        Service.startService(self)
        self.listen()

    def listen(self) -> None:
        """Bind now (once); a failure raises StartupError with the one line to show.

        ``twistd tinytcp`` calls this before twistd daemonizes (see tap.makeService), so a port
        in use is reported on the terminal by the process that was started, not by a daemon
        whose stderr is /dev/null.
        """
        if self._listening is not None:
            return
        self._listening = self.endpoint.listen(self.factory)
        failures: list[Any] = []
        self._listening.addCallbacks(self._bound, failures.append)
        if failures:
            self._listening = None
            reason = failures[0].value
            if isinstance(reason, error.CannotListenError) and isinstance(reason.socketError, OSError):
                why = (reason.socketError.strerror or str(reason.socketError)).lower()
            elif isinstance(reason, OSError) and reason.strerror:
                # unix sockets: Twisted's lock file beside the socket path
                why = f"{reason.strerror.lower()}: {os.fsdecode(reason.filename2 or reason.filename or '?')}"
            else:
                why = failures[0].getErrorMessage()
            raise StartupError(
                f"{PORT_OPTION.get(self.mode, '--port')} {self.option_value}: "
                f"cannot listen for {self.mode} clients on {self.description}: {why}"
            )

    def _bound(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        address = describe_host(port.getHost(), self.description)
        if self.mode == "metrics":
            log.info("metrics (Prometheus, GET /metrics) listening on {address}", address=address)
            return port
        # tcp.Port builds each connection's transport from this attribute (its documented
        # hook); TLS runs over the same TCP transport, unix sockets keep their own
        from twisted.internet import tcp

        from tinytcp.server.transport import WriteThroughTransport

        if getattr(port, "transport", None) is tcp.Server:
            port.transport = WriteThroughTransport  # type: ignore[attr-defined]
        if not self.announce:
            return port
        log.info(
            "{mode} mode listening on {address}",
            mode=self.mode,
            address=address,
        )
        return port

    def stopService(self) -> defer.Deferred[None] | None:
        Service.stopService(self)
        if self.port is None:
            return None
        port, self.port = self.port, None
        return defer.maybeDeferred(port.stopListening)


def describe_host(address: Any, description: str = "tcp:") -> str:
    """The bound address as an operator reads it: ``tcp:127.0.0.1:40000``, ``tcp:[::1]:40000``,
    ``ssl:...`` for TLS listeners, ``unix:/path``."""
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is not None:
        scheme = "ssl" if description.split(":", 1)[0].lower() == "ssl" else "tcp"
        return f"{scheme}:[{host}]:{port}" if ":" in host else f"{scheme}:{host}:{port}"
    name = getattr(address, "name", None)
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    return f"unix:{name or '?'}"


def stop_on_sighup(reactor: Any) -> None:
    """A daemon's SIGHUP stops it cleanly, like SIGTERM: tinytcp has nothing to reload."""

    def hangup(signum: int, frame: Any) -> None:
        log.info("tinytcp: SIGHUP: stopping cleanly, as on SIGTERM")
        reactor.callFromThread(reactor.stop)

    signal.signal(signal.SIGHUP, hangup)


class TinyService(MultiService):
    """All listeners plus the shared Server; on stop it stops listening, then says BYE to everyone."""

    #: a daemon's SIGHUP stops it cleanly, like SIGTERM (tinytcp has nothing to reload);
    #: only the twistd plugin sets it: tests that build the service keep their signals
    stop_on_hangup = False

    def __init__(self, server: Server, shared_room: SharedRoom | None = None) -> None:
        super().__init__()
        self.server = server
        #: the chat room shared through Redis (--redis), which connects on start
        self.shared_room = shared_room

    def startService(self) -> None:
        MultiService.startService(self)
        if self.shared_room is not None:
            self.shared_room.start()
        if self.stop_on_hangup:
            stop_on_sighup(self.server.reactor)

    def stopService(self) -> defer.Deferred[None]:
        stopped = defer.maybeDeferred(MultiService.stopService, self)
        stopped.addCallback(lambda _: self.server.shutdown())
        room = self.shared_room
        if room is not None:
            # after the drain: the clients' goodbyes ("left") still go through Redis
            stopped.addCallback(lambda _: room.stop())
        return stopped

    def listen(self) -> None:
        """Bind every listener now; the first that cannot raises StartupError."""
        for child in self:
            if isinstance(child, ListenService):
                child.listen()


def make_service(
    settings: Settings,
    text_ports: list[str],
    binary_ports: list[str] | None = None,
    reactor: Any = None,
    metrics_port: str | None = None,
    web_ports: Sequence[str] = (),
    web_origins: Sequence[str] = (),
    checkers: list[Any] | None = None,
    endpoint_for: Callable[[str, str], IStreamServerEndpoint] | None = None,
) -> TinyService:
    """Build the service that listens on every given port (bare numbers or endpoint descriptions),
    and serves Prometheus metrics on ``metrics_port`` if given.

    ``web_ports`` serve the web page and its WebSocket (tinytcp/web/), which accepts browsers
    from its own origin and from ``web_origins``.  With ``settings.accounts`` or ``checkers``
    (``--auth``), the core gets REGISTER, LOGIN and LOGOUT (tinytcp/auth).

    ``endpoint_for(mode, description)``, called once per listener in order (text ports,
    binary ports, web ports), replaces the parsing of descriptions: a ``--workers`` worker
    listens on sockets its parent bound (tinytcp/cluster/worker.py) and does not announce them.
    """
    if reactor is None:
        from twisted.internet import reactor
    announce = endpoint_for is None
    if endpoint_for is None:

        def endpoint_for(mode: str, description: str) -> IStreamServerEndpoint:
            return server_endpoint(reactor, description)

    room = None
    if settings.redis is not None:
        from tinytcp.cluster.redis import parse_url
        from tinytcp.cluster.room import SharedRoom

        room = SharedRoom(parse_url(settings.redis), reactor, settings.redis_ttl)
    commands = COMMANDS
    accounts_service = None
    if settings.accounts is not None or checkers:
        from tinytcp.auth.commands import Policy
        from tinytcp.auth.service import AccountsService, make_accounts

        policy = Policy(
            require_login=settings.require_login,
            allow_register=settings.allow_register,
            allow_plaintext=settings.allow_plaintext_login,
            user_failures=settings.login_failures,
            peer_failures=settings.peer_login_failures,
            window=settings.login_window,
        )
        accounts = make_accounts(policy, reactor)
        commands = accounts.commands()
        accounts_service = AccountsService(accounts, settings.accounts, settings.bcrypt_rounds, checkers)
    server = Server(settings, core=Core(commands=commands, room=room), reactor=reactor)
    service = TinyService(server, room)
    if accounts_service is not None:
        accounts_service.setServiceParent(service)
    for ports, protocol, mode in ((text_ports, TextProtocol, "text"), (binary_ports or [], BinaryProtocol, "binary")):
        for port in ports:
            description = endpoint_description(port)
            endpoint = endpoint_for(mode, description)
            factory = ConnectionFactory(server, protocol)
            ListenService(endpoint, factory, mode, description, port, announce).setServiceParent(service)
    if web_ports:
        # imported only when asked for: twisted.web.websocket needs twisted[websocket]
        from tinytcp.web.site import make_site

        web = make_site(server, web_origins, reactor=reactor)
        for port in web_ports:
            description = endpoint_description(port)
            endpoint = endpoint_for("web", description)
            ListenService(endpoint, web, "web", description, port, announce).setServiceParent(service)
    if metrics_port is not None:
        from tinytcp.ops import metrics

        metrics.require_prometheus_client()
        description = endpoint_description(metrics_port)
        endpoint = server_endpoint(reactor, description)
        site = metrics.metrics_site(server)
        ListenService(endpoint, site, "metrics", description, metrics_port).setServiceParent(service)
    return service
