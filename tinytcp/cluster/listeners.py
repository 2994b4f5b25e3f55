"""The parent's side of ``--workers``: bind every listener once, before twistd daemonizes.

Binding here, in ``makeService``, keeps today's start-up contract: a port in use is one line
on the terminal and exit status 1, and the "listening on" lines name the real bound port
(port 0 included).  The workers never bind; they adopt the sockets the parent passes them
(tinytcp/cluster/worker.py).

Two ways to share a TCP listener between workers (``--worker-sockets``):

- ``reuseport``: one socket per worker, all bound to the same address with SO_REUSEPORT; the
  kernel hashes each new connection to one of them, so each worker accepts from its own queue.
- ``shared``: one socket, inherited by every worker; whichever worker the kernel wakes accepts.

unix: and systemd: listeners are always one shared socket: SO_REUSEPORT means nothing to a
unix socket, and systemd holds exactly one socket per listener.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.internet.abstract import isIPv6Address
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from tinytcp.cluster.worker import WRAPPED
from tinytcp.ops.startup import StartupError
from tinytcp.server.service import PORT_OPTION, ListenService, describe_host, endpoint_description

log = Logger(namespace="tinytcp")

#: the ways a TCP listener is shared between workers; the first is the default (see the README)
WORKER_SOCKETS = ("reuseport", "shared")

#: address family names as they travel to the workers (tinytcp/cluster/worker.py)
FAMILIES = {socket.AF_INET: "INET", socket.AF_INET6: "INET6", socket.AF_UNIX: "UNIX"}


@dataclass
class Listener:
    """One listener of the operator's options, bound in the parent: its sockets and who owns them."""

    mode: str
    option_value: str
    description: str
    #: one socket per worker (reuseport), or one for all
    sockets: list[socket.socket] = field(default_factory=list)
    #: unix: and systemd: listeners stay Twisted ports in the parent (never read from), so
    #: Twisted keeps its rules: the unix socket's lock file, its removal on stop
    port: IListeningPort | None = None

    def fd_for(self, worker: int) -> tuple[int, str]:
        """The descriptor and address family worker ``worker`` (0-based) serves this listener from."""
        if self.port is not None:
            handle: Any = self.port.socket  # type: ignore[attr-defined]
            return handle.fileno(), FAMILIES[handle.family]
        sock = self.sockets[worker % len(self.sockets)]
        return sock.fileno(), FAMILIES[sock.family]

    def close(self) -> defer.Deferred[None]:
        """Close the parent's copies: once the workers close theirs, the address is free."""
        for sock in self.sockets:
            sock.close()
        self.sockets = []
        if self.port is None:
            return defer.succeed(None)
        port, self.port = self.port, None
        return defer.maybeDeferred(port.stopListening)


def tcp_parameters(endpoint: Any) -> tuple[str, int, int] | None:
    """(interface, port, backlog) of a TCP-based server endpoint (tcp:, tcp6:, ssl:, tls:), else None.

    Twisted keeps them in attributes of its endpoint classes; a TLS wrapper (tls:) holds the
    TCP endpoint it wraps (tinytcp/cluster/worker.py puts the inherited socket in its place).
    """
    from twisted.internet import endpoints  # after the reactor is chosen (tap.py)

    for attribute in WRAPPED:
        inner = getattr(endpoint, attribute, None)
        if inner is not None:
            return tcp_parameters(inner)
    if isinstance(endpoint, (endpoints.TCP4ServerEndpoint, endpoints.TCP6ServerEndpoint, endpoints.SSL4ServerEndpoint)):
        return endpoint._interface, endpoint._port, endpoint._backlog
    return None


def bind_tcp(interface: str, port: int, backlog: int, reuse_port: bool) -> socket.socket:
    """A listening TCP socket bound as Twisted's tcp.Port would bind it, plus SO_REUSEPORT if asked."""
    family = socket.AF_INET6 if isIPv6Address(interface) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            address = socket.getaddrinfo(interface, port, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)[0][4]
        else:
            address = (interface, port)
        sock.bind(address)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def bind_listener(mode: str, value: str, workers: int, way: str, reactor: Any) -> Listener:
    """Bind one listener for ``workers`` workers; a failure is a StartupError with today's line."""
    from twisted.internet import endpoints  # after the reactor is chosen (tap.py)

    description = endpoint_description(value)
    endpoint = endpoints.serverFromString(reactor, description)
    listener = Listener(mode, value, description)
    tcp = tcp_parameters(endpoint)
    kind = description.split(":", 1)[0].lower()
    if tcp is None and kind in ("ssl", "tls"):
        raise StartupError(
            f"{PORT_OPTION.get(mode, '--port')} {value}: --workers cannot share this {kind}: listener"
            " (its TLS endpoint does not run over TCP the way tinytcp knows); run one process"
        )
    if tcp is None:
        # unix:, systemd:, anything else Twisted can listen on: Twisted binds it (and says
        # why it cannot), the parent never reads from it, and every worker shares it
        placeholder = Factory()
        placeholder.noisy = False
        service = ListenService(endpoint, placeholder, mode, description, value)
        service.listen()
        assert service.port is not None
        service.port.stopReading()  # type: ignore[attr-defined]
        listener.port = service.port
        return listener
    interface, port, backlog = tcp
    count = workers if way == "reuseport" else 1
    try:
        for _ in range(count):
            sock = bind_tcp(interface, port, backlog, way == "reuseport")
            listener.sockets.append(sock)
            # port 0: the other sockets of the group join the port the first one got
            port = sock.getsockname()[1]
    except OSError as e:
        for sock in listener.sockets:
            sock.close()
        why = (e.strerror or str(e)).lower()
        raise StartupError(
            f"{PORT_OPTION.get(mode, '--port')} {value}: cannot listen for {mode} clients on {description}: {why}"
        ) from None
    host, bound = listener.sockets[0].getsockname()[:2]
    address = IPv6Address("TCP", host, bound) if ":" in host else IPv4Address("TCP", host, bound)
    log.info("{mode} mode listening on {address}", mode=mode, address=describe_host(address, description))
    return listener


def bind_all(ports: list[tuple[str, str]], workers: int, way: str, reactor: Any) -> list[Listener]:
    """Bind every (mode, value) listener in order; on a failure, close those already bound and raise."""
    bound: list[Listener] = []
    try:
        for mode, value in ports:
            bound.append(bind_listener(mode, value, workers, way, reactor))
    except BaseException:
        for listener in bound:
            listener.close()
        raise
    return bound
