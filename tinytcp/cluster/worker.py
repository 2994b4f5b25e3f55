"""The worker's side of ``--workers``: adopt the listening sockets the parent passed, never bind.

The supervisor (tinytcp/cluster/supervisor.py) starts each worker as the same
``twistd -n tinytcp`` with the operator's options, plus one environment variable,
:data:`ENV`, that says which worker it is and which inherited descriptor serves which
listener, in the order tinytcp.server.service.make_service builds them (text ports, binary
ports, web ports).  A worker stops, draining its clients as on SIGTERM, when its stdin (a pipe
from the parent) closes: a parent killed with SIGKILL leaves no orphan serving on.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet import main
from twisted.internet.interfaces import IReadDescriptor, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tinytcp.server.service import PROXIED

log = Logger(namespace="tinytcp")

#: the environment variable that makes ``twistd tinytcp`` a worker
ENV = "TINYTCP_WORKER"

FAMILIES = {"INET": socket.AF_INET, "INET6": socket.AF_INET6, "UNIX": socket.AF_UNIX}


@dataclass(frozen=True)
class WorkerInfo:
    """Which worker this process is (1-based), of how many, and its inherited listeners."""

    index: int
    count: int
    #: (descriptor, address family name) per listener, in make_service's order
    fds: tuple[tuple[int, str], ...]

    def encode(self) -> str:
        """The value of :data:`ENV` for this worker."""
        return json.dumps({"index": self.index, "count": self.count, "fds": [list(fd) for fd in self.fds]})


def from_environ(environ: Mapping[str, str] | None = None) -> WorkerInfo | None:
    """This process's WorkerInfo, or None when it is not a worker."""
    value = (os.environ if environ is None else environ).get(ENV)
    if not value:
        return None
    data = json.loads(value)
    return WorkerInfo(int(data["index"]), int(data["count"]), tuple((int(fd), str(f)) for fd, f in data["fds"]))


#: where Twisted's TLS wrapper endpoints keep the endpoint they run TLS over: tls: (an
#: SNI folder of certificates) in ``endpoint``, other wrappers in ``_wrappedEndpoint``
WRAPPED = ("endpoint", "_wrappedEndpoint")


@implementer(IStreamServerEndpoint)
class TLSOverEndpoint:
    """TLS over another endpoint, as Twisted's own ssl: listener puts it over TCP."""

    def __init__(self, endpoint: IStreamServerEndpoint, context: Any) -> None:
        self.endpoint = endpoint
        self.context = context

    def listen(self, factory: Factory) -> Any:
        from twisted.protocols.tls import TLSMemoryBIOFactory

        return self.endpoint.listen(TLSMemoryBIOFactory(self.context, False, factory))


def adopted_endpoint(reactor: Any, description: str, fd: int, family: str) -> IStreamServerEndpoint:
    """The endpoint a worker listens on: the inherited socket, under TLS for ssl: and tls:.

    The TLS layer is the one Twisted's own ssl: and tls: listeners use, built from the same
    description (the same certificates, the same SNI folder), so the protocols see the same
    transport as in a single process; only the socket under it is adopted instead of bound.
    """
    from twisted.internet import endpoints  # after the reactor is chosen (tap.py)

    if description.lower().startswith(PROXIED):
        # behind a load balancer: the PROXY header first (tinytcp/server/proxied.py)
        from tinytcp.server.proxied import ProxiedEndpoint

        return ProxiedEndpoint(adopted_endpoint(reactor, description[len(PROXIED) :], fd, family), reactor)
    adopted = endpoints.AdoptedStreamServerEndpoint(reactor, fd, FAMILIES[family])
    if description.split(":", 1)[0].lower() not in ("ssl", "tls"):
        return adopted
    parsed = endpoints.serverFromString(reactor, description)
    if isinstance(parsed, endpoints.SSL4ServerEndpoint):
        return TLSOverEndpoint(adopted, parsed._sslContextFactory)
    for attribute in WRAPPED:
        if hasattr(parsed, attribute):
            setattr(parsed, attribute, adopted)
            return parsed  # type: ignore[no-any-return]
    raise ValueError(f"cannot run {description.split(':', 1)[0]}: listeners over an inherited socket")


def adopted_endpoints(info: WorkerInfo, reactor: Any) -> Callable[[str, str], IStreamServerEndpoint]:
    """make_service's endpoint_for for a worker: each call takes the next inherited descriptor."""
    remaining = list(info.fds)

    def endpoint_for(mode: str, description: str) -> IStreamServerEndpoint:
        fd, family = remaining.pop(0)
        return adopted_endpoint(reactor, description, fd, family)

    return endpoint_for


@implementer(IReadDescriptor)
class ParentWatch:
    """Stop this worker cleanly when its stdin, a pipe the parent holds open, reaches end of file."""

    def __init__(self, reactor: Any, fd: int = 0) -> None:
        self.reactor = reactor
        self.fd = fd
        self.stopping = False

    def start(self) -> None:
        os.set_blocking(self.fd, False)
        self.reactor.addReader(self)
        # the reactor drops every reader as it stops: that is not the parent going away
        self.reactor.addSystemEventTrigger("before", "shutdown", setattr, self, "stopping", True)

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return "parent-watch"

    def doRead(self) -> Any:
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        return None if data else main.CONNECTION_DONE

    def connectionLost(self, reason: Failure) -> None:
        """End of file (or a hang-up, which epoll reports without a read): the parent is gone."""
        self.reactor.removeReader(self)
        if self.stopping:
            return
        self.stopping = True
        log.warn("the supervisor is gone (stdin closed): stopping")
        self.reactor.stop()
