"""Shared state of a running tinytcp: settings, the command core, and the open connections.

Both protocols register here, so that shutdown can say goodbye to every client and the
logs can say who connected, for how long and with how many requests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from tinytcp import __version__
from tinytcp.core import Core, Session

log = Logger(namespace="tinytcp")

DEFAULT_BANNER = f"tinytcp {__version__} ready; type HELP"


@dataclass
class Settings:
    """Every tunable of the service, with the defaults ``twistd tinytcp --help`` shows."""

    banner: str = DEFAULT_BANNER
    max_line: int = 64 * 1024
    max_frame: int = 1024 * 1024
    shutdown_grace: float = 5.0
    verbose: bool = False


def describe_peer(address: IAddress) -> str:
    """A short printable form of a peer address for the logs."""
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is not None and port is not None:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    name = getattr(address, "name", None)
    return f"unix:{name.decode(errors='replace') if isinstance(name, bytes) else name or '?'}"


class Server:
    """One per running service; protocols reach it through their factory."""

    def __init__(self, settings: Settings, core: Core | None = None, reactor: IReactorTime | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor  # type: ignore[assignment]
        self.settings = settings
        self.core = core or Core()
        self.reactor: IReactorTime = reactor  # type: ignore[assignment]
        self.connections: set[Connection] = set()
        self.stopping = False
        self._drained: list[defer.Deferred[None]] = []

    def add(self, connection: Connection) -> None:
        self.connections.add(connection)

    def remove(self, connection: Connection) -> None:
        self.connections.discard(connection)
        if not self.connections and self._drained:
            waiting, self._drained = self._drained, []
            for d in waiting:
                d.callback(None)

    def shutdown(self) -> defer.Deferred[None]:
        """Say goodbye to every client and fire once all are closed (abort stragglers after the grace)."""
        self.stopping = True
        for connection in list(self.connections):
            connection.say_goodbye()
        if not self.connections:
            return defer.succeed(None)
        drained: defer.Deferred[None] = defer.Deferred()
        self._drained.append(drained)
        timer = self.reactor.callLater(self.settings.shutdown_grace, self._abort_all)

        def stop_timer(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        drained.addBoth(stop_timer)
        return drained

    def _abort_all(self) -> None:
        for connection in list(self.connections):
            log.warn("{peer}: still open after the shutdown grace, aborting", peer=connection.peer)
            connection.transport.abortConnection()  # type: ignore[attr-defined]


class Connection:
    """Bookkeeping shared by the text and binary protocols: registry, session and logs."""

    mode = "?"
    server: Server
    transport: Any
    peer = "?"
    opened = 0.0

    def open_connection(self) -> None:
        self.session = Session()
        self.peer = describe_peer(self.transport.getPeer())
        self.opened = time.monotonic()
        self.server.add(self)
        log.info("{peer} connected ({mode})", peer=self.peer, mode=self.mode)

    def close_connection(self, reason: Failure) -> None:
        self.server.remove(self)
        log.info(
            "{peer} disconnected after {duration:.3f}s, {requests} requests ({why})",
            peer=self.peer,
            duration=time.monotonic() - self.opened,
            requests=self.session.requests,
            why=reason.getErrorMessage(),
        )

    def hang_up(self, why: str) -> None:
        """Close the connection on the server's own initiative, after flushing what is queued."""
        log.info("{peer}: closing: {why}", peer=self.peer, why=why)
        self.transport.loseConnection()

    def say_goodbye(self) -> None:
        """Tell the client the server is stopping and close; each protocol sends its own BYE."""
        raise NotImplementedError
